"""Guards and bounds for everything the other side (or a careless caller) controls.

Rules this module keeps:

1. Every value the server controls that is recursed over or converted is checked here first,
   without recursion and without converting it: nesting depth is measured with an explicit
   stack, and a decimal key is judged by its length before ``int()`` sees it (``int()``
   refuses strings of more than 4,300 digits with a builtin ``ValueError``).
2. Every buffer the server can fill is bounded in bytes as well as in items, by a
   ``BufferBound``: the owner asks ``fits(size)`` before buffering, and reports what it
   buffers and releases. A buffer always accepts one item when it is empty, so the largest
   single item (bounded by ``max_message_size``) never wedges it.
3. Header names and values a caller passes are checked before anything is sent; error
   messages name the header, never its value (values often carry credentials).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from ._errors import InvalidHeader, RemoteProtocolError

__all__ = [
    "MAX_NESTING",
    "BufferBound",
    "check_headers",
    "check_nesting",
    "is_array_index",
]

#: Deepest nesting of arrays and objects accepted inside a presence meta.
MAX_NESTING: Final = 100

# Canonical array indices are below 2**32 - 1: at most 10 digits.
_MAX_INDEX_DIGITS: Final = 10
# RFC 9110 token characters for header names.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE: Final = re.compile(r"[\x00\r\n]")


def is_array_index(key: str, maximum: int) -> bool:
    """Whether ``key`` is a canonical JavaScript array index no larger than ``maximum``.

    ASCII decimal digits, no leading zero (except ``"0"`` itself); never calls ``int()`` on
    a string longer than an index can be.
    """
    return (
        0 < len(key) <= _MAX_INDEX_DIGITS
        and key.isascii()
        and key.isdigit()
        and (key == "0" or key[0] != "0")
        and int(key) <= maximum
    )


def check_nesting(
    value: object, limit: int, what: str, error: type[Exception] = RemoteProtocolError
) -> None:
    """Raise ``error`` if ``value`` nests lists and dicts deeper than ``limit``.

    ``value`` itself is at depth 1 when it is a list or a dict.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise error(f"{what} nests deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


def check_headers(headers: object) -> list[tuple[str, str]]:
    """Check extra request headers; return them as a list of ``(name, value)`` pairs.

    Raises:
        InvalidHeader: a name that is not an HTTP token, a value with CR, LF or NUL or with
            characters outside Latin-1, or either of them not a string (the message names the
            header, never its value).
    """
    if isinstance(headers, Mapping):
        items: Iterable[object] = headers.items()
    elif isinstance(headers, Sequence) and not isinstance(headers, str | bytes):
        items = headers
    else:
        raise InvalidHeader("headers must be a mapping or a sequence of (name, value) pairs")
    checked: list[tuple[str, str]] = []
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise InvalidHeader("headers must be a mapping or a sequence of (name, value) pairs")
        name, value = item
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            shown = repr(name) if isinstance(name, str) and len(name) <= 64 else "a header"
            raise InvalidHeader(f"{shown} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise InvalidHeader(
                f"the value of header {name!r} must be a string, got {type(value).__name__}"
            )
        if _FORBIDDEN_IN_VALUE.search(value):
            raise InvalidHeader(f"the value of header {name!r} contains CR, LF or NUL")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidHeader(
                f"the value of header {name!r} has characters outside Latin-1; "
                "percent- or base64-encode it"
            ) from None
        checked.append((name, value))
    return checked


@attrs.define(eq=False)
class BufferBound:
    """The bound of one buffer: at most ``max_items`` items and ``max_bytes`` bytes.

    An empty buffer accepts any one item, so the bound in bytes is
    ``max(max_bytes, largest item)``.
    """

    max_items: int
    max_bytes: int
    items: int = 0
    bytes: int = 0

    def __attrs_post_init__(self) -> None:
        _check_positive(self.max_items, "max_buffer")
        _check_positive(self.max_bytes, "max_buffer_bytes")

    def fits(self, size: int) -> bool:
        """Whether one more item of ``size`` bytes may be buffered."""
        if self.items == 0:
            return True
        return self.items < self.max_items and self.bytes + size <= self.max_bytes

    def add(self, size: int) -> None:
        self.items += 1
        self.bytes += size

    def remove(self, size: int) -> None:
        self.items -= 1
        self.bytes -= size


def _check_positive(value: object, name: str) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value!r}")
