"""What a socket checks before it starts, and what it decides about each connect attempt.

Everything here is either a plain check of the caller's arguments (raised at once, before any
connection is attempted) or a small decision on a finished attempt; the socket's tasks live in
``_runtime.py``.

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
import math
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypedDict

import trio

from ._exceptions import ConnectError, InvalidParams
from ._network import ProxyFailure, ProxyOption, check_proxy
from ._transports import TRANSPORTS, TransportName
from .proto import Serializer, auth_token_subprotocols, build_socket_url, redact_url
from .proto._limits import check_headers

__all__ = [
    "ConnectArgs",
    "RedactedURL",
    "SocketOptions",
    "check_options",
    "check_params",
    "check_trio_token",
    "connect_args",
    "evaluate",
    "is_permanent",
    "resolve_url",
]

UrlSource = str | Callable[[], str | Awaitable[str]]
Params = Mapping[str, Any]
ParamsSource = Params | Callable[[], Params | Awaitable[Params]] | None
TokenSource = str | Callable[[], str | Awaitable[str]] | None
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
ConnectArgs = tuple[str, list[str]]
ReconnectAfter = Callable[[int], float | None]


class SocketOptions(TypedDict, total=False):
    """The keyword options of ``open_socket()`` and ``connect_socket()``.

    Spelled out so that a type checker catches a misspelled or mistyped option; each is
    described in the reference of ``open_socket()``.
    """

    params: ParamsSource
    auth_token: TokenSource
    headers: Headers | None
    ssl_context: ssl.SSLContext | None
    timeout: float | None
    heartbeat_interval: float | None
    reconnect_after: ReconnectAfter
    rejoin_after: Callable[[int], float]
    reconnect_on_clean_close: bool
    serializer: Serializer | None
    max_message_size: int
    connect_timeout: float | None
    close_timeout: float
    transport: TransportName
    compress: bool
    longpoll_fallback: float | None
    longpoll_timeout: float
    proxy: ProxyOption


def check_params(params: object) -> None:
    """``params`` must be a mapping, ``None``, or a callable returning a mapping."""
    if params is None or isinstance(params, Mapping) or callable(params):
        return
    raise InvalidParams(
        f"params must be a mapping or a callable returning one, got {type(params).__name__}"
        + ('; pass {"token": ...}, not a query string' if isinstance(params, str) else "")
    )


def check_seconds(name: str, value: object, *, allow_none: bool, positive: bool = False) -> None:
    """A duration option: a real number of seconds (``TypeError`` otherwise), >= 0 (or > 0),
    finite unless it is ``math.inf``; ``None`` where allowed."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        wanted = "a number of seconds" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {wanted}, got {type(value).__name__} {value!r}")
    if math.isnan(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} seconds, got {value!r}")


def check_callable(name: str, value: object) -> None:
    """An option that must be a callable."""
    if not callable(value):
        raise TypeError(f"{name} must be a callable, got {type(value).__name__} {value!r}")


