"""Safe defaults: verified TLS, secrets kept out of logs and errors, bounded frame size.

* ``wss://`` verifies the server's certificate by default: a TLS-terminating front (a small
  ``trio.serve_ssl_over_tcp`` relay to the test server) with a certificate from a ``trustme``
  CA is refused with a ``ConnectError`` naming the failure, whether the CA is unknown or the
  certificate is for another host, raised by the first connect (no retry: it cannot heal);
  with an ``ssl_context`` that trusts the CA it is accepted.
* A deadline of the caller's that expires while the socket is still trying to connect raises
  ``ConnectTimeout`` (a ``ConnectError`` and ``trio.TooSlowError``) from the last failure,
  which ``socket.last_error`` also holds.
* Header values are checked before anything is sent: CR, LF, NUL or non-Latin-1 characters
  raise ``InvalidHeader`` naming the header, never showing the value.
* Param values, the auth token, headers and join params never appear in any log record (all
  loggers, DEBUG, a full run: connect, join, push, errors, timeouts, reconnects, rejected and
  refused reconnects, a refused first connect), nor in ``repr()`` of the socket, channel and
  presence, nor in ``str()`` / ``repr()`` of any exception or lifecycle event; neither does
  a password in the URL's userinfo (which is never sent).
* ``max_message_size`` defaults to Phoenix's 10 MB (``DEFAULT_MAX_MESSAGE_SIZE``): a hostile
  server cannot make the client buffer more; a bigger frame closes the connection (1009) and
  the socket reconnects. ``tests/client/test_hostile_server.py`` does the same with small limits.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import quote

import attrs
import pytest
import trio
import trustme

from tests.helpers import REAL_LIMIT, terminate_tls
from trio_phoenix import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Connected,
    ConnectError,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    InvalidHeader,
    LifecycleEvent,
    PushError,
    PushTimeout,
    open_socket,
)
from trio_phoenix.testing import (
    Accept,
    ConnectInfo,
    Reject,
    TestServer,
    demo_channels,
    open_fault_proxy,
    open_test_server,
)

# -- TLS -----------------------------------------------------------------------------------


@attrs.frozen
class TLSFront:
    """A TLS-terminating front for a test server, with a certificate for ``name``."""

    server: TestServer
    ca: trustme.CA
    port: int
    name: str

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/socket"

    def trusting_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
async def tls_front(
    request: pytest.FixtureRequest, phoenix_server: TestServer
) -> AsyncIterator[TLSFront]:
    """The test server behind TLS, with a certificate for 127.0.0.1 or for another host."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    name: str = getattr(request, "param", "127.0.0.1")
    ca.issue_cert(name).configure_cert(context)
    handler = partial(terminate_tls, phoenix_server.port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_ssl_over_tcp, handler, 0, context, host="127.0.0.1")
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        yield TLSFront(phoenix_server, ca, port, name)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("wait_connected", [True, False])
@pytest.mark.parametrize("tls_front", ["127.0.0.1", "example.org"], indirect=True)
async def test_wss_refuses_certificates_it_cannot_verify(
    tls_front: TLSFront, wait_connected: bool
) -> None:
    """The default context does not trust the test CA; a trusting context still refuses a
    certificate for another host. Either way the first attempt fails at the TLS handshake,
    and, since retrying cannot heal that, ``open_socket`` raises ``ConnectError`` with the
    ``ssl`` error as its cause at once (no retry), and no WebSocket reaches the server."""
    trusted = tls_front.name == "example.org"  # then only the host name is wrong
    options: dict[str, Any] = {"ssl_context": tls_front.trusting_context()} if trusted else {}
    started = trio.current_time()
    with trio.fail_after(REAL_LIMIT), pytest.raises(ConnectError) as raised:
        async with open_socket(
            tls_front.url, wait_connected=wait_connected, connect_timeout=5, **options
        ) as socket:
            await socket.wait_connected()
    assert trio.current_time() - started < 2  # refused at the handshake, not retried
    error = raised.value
    assert error.status is None
    assert "TLS handshake" in str(error)
    assert "certificate verify failed" in str(error)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    if trusted:
        assert "mismatch" in str(error)
    assert tls_front.server.accepted_connections == []


async def test_wss_accepts_a_certificate_the_given_ssl_context_trusts(
    tls_front: TLSFront,
) -> None:
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_socket(tls_front.url, ssl_context=tls_front.trusting_context()) as socket,
            socket.channel("echo:tls") as channel,
        ):
            assert await channel.push("echo", {"over": "tls"}) == {"over": "tls"}
    assert len(tls_front.server.accepted_connections) == 1


