"""HTTP CONNECT and SOCKS proxies, against real proxy servers we did not write.

Each test starts ``pproxy`` (PyPI) as a subprocess on loopback, as an HTTP CONNECT proxy or a
SOCKS5 / SOCKS4 proxy, with or without a user and password, and reads its verbose log to see
which connections it made: a test that goes through the proxy must show the proxy connecting
to the test server, and one that must not must show no connection.

* ``ws://`` and ``wss://`` (TLS inside the tunnel, verified against the server's name) through
  HTTP CONNECT and SOCKS5, with and without credentials; ``socks5h://`` leaves the name to the
  proxy, ``socks5://`` resolves it locally.
* The default takes the proxy from ``HTTPS_PROXY`` (wss) / ``HTTP_PROXY`` (ws) / ``ALL_PROXY``,
  lower-case names too, skips hosts listed in ``NO_PROXY``; ``proxy=None`` connects directly.
* Wrong or missing credentials (HTTP 407) raise ``ConnectError`` at once, saying it was the
  proxy and that retrying will not help; an unreachable proxy is retried like an unreachable
  server. No message and no log record (DEBUG) shows a proxy password.
* The ``proxy`` option is checked up front (``TypeError`` / ``ValueError`` naming it).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import pytest
import trio
import trustme
from python_socks import ProxyError

from tests.helpers import REAL_LIMIT, terminate_tls
from tests.proxies import PASSWORD, USER, free_port, run_proxy
from trio_phoenix import ConnectError, open_socket
from trio_phoenix._network import ProxyFailure, _parse, _refusal, proxy_for
from trio_phoenix._options import is_permanent
from trio_phoenix.testing import PhoenixServerFactory, TestServer, demo_channels

WRONG = "not-the-pass"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _never_again(attempt: int) -> float | None:
    return None  # give up after the first failed attempt: open_socket raises its error


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable in the environment (whatever the machine has); set your own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    return monkeypatch


# -- TLS behind the proxy ----------------------------------------------------------------


@attrs.frozen
class Target:
    """Where a test connects: the test server, directly (``ws``) or behind TLS (``wss``)."""

    server: TestServer
    url: str
    port: int
    ssl_context: ssl.SSLContext | None


@asynccontextmanager
async def serve(
    server: TestServer, scheme: str, certificate_for: str = "127.0.0.1"
) -> AsyncIterator[Target]:
    if scheme == "ws":
        yield Target(server, server.url, server.port, None)
        return
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(certificate_for).configure_cert(context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(
                trio.serve_ssl_over_tcp,
                partial(terminate_tls, server.port),
                0,
                context,
                host="127.0.0.1",
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        yield Target(server, f"wss://127.0.0.1:{port}/socket", port, trusting)
        nursery.cancel_scope.cancel()


async def _echo_through(target: Target, **options: Any) -> None:
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_socket(target.url, ssl_context=target.ssl_context, **options) as socket,
            socket.channel("echo:proxy") as channel,
        ):
            assert await channel.push("echo", {"via": "proxy"}) == {"via": "proxy"}


# -- through the proxy -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("auth", [False, True], ids=["anonymous", "credentials"])
@pytest.mark.parametrize("proxy_scheme", ["http", "socks5"])
async def test_ws_and_wss_through_a_proxy(
    phoenix_server: TestServer, scheme: str, auth: bool, proxy_scheme: str
) -> None:
    async with (
        serve(phoenix_server, scheme) as target,
        run_proxy(proxy_scheme, auth=auth) as proxy,
    ):
        await _echo_through(target, proxy=proxy.url())
        assert len(proxy.connections_to(target.port)) == 1
    assert len(phoenix_server.accepted_connections) == 1


@pytest.mark.parametrize("transport", ["trio-websocket", "longpoll"])
@pytest.mark.parametrize("proxy_scheme", ["http", "socks5"])
async def test_every_transport_goes_through_the_proxy(
    phoenix_server_factory: PhoenixServerFactory, transport: str, proxy_scheme: str
) -> None:
    """The proxy applies to the trio-websocket and LongPoll transports too (LongPoll through
    httpx's proxy support), with credentials."""
    server = await phoenix_server_factory(demo_channels(), longpoll=True)
    async with run_proxy(proxy_scheme, auth=True) as proxy:
        target = Target(server, server.url, server.port, None)
        await _echo_through(target, proxy=proxy.url(), transport=transport)
        assert len(proxy.connections_to(server.port)) >= 1
    assert [c.transport for c in server.accepted_connections] == [
        "longpoll" if transport == "longpoll" else "websocket"
    ]


@pytest.mark.parametrize(
    ("proxy_scheme", "expected_target"),
    [("socks5h", "localhost"), ("socks5", "127.0.0.1"), ("socks4", "127.0.0.1")],
)
async def test_who_resolves_the_server_name(
    phoenix_server: TestServer, proxy_scheme: str, expected_target: str
) -> None:
    """``socks5h`` sends the name to the proxy; ``socks5`` and ``socks4`` send an address."""
    listen = "socks4" if proxy_scheme == "socks4" else "socks5"
    url = phoenix_server.url.replace("127.0.0.1", "localhost")
    async with run_proxy(listen) as proxy:
        with trio.fail_after(REAL_LIMIT):
            async with open_socket(url, proxy=f"{proxy_scheme}://127.0.0.1:{proxy.port}"):
                pass
        [line] = proxy.connections_to(phoenix_server.port)
        assert f"-> {expected_target}:{phoenix_server.port}" in line


async def test_tls_inside_the_tunnel_is_verified_against_the_server_name(
    phoenix_server: TestServer,
) -> None:
    async with (
        serve(phoenix_server, "wss", certificate_for="example.org") as target,
        run_proxy("http") as proxy,
    ):
        with trio.fail_after(REAL_LIMIT), pytest.raises(ConnectError) as info:
            await _echo_through(target, proxy=proxy.url())
        assert "TLS handshake" in str(info.value)
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        assert len(proxy.connections_to(target.port)) == 1
    assert phoenix_server.accepted_connections == []


# -- the environment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "variable"),
    [
        ("ws", "HTTP_PROXY"),
        ("ws", "http_proxy"),
        ("wss", "HTTPS_PROXY"),
        ("ws", "ALL_PROXY"),
        ("wss", "all_proxy"),
    ],
)
async def test_the_default_proxy_comes_from_the_environment(
    phoenix_server: TestServer, no_env_proxy: pytest.MonkeyPatch, scheme: str, variable: str
) -> None:
    async with serve(phoenix_server, scheme) as target, run_proxy("http", auth=True) as proxy:
        no_env_proxy.setenv(variable, proxy.url())
        # The variable for the other scheme is not used.
        other = "HTTP_PROXY" if scheme == "wss" else "HTTPS_PROXY"
        if variable.upper() != "ALL_PROXY":
            no_env_proxy.setenv(other, "http://127.0.0.1:9")
        await _echo_through(target)
        assert len(proxy.connections_to(target.port)) == 1


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_and_proxy_none_connect_directly(
    phoenix_server: TestServer, no_env_proxy: pytest.MonkeyPatch, no_proxy: str
) -> None:
    async with run_proxy("http") as proxy:
        no_env_proxy.setenv("HTTP_PROXY", proxy.url())
        await _echo_through(_direct(phoenix_server), proxy=None)
        no_env_proxy.setenv("NO_PROXY", no_proxy)
        await _echo_through(_direct(phoenix_server))
        assert proxy.connections_to(phoenix_server.port) == []
    assert len(phoenix_server.accepted_connections) == 2


