"""What a socket checks before it starts, and what it decides about each connect attempt.

Everything here is either a plain check of the caller's arguments (raised at once, before any
connection is attempted) or a small decision on a finished attempt; the socket's tasks live in
``_socket.py``.

Rules this module keeps:

1. Bad argument values raise at once, with a typed error that names the argument and never
   shows a header value, a param value or a password.
2. A connect failure that cannot heal by retrying (a rejected upgrade, a TLS certificate or
   host-name error) is *permanent*: the first connection attempt raises it instead of retrying.
3. Calls into a socket come from the Trio run that owns it: any other thread or event loop gets
   a ``RuntimeError`` that says how to call in, before anything is touched.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from ._exceptions import ConnectError, InvalidParams, LocalProtocolError
from .proto import auth_token_subprotocols, build_socket_url
from .proto._limits import check_headers

__all__ = [
    "ConnectArgs",
    "check_options",
    "check_params",
    "check_trio_token",
    "connect_args",
    "is_permanent",
]

Params = Mapping[str, Any]
ParamsSource = Params | Callable[[], Params | Awaitable[Params]] | None
TokenSource = str | Callable[[], str | Awaitable[str]] | None
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
ConnectArgs = tuple[str, list[str]]


def check_params(params: object) -> None:
    """``params`` must be a mapping, ``None``, or a callable returning a mapping."""
    if params is None or isinstance(params, Mapping) or callable(params):
        return
    raise InvalidParams(
        f"params must be a mapping or a callable returning one, got {type(params).__name__}"
        + ('; pass {"token": ...}, not a query string' if isinstance(params, str) else "")
    )


def check_options(
    *,
    url: str,
    params: object,
    headers: Headers | None,
    connect_timeout: float | None,
    close_timeout: float,
    max_message_size: int,
) -> list[tuple[str, str]]:
    """Check the socket's options; return the headers as a list of pairs."""
    build_socket_url(url)  # validate now: a bad URL is the caller's error, raised at once
    check_params(params)
    if connect_timeout is not None and not connect_timeout >= 0:
        raise LocalProtocolError(f"connect_timeout must be >= 0 or None, got {connect_timeout!r}")
    if not close_timeout >= 0:
        raise LocalProtocolError(f"close_timeout must be >= 0, got {close_timeout!r}")
    if not max_message_size >= 1024:
        raise LocalProtocolError(
            f"max_message_size must be an int of at least 1024 bytes, got {max_message_size!r}"
        )
    return check_headers(headers or ())


async def _evaluate(source: Any) -> Any:
    value = source() if callable(source) else source
    if inspect.isawaitable(value):
        value = await value
    return value


async def connect_args(
    url: str, params: ParamsSource, auth_token: TokenSource, vsn: str
) -> ConnectArgs:
    """The URL and subprotocols of the next connect attempt (``params`` and ``auth_token``
    evaluated now)."""
    values = await _evaluate(params)
    if values is not None and not isinstance(values, Mapping):
        raise InvalidParams(
            f"the params callable must return a mapping, got {type(values).__name__}"
        )
    full_url = build_socket_url(url, values, vsn)
    token = await _evaluate(auth_token)
    return full_url, auth_token_subprotocols(token) if token else []


def is_permanent(error: ConnectError) -> bool:
    """Whether retrying cannot help: the server rejected the upgrade, or TLS refused the
    server's certificate or host name (or the handshake itself)."""
    return error.status is not None or isinstance(
        error.__cause__, ssl.SSLError | ssl.CertificateError
    )


def check_trio_token(expected: trio.lowlevel.TrioToken | None, what: str) -> None:
    """Raise ``RuntimeError`` unless called from the Trio run that owns the socket."""
    try:
        token = trio.lowlevel.current_trio_token()
    except RuntimeError:
        token = None
    if token is not expected:
        raise RuntimeError(
            f"{what} was called outside the Trio run that owns the socket (another thread or "
            "event loop); call it from that run, e.g. with trio.from_thread.run(channel.push, "
            "...) from a thread started by trio.to_thread.run_sync"
        )
