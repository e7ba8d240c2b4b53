"""Socket URLs and the auth-token subprotocol, built exactly as phoenix.js builds them.

phoenix.js takes a *mount point* (``wss://example.org/socket``), appends ``/websocket`` and then
a query string of the user's params followed by ``vsn``. Params are encoded by phoenix.js's
``Ajax.serialize``: ``encodeURIComponent(key)=encodeURIComponent(value)`` joined by ``&``,
nested objects as ``parent[child]`` and arrays as ``list[0]`` (the bracketed key itself
percent-encoded). We reproduce that byte for byte, including its quirks (a ``None`` or an empty
nested mapping contributes an empty segment, as JavaScript's ``null`` does; array-index keys such
as ``"2"`` come first, in ascending order, as JavaScript enumerates them; floats are written as
JavaScript writes numbers), so that a server sees the same request from trio_phoenix as from a
browser.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

from ._errors import InvalidParams, InvalidURL
from ._limits import is_array_index
from ._serializer import V2_VSN

__all__ = [
    "AUTH_TOKEN_PREFIX",
    "auth_token_subprotocols",
    "build_socket_url",
    "encode_params",
    "redact_url",
]

#: The ``Sec-WebSocket-Protocol`` entry prefix Phoenix (1.8+) reads an auth token from.
AUTH_TOKEN_PREFIX: Final = "base64url.bearer.phx."

# encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) alone; quote() always keeps _.-~.
_URI_COMPONENT_SAFE: Final = "!*'()"
_WEBSOCKET: Final = "/websocket"
_SCHEMES: Final = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
# Array indices are the integers below 2**32 - 1; JavaScript enumerates them first.
_MAX_ARRAY_LENGTH: Final = 2**32 - 1


def build_socket_url(
    endpoint: str, params: Mapping[str, Any] | None = None, vsn: str = V2_VSN
) -> str:
    """Build the WebSocket URL for ``endpoint`` (the socket's mount point), as phoenix.js does
    for a plain mount point, and sanely where phoenix.js breaks a URL.

    ``http``/``https`` mount points are mapped to ``ws``/``wss``, as browsers do. Unlike
    phoenix.js (which appends ``/websocket`` to whatever it is given, query included), a query
    string in ``endpoint`` is kept as params before ``params`` (a name given in both is taken
    from ``params``; ``vsn`` always comes from the serializer), a trailing ``/`` is dropped,
    and a path already ending in ``/websocket`` is used as it is.

    Raises:
        InvalidURL: the scheme is not ws, wss, http or https, or the URL has no host.
        InvalidParams: ``params`` is not a mapping.

    Example:
        >>> build_socket_url("ws://localhost:4000/socket", {"token": "abc"})
        'ws://localhost:4000/socket/websocket?token=abc&vsn=2.0.0'
        >>> build_socket_url("ws://localhost:4000/socket/?token=abc")
        'ws://localhost:4000/socket/websocket?token=abc&vsn=2.0.0'
    """
    if not isinstance(endpoint, str):
        raise InvalidURL(f"socket URL must be a string, got {type(endpoint).__name__}")
    if params is None or params == {}:
        # The common case, once per connect attempt of every socket: cached.
        return _url_without_params(endpoint, vsn)
    return _build(endpoint, params, vsn)


@functools.lru_cache(maxsize=64)
def _url_without_params(endpoint: str, vsn: str) -> str:
    return _build(endpoint, None, vsn)


def _build(endpoint: str, params: Mapping[str, Any] | None, vsn: str) -> str:
    if params is not None and not isinstance(params, Mapping):
        raise InvalidParams(f"params must be a mapping, got {type(params).__name__}")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 -- validates the port
    except ValueError as exc:
        # urlsplit's message may quote part of the URL (a password with an unencoded "/").
        reason = "bad port" if "port" in str(exc).lower() else "malformed"
        reason += " (percent-encode any / ? # @ in a user name or password)"
        raise InvalidURL(f"invalid socket URL {redact_url(endpoint)!r}: {reason}") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidURL(
            f"socket URL must start with ws://, wss://, http:// or https://, "
            f"got {redact_url(endpoint)!r}"
        )
    if not parts.hostname:
        raise InvalidURL(f"socket URL has no host: {redact_url(endpoint)!r}")
    head, _, query = endpoint.partition("#")[0].partition("?")
    url = (scheme + head[len(parts.scheme) :]).rstrip("/")
    if not url.endswith(_WEBSOCKET):
        url += _WEBSOCKET
    given = {_js_string(key) for key in params or ()} | {"vsn"}
    kept = [pair for pair in query.split("&") if pair and _param_name(pair) not in given]
    if kept:
        url += "?" + "&".join(kept)
    if params:
        url = _append_params(url, params)
    return _append_params(url, {"vsn": vsn})


def _param_name(pair: str) -> str:
    """The top-level param name of one ``name=value`` pair of a query string."""
    return unquote(pair.partition("=")[0]).partition("[")[0]


def _append_params(url: str, params: Mapping[str, Any]) -> str:
    return url + ("&" if "?" in url else "?") + encode_params(params)


def encode_params(params: Mapping[str, Any] | Sequence[Any], parent: str | None = None) -> str:
    """Encode params as phoenix.js's ``Ajax.serialize`` does."""
    if isinstance(params, Mapping):
        items = _for_in_order([(_js_string(key), value) for key, value in params.items()])
    else:
        items = [(str(index), value) for index, value in enumerate(params)]
    parts = []
    for key, value in items:
        name = f"{parent}[{key}]" if parent else key  # JS: an empty parent key is falsy
        if value is None:
            parts.append("")  # JavaScript: typeof null === "object", which has no keys
        elif isinstance(value, Mapping) or (
            isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
        ):
            parts.append(encode_params(value, name))
        else:
            parts.append(f"{_uri_component(name)}={_uri_component(_js_string(value))}")
    return "&".join(parts)


def _for_in_order(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """JavaScript's ``for...in`` order: array-index keys ascending, then the rest as inserted."""
    indices = [item for item in items if _is_array_index(item[0])]
    others = [item for item in items if not _is_array_index(item[0])]
    return sorted(indices, key=lambda item: int(item[0])) + others


def _is_array_index(key: str) -> bool:
    return is_array_index(key, _MAX_ARRAY_LENGTH - 1)


def _uri_component(text: str) -> str:
    return quote(text, safe=_URI_COMPONENT_SAFE, errors="strict")


def _js_string(value: Any) -> str:
    """``String(value)`` as JavaScript would print it, for the scalar types params hold."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def _js_number(value: float) -> str:
    """ECMAScript ``Number::toString(value)``: shortest round-trip digits, JS layout."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, as JavaScript does; only the layout
    # differs (JS: "1e-7", "0.00001", "123456789012345680000"; Python: "1e-07", "1e-05", ...).
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    significant = digits.lstrip("0")
    # ``point``: where the decimal point falls relative to the first significant digit.
    point = len(whole) + int(exponent or "0") - (len(digits) - len(significant))
    significant = significant.rstrip("0")
    k = len(significant)
    if k <= point <= 21:
        text = significant + "0" * (point - k)
    elif 0 < point <= 21:
        text = significant[:point] + "." + significant[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + significant
    else:
        e = point - 1
        text = significant[0] + ("." + significant[1:] if k > 1 else "")
        text += ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + text


def auth_token_subprotocols(token: str) -> list[str]:
    """The ``Sec-WebSocket-Protocol`` list phoenix.js offers for an ``authToken``.

    Standard base64 (not the URL-safe alphabet, despite the prefix) with the padding removed.

    Example:
        >>> auth_token_subprotocols("1234")
        ['phoenix', 'base64url.bearer.phx.MTIzNA']
    """
    encoded = base64.b64encode(token.encode("utf-8")).decode("ascii").rstrip("=")
    return ["phoenix", AUTH_TOKEN_PREFIX + encoded]


def redact_url(url: str) -> str:
    """Return ``url`` with every query value (and any password) replaced by ``[REDACTED]``.

    Socket params usually carry tokens; they must never reach a log line or an exception text.
    A password is found even when it holds an unencoded ``/``, ``?`` or ``#`` (which end the
    authority for a URL parser): then everything up to the ``@`` is taken as user info.
    """
    scheme, slashes, rest = url.partition("://")
    if slashes:
        userinfo, at, after = _split_userinfo(rest)
        if at:
            user = userinfo.partition(":")[0]
            url = f"{scheme}://{user}:[REDACTED]@{after}"
    head, sep, query = url.partition("?")
    if not sep:
        return head
    redacted = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and name != "vsn":
            value = "[REDACTED]"
        redacted.append(f"{name}{eq}{value}")
    return head + "?" + "&".join(redacted)


def _split_userinfo(rest: str) -> tuple[str, str, str]:
    """Split ``user:password@host...`` at the ``@`` that ends the user info, if any."""
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    if at:
        return userinfo, at, host + rest[end:]
    # No "@" in the authority: a password with an unencoded "/", "?" or "#" may have pushed
    # it out. After "user:" something that is not a port, the next "@" ends the user info;
    # after "host:port", only an "@" before any query does (better hide too much than a
    # password).
    colon = rest.find(":")
    at_index = rest.find("@")
    if not 0 <= colon < end < at_index:
        return "", "", rest
    query = rest.find("?")
    if not rest[colon + 1 : end].isdigit() or query < 0 or at_index < query:
        return rest[:at_index], "@", rest[at_index + 1 :]
    return "", "", rest