def _direct(server: TestServer) -> Target:
    return Target(server, server.url, server.port, None)


def test_proxy_for_reads_the_environment_at_each_call(no_env_proxy: pytest.MonkeyPatch) -> None:
    """What the LongPoll transport asks too: ``http``/``https`` URLs follow ws/wss."""
    assert proxy_for("ws://example.org/socket") is None
    no_env_proxy.setenv("HTTP_PROXY", "http://plain.example:3128")
    no_env_proxy.setenv("HTTPS_PROXY", "proxy.example:3128")  # no scheme: HTTP CONNECT
    assert proxy_for("ws://example.org/socket") == "http://plain.example:3128"
    assert proxy_for("http://example.org/socket") == "http://plain.example:3128"
    assert proxy_for("wss://example.org/socket") == "http://proxy.example:3128"
    assert proxy_for("https://example.org/socket") == "http://proxy.example:3128"
    assert proxy_for("wss://example.org/socket", None) is None
    assert proxy_for("wss://example.org/socket", "socks5://s:1080") == "socks5://s:1080"
    no_env_proxy.setenv("NO_PROXY", ".example.org, other.test")
    assert proxy_for("wss://www.example.org/socket") is None
    assert proxy_for("wss://other.test:4000/socket") is None
    assert proxy_for("wss://example.net/socket") == "http://proxy.example:3128"
    no_env_proxy.delenv("HTTPS_PROXY")
    no_env_proxy.setenv("ALL_PROXY", "socks5h://all.example:1080")
    assert proxy_for("wss://example.net/socket") == "socks5h://all.example:1080"


def test_an_unusable_proxy_in_the_environment_is_a_permanent_connect_error(
    no_env_proxy: pytest.MonkeyPatch,
) -> None:
    no_env_proxy.setenv("HTTPS_PROXY", f"https://{USER}:{PASSWORD}@proxy.example:3128")
    with pytest.raises(ConnectError) as info:
        proxy_for("wss://example.org/socket")
    assert "HTTPS_PROXY" in str(info.value)
    assert "https://proxy.example:3128" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert USER not in str(info.value)
    assert is_permanent(info.value)


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("user", [USER, None], ids=["wrong", "missing"])
async def test_refused_http_proxy_credentials_raise_at_once(
    phoenix_server: TestServer, user: str | None
) -> None:
    async with run_proxy("http", auth=True) as proxy:
        with trio.fail_after(REAL_LIMIT), pytest.raises(ConnectError) as info:
            # The default reconnect schedule: only a permanent error raises at once.
            await _echo_through(_direct(phoenix_server), proxy=proxy.url(user, WRONG))
        message = str(info.value)
        assert f"the HTTP proxy http://127.0.0.1:{proxy.port}" in message
        assert "407" in message
        assert "retrying will not help" in message
        assert ("rejected the user and password" if user else "requires a user") in message
        assert WRONG not in message
        assert is_permanent(info.value)
        assert isinstance(info.value.__cause__, ProxyFailure)
        assert proxy.connections_to(phoenix_server.port) == []
    assert phoenix_server.accepted_connections == []


