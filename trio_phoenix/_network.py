"""The byte stream under every transport: TCP to the server, or a tunnel through an HTTP or
SOCKS proxy, and TLS for ``wss://`` (inside the tunnel, verified against the server's name).

Kept apart from the WebSocket code so that each way of reaching the server has one place to
live. Which proxy to use is decided by ``proxy_for()`` (the ``proxy`` option, or the standard
environment variables read at connect time); the tunnel itself is opened by python-socks.

Errors of a direct connection are left as they come (``OSError``,
``trio.BrokenResourceError``, ``ssl.SSLError``): the transport that asked turns them into
``ConnectError`` with the URL it was connecting to. A proxy that cannot be reached, refuses
the credentials or refuses the target raises ``ConnectError`` here, saying it was the proxy;
its ``__cause__`` is a ``ProxyFailure`` that tells whether retrying can help. Proxy
credentials never appear in a message or a log record.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import sys
import urllib.request
from typing import Final, Literal, NoReturn
from urllib.parse import unquote, urlsplit

import attrs
import trio
from python_socks import (
    ProxyConnectionError,
    ProxyError,
    ProxyTimeoutError,
    ProxyType,
)
from python_socks.async_.trio import Proxy

from ._exceptions import ConnectError

__all__ = ["ProxyFailure", "ProxyOption", "check_proxy", "open_stream", "proxy_for"]

#: The ``proxy`` option: a proxy URL, ``True`` (from the environment), or ``None`` (direct).
ProxyOption = str | Literal[True] | None

logger: Final = logging.getLogger("trio_phoenix")

#: Proxy URL scheme -> (python-socks type, the proxy resolves the target's name, default port).
_SCHEMES: Final = {
    "http": (ProxyType.HTTP, True, 80),
    "socks5": (ProxyType.SOCKS5, False, 1080),
    "socks5h": (ProxyType.SOCKS5, True, 1080),
    "socks4": (ProxyType.SOCKS4, False, 1080),
}
_KINDS: Final = {ProxyType.HTTP: "HTTP", ProxyType.SOCKS5: "SOCKS5", ProxyType.SOCKS4: "SOCKS4"}
_SCHEME_LIST: Final = "http://, socks5://, socks5h:// or socks4://"

#: SOCKS5 replies (python-socks messages and reply codes) that retrying cannot change.
_SOCKS_AUTH_FAILURES: Final = ("authentication failure", "no acceptable authentication")
_SOCKS_NOT_ALLOWED: Final = 0x02  # "connection not allowed by ruleset"
_MAX_REASON: Final = 200  # characters of a proxy's own error text kept in a message


class ProxyFailure(Exception):
    """The ``__cause__`` of a ``ConnectError`` raised because of the proxy.

    ``permanent`` is true when retrying cannot help (wrong or missing credentials, a target
    the proxy forbids, an unusable proxy URL in the environment).
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@attrs.frozen(repr=False)
class _ProxyURL:
    """A parsed proxy URL; ``repr`` and ``where`` never show the credentials."""

    type: ProxyType
    remote_dns: bool
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def kind(self) -> str:
        return _KINDS[self.type]

    def __repr__(self) -> str:
        return f"<proxy {self.where}>"


def _parse(url: str) -> _ProxyURL:
    """Parse a proxy URL; ``ValueError`` (never showing the password) if it cannot be used."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"it has no scheme: write it as {_SCHEME_LIST}host:port")
    if scheme not in _SCHEMES:
        raise ValueError(f"the scheme {scheme!r} is not supported: use {_SCHEME_LIST}host:port")
    proxy_type, remote_dns, default_port = _SCHEMES[scheme]
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("it has no host name")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("its port is not a number from 0 to 65535") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL is scheme://[user:password@]host:port, with no path")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        password = ""
    return _ProxyURL(
        proxy_type,
        remote_dns,
        scheme,
        parts.hostname,
        port or default_port,
        username,
        password,
    )


def _shown(url: str) -> str:
    """A proxy URL as it may appear in a message: no user info at all."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(a proxy URL without a scheme)"
    authority = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{authority}"


def check_proxy(proxy: object) -> None:
    """The ``proxy`` option: a usable proxy URL, ``True`` or ``None`` (``TypeError`` /
    ``ValueError`` naming it otherwise)."""
    if proxy is None or proxy is True:
        return
    if not isinstance(proxy, str):
        raise TypeError(
            "proxy must be a proxy URL such as 'http://proxy.example:3128', True (the "
            "default: from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY) or None "
            f"(connect directly), got {type(proxy).__name__} {proxy!r}"
        )
    try:
        _parse(proxy)
    except ValueError as exc:
        raise ValueError(f"proxy {_shown(proxy)!r} cannot be used: {exc}") from None


#: Where ``urllib.request.getproxies()`` reads only the environment (not macOS's or Windows's
#: system settings).
_NO_SYSTEM_PROXIES: Final = sys.platform not in ("darwin", "win32")