# -- secrets ---------------------------------------------------------------------------------

PARAM = "prm-7f1c2e0a9b"
BEARER = "brr-3d5e6f708192"
HEADER = "hdr-a4b5c6d7e8f9"
JOIN = "jn-0c1d2e3f4a5b"
SECRETS = (PARAM, BEARER, HEADER, JOIN)


def secret_forms() -> list[str]:
    """Every way a secret could be written: as is, percent-encoded, base64 (the bearer
    subprotocol entry), and the entry itself."""
    forms = [*SECRETS, *(quote(secret, safe="") for secret in SECRETS)]
    encoded = base64.b64encode(BEARER.encode()).decode().rstrip("=")
    return [*forms, encoded, encoded[:12]]


def leaks(text: str) -> list[str]:
    return [form for form in secret_forms() if form in text]


async def test_secrets_never_reach_logs_reprs_or_errors(
    caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []  # every repr and str the run produced
    refusing = False

    def connect(params: dict[str, Any], info: ConnectInfo) -> Accept | Reject:
        assert (params["token"], info.auth_token) == (PARAM, BEARER)
        assert ("authorization", f"Bearer {HEADER}") in info.headers
        return Reject(403) if refusing else Accept(id="user:secret")

    def collect(error: BaseException) -> None:
        shown.extend([str(error), repr(error), repr(error.args)])

    options: dict[str, Any] = {
        "params": {"token": PARAM},
        "auth_token": BEARER,
        "headers": {"Authorization": f"Bearer {HEADER}"},
        "timeout": 1,
        "connect_timeout": 1,  # a refused proxy connection hangs the handshake (a bug)
    }
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_test_server(demo_channels(), connect=connect, auth_token=True) as server,
            open_fault_proxy("127.0.0.1", server.port) as proxy,
        ):
            url = proxy.url_for(server.url)
            events: list[LifecycleEvent] = []
            async with (
                open_socket(url, heartbeat_interval=0.5, **options) as socket,
                socket.lifecycle() as lifecycle,
                socket.channel("room:secret", {"user": "ann", "token": JOIN}) as channel,
                socket.channel("echo:plain") as echo,
            ):
                assert channel.join_response == {"topic": "room:secret", "user": "ann"}
                await channel.push("new_msg", {"body": "hi"})
                with pytest.raises(PushError) as push_error:
                    await echo.push("error", {"reason": "refused"})
                collect(push_error.value)
                with pytest.raises(PushTimeout) as push_timeout:
                    await echo.push("noreply", {})
                collect(push_timeout.value)
                # A dropped connection, rejected and refused reconnects, then back.
                server.reject_upgrades(403)
                proxy.accepted_connections[0].drop()
                while len([e for e in events if isinstance(e, ConnectFailed)]) < 2:
                    events.append(await lifecycle.receive())
                server.reject_upgrades(None)
                proxy.refuse()
                while len([e for e in events if isinstance(e, ConnectFailed)]) < 3:
                    events.append(await lifecycle.receive())
                proxy.refuse(False)
                while not isinstance(event := await lifecycle.receive(), Connected):
                    events.append(event)
                await channel.wait_joined()
                await channel.push("new_msg", {"body": "again"})
                shown.extend([repr(socket), repr(channel), repr(channel.presence())])
                shown.extend([repr(socket.statistics()), repr(channel.statistics())])
            # A first connect the server refuses raises at once.
            refusing = True
            with pytest.raises(ConnectError) as refused:
                async with open_socket(url, **options):
                    pytest.fail("the server accepted")
            collect(refused.value)
            # Nobody listening at all: the caller's deadline tells the last failure.
            with pytest.raises(ConnectTimeout) as timed_out, trio.fail_after(0.3):
                async with open_socket(f"ws://127.0.0.1:{closed_port}/socket", **options):
                    pytest.fail("connected to a closed port")
            collect(timed_out.value)
            assert isinstance(timed_out.value.__cause__, ConnectError)
            collect(timed_out.value.__cause__)
        shown.extend(str(event) for event in events)
        for event in events:
            if isinstance(event, ConnectFailed):
                collect(event.error)
    statuses = [e.error.status for e in events if isinstance(e, ConnectFailed)]
    assert statuses[:2] == [403, 403]
    assert statuses[2] is None  # the proxy refused the TCP connection
    assert refused.value.status == 403
    assert "token=[REDACTED]" in str(refused.value)

    for text in shown:
        assert not leaks(text), text
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [formatter.format(record) for record in caplog.records]
    assert any(
        "refused the WebSocket upgrade" in line and "token=[REDACTED]" in line for line in logged
    )
    assert any("cannot connect" in line and "token=[REDACTED]" in line for line in logged)
    for line in logged:
        assert not leaks(line), line