async def test_refused_socks5_credentials_raise_a_proxy_error(phoenix_server: TestServer) -> None:
    """pproxy closes the connection on wrong SOCKS5 credentials (no RFC 1929 failure reply),
    which cannot be told from a proxy going away: a retryable error naming the proxy, with a
    hint. (A proxy that answers the failure gets the permanent error of the test below.)"""
    async with run_proxy("socks5", auth=True) as proxy:
        with trio.fail_after(REAL_LIMIT), pytest.raises(ConnectError) as info:
            await _echo_through(
                _direct(phoenix_server),
                proxy=proxy.url(USER, WRONG),
                reconnect_after=_never_again,
            )
        message = str(info.value)
        assert f"the SOCKS5 proxy socks5://127.0.0.1:{proxy.port}" in message
        assert "ended the handshake" in message
        assert "wrong user or password" in message
        assert WRONG not in message
        assert USER not in message
        assert not is_permanent(info.value)
        assert proxy.connections_to(phoenix_server.port) == []


@pytest.mark.parametrize(
    ("url", "reply", "permanent"),
    [
        (
            "socks5://u:p@proxy:1080",
            ProxyError("Username and password authentication failure"),
            True,
        ),
        (
            "socks5://proxy:1080",
            ProxyError("No acceptable authentication methods were offered"),
            True,
        ),
        (
            "socks5://proxy:1080",
            ProxyError("Connection not allowed by ruleset", error_code=2),
            True,
        ),
        ("socks5://proxy:1080", ProxyError("Host unreachable", error_code=4), False),
        ("http://proxy:3128", ProxyError("403 Forbidden", error_code=403), True),
        ("http://proxy:3128", ProxyError("502 Bad Gateway", error_code=502), False),
        ("http://proxy:3128", ProxyError("429 Too Many Requests", error_code=429), False),
    ],
)
def test_which_proxy_refusals_are_permanent(url: str, reply: ProxyError, permanent: bool) -> None:
    """The replies pproxy does not give, as python-socks reports them."""
    message, found = _refusal(_parse(url), "the proxy", "server:443", reply)
    assert found is permanent
    assert ("retrying will not help" in message) is permanent
    assert str(reply) in message


@pytest.mark.parametrize("proxy_scheme", ["http", "socks5"])
async def test_an_unreachable_proxy_is_retried(
    phoenix_server: TestServer, proxy_scheme: str
) -> None:
    port = free_port()  # nothing listens there
    url = f"{proxy_scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}"
    with trio.fail_after(REAL_LIMIT), pytest.raises(ConnectError) as info:
        await _echo_through(_direct(phoenix_server), proxy=url, reconnect_after=_never_again)
    message = str(info.value)
    kind = {"http": "HTTP", "socks5": "SOCKS5"}[proxy_scheme]
    assert f"cannot reach the {kind} proxy {proxy_scheme}://127.0.0.1:{port}" in message
    assert PASSWORD not in message
    assert USER not in message
    assert not is_permanent(info.value)


async def test_proxy_credentials_are_never_logged(
    phoenix_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with run_proxy("socks5", auth=True) as socks, run_proxy("http", auth=True) as http:
        await _echo_through(_direct(phoenix_server), proxy=socks.url())
        with pytest.raises(ConnectError) as info:
            await _echo_through(_direct(phoenix_server), proxy=http.url(password=PASSWORD + "x"))
    texts = [record.getMessage() for record in caplog.records]
    assert any("through the SOCKS5 proxy socks5://127.0.0.1" in text for text in texts)
    for text in [*texts, str(info.value), repr(info.value), repr(info.value.__cause__)]:
        assert PASSWORD not in text
        assert USER not in text


# -- the option --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxy", "error", "words"),
    [
        (False, TypeError, "proxy must be a proxy URL"),
        (3128, TypeError, "proxy must be a proxy URL"),
        ("proxy.example:3128", ValueError, "no scheme"),
        (f"https://{USER}:{PASSWORD}@proxy.example:3128", ValueError, "'https' is not supported"),
        (f"http://{USER}:{PASSWORD}@proxy.example:99999", ValueError, "port"),
        ("socks5://:1080", ValueError, "no host"),
        (f"http://{USER}:{PASSWORD}@proxy.example:3128/path", ValueError, "no path"),
    ],
)
async def test_a_bad_proxy_option_raises_at_once(
    phoenix_server: TestServer, proxy: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as info:
        async with open_socket(phoenix_server.url, proxy=proxy):  # type: ignore[arg-type]
            pass
    assert str(info.value).startswith("proxy")
    assert words in str(info.value)
    assert PASSWORD not in str(info.value)
    assert phoenix_server.accepted_connections == []