def check_options(
    *,
    url: object,
    params: object,
    auth_token: object,
    headers: Headers | None,
    ssl_context: object,
    timeout: object,
    heartbeat_interval: object,
    reconnect_after: object,
    rejoin_after: object,
    reconnect_on_clean_close: object,
    serializer: object,
    connect_timeout: object,
    close_timeout: object,
    max_message_size: object,
    transport: object = "websocket",
    compress: object = False,
    longpoll_fallback: object = None,
    longpoll_timeout: object = 20.0,
    proxy: object = True,
) -> list[tuple[str, str]]:
    """Check the socket's options (``TypeError`` / ``ValueError`` naming the option); return
    the headers as a list of pairs."""
    if callable(url):
        pass  # validated at each evaluation (resolve_url)
    elif not isinstance(url, str):
        raise TypeError(
            "url must be a str such as 'ws://host:4000/socket' or a callable returning one, "
            f"got {type(url).__name__}"
        )
    else:
        build_socket_url(url)  # validate now: a bad URL is the caller's error, raised at once
    check_params(params)
    if not (auth_token is None or isinstance(auth_token, str) or callable(auth_token)):
        raise TypeError(
            "auth_token must be a str, a callable returning one, or None, "
            f"got {type(auth_token).__name__}"
        )
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(
            f"ssl_context must be an ssl.SSLContext or None, got {type(ssl_context).__name__}"
        )
    check_seconds("timeout", timeout, allow_none=True)
    check_seconds("heartbeat_interval", heartbeat_interval, allow_none=True, positive=True)
    check_callable("reconnect_after", reconnect_after)
    check_callable("rejoin_after", rejoin_after)
    if not isinstance(reconnect_on_clean_close, bool):
        raise TypeError(
            "reconnect_on_clean_close must be True or False, "
            f"got {type(reconnect_on_clean_close).__name__}"
        )
    if serializer is not None and not all(
        hasattr(serializer, name) for name in ("vsn", "encode", "decode")
    ):
        raise TypeError(
            "serializer must be a trio_phoenix serializer (V1JSONSerializer(), "
            f"V2JSONSerializer()) or None, got {type(serializer).__name__}"
        )
    check_seconds("connect_timeout", connect_timeout, allow_none=True)
    check_seconds("close_timeout", close_timeout, allow_none=False)
    if isinstance(max_message_size, bool) or not isinstance(max_message_size, int):
        raise TypeError(
            f"max_message_size must be an int (bytes), got {type(max_message_size).__name__}"
        )
    if max_message_size < 1024:
        raise ValueError(f"max_message_size must be at least 1024 bytes, got {max_message_size}")
    if transport not in TRANSPORTS:
        names = ", ".join(f'"{name}"' for name in TRANSPORTS)
        raise ValueError(f"transport must be one of {names}, got {transport!r}")
    if not isinstance(compress, bool):
        raise TypeError(f"compress must be True or False, got {type(compress).__name__}")
    if compress and transport != "websocket":
        raise ValueError(
            f'compress=True needs transport="websocket" (the {transport} transport has no '
            "permessage-deflate)"
        )
    check_seconds("longpoll_fallback", longpoll_fallback, allow_none=True, positive=True)
    check_seconds("longpoll_timeout", longpoll_timeout, allow_none=False, positive=True)
    if transport == "longpoll" and longpoll_fallback is not None:
        raise ValueError(
            "longpoll_fallback only applies to transport='websocket' (it falls back to "
            f"LongPoll); leave it None with transport={transport!r}"
        )
    check_proxy(proxy)
    return check_headers(headers or ())


async def evaluate(source: Any) -> Any:
    """The value of an option that may be a sync or async callable."""
    value = source() if callable(source) else source
    if inspect.isawaitable(value):
        value = await value
    return value


async def resolve_url(source: UrlSource) -> str:
    """The mount URL of the next connect attempt: ``source`` itself, or what the url callable
    returns now, validated (``InvalidURL``)."""
    url = await evaluate(source)
    build_socket_url(url)  # InvalidURL for a non-string or an unusable URL
    assert isinstance(url, str)
    return url


async def connect_args(
    url: str, params: ParamsSource, auth_token: TokenSource, vsn: str
) -> ConnectArgs:
    """The URL and subprotocols of the next connect attempt (``params`` and ``auth_token``
    evaluated now)."""
    values = await evaluate(params)
    if values is not None and not isinstance(values, Mapping):
        raise InvalidParams(
            f"the params callable must return a mapping, got {type(values).__name__}"
        )
    full_url = build_socket_url(url, values, vsn)
    token = await evaluate(auth_token)
    return full_url, auth_token_subprotocols(token) if token else []


def is_permanent(error: ConnectError) -> bool:
    """Whether retrying cannot help: the server rejected the upgrade, TLS refused the
    server's certificate or host name (or the handshake itself), or the proxy refused the
    credentials or the target."""
    cause = error.__cause__
    return (
        error.status is not None
        or isinstance(cause, ssl.SSLError | ssl.CertificateError)
        or (isinstance(cause, ProxyFailure) and cause.permanent)
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


class RedactedURL:
    """A URL shown in a log record with its secrets redacted, formatted only if the record
    is emitted."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url

    def __str__(self) -> str:
        return redact_url(self.url)