async def test_a_password_in_the_url_is_never_shown(
    caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "pw-5e6f7a8b9c"
    url = f"ws://ann:{password}@127.0.0.1:{closed_port}/socket"
    shown: list[str] = []
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_socket(url, wait_connected=False) as socket,
            socket.lifecycle() as events,
        ):
            shown.append(repr(socket))
            while not isinstance(event := await events.receive(), ConnectFailed):
                pass
            shown.extend([str(event.error), repr(event.error)])
    shown.extend(record.getMessage() for record in caplog.records)
    assert [text for text in shown if password in text] == []


# -- frame size ------------------------------------------------------------------------------


def test_the_default_max_message_size_is_phoenixs_10_mb() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 10_000_000


@pytest.mark.parametrize(("size", "fits"), [(DEFAULT_MAX_MESSAGE_SIZE, True), (10_000_100, False)])
async def test_by_default_a_frame_over_10_mb_closes_and_reconnects(
    phoenix_server: TestServer, size: int, fits: bool
) -> None:
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:big") as channel,
            channel.subscribe("big") as messages,
        ):
            empty = len('[null,null,"echo:big","big",{"x":""}]')
            phoenix_server.broadcast("echo:big", "big", {"x": "x" * (size - empty)})
            if fits:
                message = await messages.receive()
                assert len(message.payload["x"]) == size - empty
            else:
                while not isinstance(event := await events.receive(), Disconnected):
                    pass
                assert event.code == 1009
                await channel.wait_joined()
                assert len(phoenix_server.accepted_connections) == 2
            assert await channel.push("echo", {"after": size}) == {"after": size}
            assert socket.statistics().connects == (1 if fits else 2)


# -- the last connect failure ----------------------------------------------------------------


async def test_a_deadline_while_connecting_tells_the_last_failure(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket"
    with pytest.raises(ConnectTimeout) as raised:  # noqa: PT012 -- the deadline is the point
        with trio.fail_after(3):
            async with open_socket(url):
                pytest.fail("connected to a closed port")
    error = raised.value
    assert isinstance(error, trio.TooSlowError)
    assert isinstance(error, ConnectError)
    assert isinstance(error.__cause__, ConnectError)
    assert error.last_error is error.__cause__
    assert "before the deadline; last attempt: cannot connect to" in str(error)
    assert "Connection refused" in str(error) or "connect" in str(error.__cause__)

    # The same for a socket the caller already holds, and socket.last_error says it too.
    async with open_socket(url, wait_connected=False) as socket:
        with pytest.raises(ConnectTimeout) as again:
            with trio.fail_after(3):
                await socket.wait_connected()
        assert socket.last_error is not None
        assert again.value.__cause__ is socket.last_error
        assert "cannot connect" in str(socket.last_error)
    # A cancellation that is not a deadline stays a cancellation.
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_after, scope, 3)
            async with open_socket(url):
                pytest.fail("connected to a closed port")
        assert scope.cancelled_caught


async def cancel_after(scope: trio.CancelScope, seconds: float) -> None:
    await trio.sleep(seconds)
    scope.cancel()


async def test_bad_header_values_never_show_in_the_error(closed_port: int) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket"
    for value in (f"Bearer {HEADER}\r\nX-Injected: 1", f"Bearer {HEADER} \u2713"):
        with pytest.raises(InvalidHeader, match="'Authorization'") as raised:
            async with open_socket(url, headers={"Authorization": value}):
                pytest.fail("opened")
        for text in (str(raised.value), repr(raised.value), repr(raised.value.args)):
            assert not leaks(text), text


async def test_a_404_says_which_path_was_tried(phoenix_server: TestServer) -> None:
    wrong = phoenix_server.url.replace("/socket", "/sockets") + f"?token={PARAM}"
    with trio.fail_after(REAL_LIMIT), pytest.raises(ConnectError) as raised:
        async with open_socket(wrong):
            pytest.fail("connected")
    message = str(raised.value)
    assert raised.value.status == 404
    assert "/sockets/websocket?token=[REDACTED]&vsn=2.0.0" in message
    assert "nothing at /sockets/websocket" in message
    assert not leaks(message)