def proxy_for(url: str, proxy: ProxyOption = True) -> str | None:
    """The proxy URL to reach ``url`` (``ws``, ``wss``, ``http`` or ``https``) through, or
    ``None`` to connect directly.

    ``proxy`` is the socket's option: a URL is used as given, ``None`` means no proxy, and
    ``True`` reads the environment now, as ``urllib.request`` does: ``HTTPS_PROXY`` for
    ``wss``/``https``, ``HTTP_PROXY`` for ``ws``/``http``, then ``ALL_PROXY`` (lower-case
    names too), and no proxy for a host that ``NO_PROXY`` lists.

    Raises:
        ConnectError: the environment names a proxy that cannot be used (permanent: its
            ``__cause__`` is a ``ProxyFailure``).
    """
    if proxy is None or isinstance(proxy, str):
        return proxy
    if _NO_SYSTEM_PROXIES and not any(name[-6:].lower() == "_proxy" for name in os.environ):
        return None  # the common case, without urllib's scan of the environment (~40 us)
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    proxies = urllib.request.getproxies()
    found = proxies.get("https" if secure else "http") or proxies.get("all")
    if not found:
        return None
    host = parts.hostname or ""
    if host and urllib.request.proxy_bypass(host):
        return None
    if "://" not in found:
        found = f"http://{found}"  # as curl and requests read "proxy.example:3128"
    try:
        _parse(found)
    except ValueError as exc:
        message = (
            f"the proxy {_shown(found)!r} set in the environment (HTTPS_PROXY, HTTP_PROXY or "
            f"ALL_PROXY) cannot be used: {exc}; fix it, or pass proxy=None to connect directly"
        )
        raise ConnectError(message) from ProxyFailure(message, permanent=True)
    return found


async def open_stream(
    host: str,
    port: int,
    *,
    secure: bool,
    ssl_context: ssl.SSLContext | None,
    proxy: str | None = None,
) -> trio.abc.Stream:
    """Open a TCP stream to ``host:port`` (through ``proxy``, a URL from ``proxy_for``, if
    given), wrapped in TLS (verified against ``host``) when ``secure``; ``ssl_context``
    defaults to the system's trusted CAs.

    Raises:
        ConnectError: the proxy could not be reached or refused the connection.
    """
    stream: trio.abc.Stream
    if proxy is None:
        stream = await trio.open_tcp_stream(host, port)
    else:
        stream = await _open_tunnel(_parse(proxy), host, port)
    if secure:
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    return stream


async def _open_tunnel(proxy: _ProxyURL, host: str, port: int) -> trio.SocketStream:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    via = f"the {proxy.kind} proxy {proxy.where}"
    logger.debug("connecting to %s through %s", target, via)
    tunnel = Proxy(
        proxy.type,
        proxy.host,
        proxy.port,
        proxy.username,
        proxy.password,
        rdns=proxy.remote_dns,
    )
    try:
        sock = await tunnel.connect(host, port, timeout=math.inf)
    except ProxyConnectionError as exc:
        reason = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        _fail(f"cannot reach {via} to connect to {target}: {reason}", False, exc)
    except ProxyError as exc:
        _fail(*_refusal(proxy, via, target, exc), exc)
    except (ProxyTimeoutError, OSError) as exc:  # the target's name did not resolve, ...
        _fail(f"cannot connect to {target} through {via}: {exc}", False, exc)
    return trio.SocketStream(sock)


def _refusal(proxy: _ProxyURL, via: str, target: str, exc: ProxyError) -> tuple[str, bool]:
    """The message for a proxy's refusal, and whether it is permanent."""
    reason = str(exc)[:_MAX_REASON]  # the proxy's own words: bounded
    code = exc.error_code
    if (proxy.type is ProxyType.HTTP and code == 407) or any(
        text in reason.lower() for text in _SOCKS_AUTH_FAILURES
    ):
        if proxy.username:
            return (
                f"{via} rejected the user and password of the proxy URL ({reason}) when "
                f"connecting to {target}; fix them: retrying will not help",
                True,
            )
        return (
            f"{via} requires a user and password ({reason}) to connect to {target}; put them "
            f"in the proxy URL ({proxy.scheme}://user:password@host:port): retrying will not "
            "help",
            True,
        )
    if code is None:  # the proxy closed the connection or answered nonsense
        hint = (
            " (some proxies close the connection on a wrong user or password)"
            if proxy.username and proxy.type is not ProxyType.HTTP
            else ""
        )
        return f"{via} ended the handshake for {target}: {reason}{hint}", False
    if proxy.type is ProxyType.HTTP:
        permanent = 400 <= code < 500 and code not in (408, 429)
    else:
        permanent = proxy.type is ProxyType.SOCKS5 and code == _SOCKS_NOT_ALLOWED
    return (
        f"{via} refused to connect to {target}: {reason}"
        + ("; retrying will not help" if permanent else ""),
        permanent,
    )


def _fail(message: str, permanent: bool, exc: BaseException) -> NoReturn:
    failure = ProxyFailure(message, permanent=permanent)
    failure.__cause__ = exc
    raise ConnectError(message) from failure
