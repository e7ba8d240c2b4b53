"""The WebSocket transport: opening (refused, rejected, TLS), frames both ways, and close codes.

A rejected or failed handshake must raise ``ConnectError`` from ``open_transport`` itself
(not from the caller's nursery) and leave no socket behind: pyproject turns warnings into
errors, and these tests also collect garbage and look for ``ResourceWarning`` explicitly.
"""

from __future__ import annotations

import gc
import socket as stdlib_socket
import ssl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trustme
from trio_websocket import WebSocketRequest, serve_websocket

from trio_phoenix import ConnectError
from trio_phoenix._transport import Transport, TransportClosed, open_transport
from trio_phoenix.testing import Reject, TestServer, demo_channels
from trio_phoenix.testing._pytest_plugin import PhoenixServerFactory

LIMIT = 30
MAX = 10_000_000


@contextmanager
def no_resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Fail if anything in the block leaves an unclosed resource for the garbage collector."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


def endpoint(server: TestServer, query: str = "vsn=2.0.0") -> str:
    return f"{server.url}/websocket?{query}"


async def test_the_leak_detector_works() -> None:
    with pytest.raises(AssertionError, match="unclosed"), no_resource_warnings():
        stdlib_socket.socket()


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/socket/websocket?vsn=2.0.0", 403, b"not you"),
        ("/socket/websocket?vsn=9.0.0", 403, b""),
        ("/elsewhere/websocket?vsn=2.0.0", 404, b""),
    ],
)
async def test_a_rejected_handshake_raises_connect_error_and_leaks_nothing(
    phoenix_server_factory: PhoenixServerFactory,
    path: str,
    status: int,
    body: bytes,
    autojump_clock: trio.abc.Clock,
) -> None:
    def connect(params: dict[str, Any], info: Any) -> Reject | None:
        return Reject(403, body) if body else None

    server = await phoenix_server_factory(demo_channels(), connect=connect)
    url = f"ws://127.0.0.1:{server.port}{path}"
    with trio.fail_after(LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            with pytest.raises(ConnectError) as info:
                await open_transport(url, max_message_size=MAX)
            # The caller's nursery is not poisoned: it keeps working.
            nursery.start_soon(trio.sleep, 0)
        assert type(info.value) is ConnectError
        assert info.value.status == status
        assert (info.value.body or b"") == body
        assert server.statistics().upgrades_rejected == 1
        assert server.accepted_connections == []


async def test_a_refused_connection_raises_connect_error_without_status(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket/websocket?vsn=2.0.0&token=s3cret"
    with trio.fail_after(LIMIT), no_resource_warnings():
        async with trio.open_nursery():
            with pytest.raises(ConnectError) as info:
                await open_transport(url, max_message_size=MAX)
    assert info.value.status is None
    assert "cannot connect" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


async def test_frames_both_ways_and_close_codes(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            transport = await open_transport(endpoint(phoenix_server), max_message_size=MAX)
            assert isinstance(transport, Transport)
            assert transport.subprotocol is None
            still_open = transport.closed
            assert still_open is None
            await transport.send_many(['[null,"1","phoenix","heartbeat",{}]'])
            assert await transport.receive_batch() == [
                '[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]'
            ]
            phoenix_server.accepted_connections[0].close(4000, "custom")
            with pytest.raises(TransportClosed) as info:
                await transport.receive_batch()
            assert (info.value.code, info.value.reason) == (4000, "custom")
            closed = transport.closed
            assert closed is not None
            assert closed.code == 4000
            with pytest.raises(TransportClosed):
                await transport.send_many(["[]"])
            await transport.abort()
            nursery.cancel_scope.cancel()


async def test_a_dropped_connection_closes_with_1006(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            transport = await open_transport(endpoint(phoenix_server), max_message_size=MAX)
            (await phoenix_server.wait_connections(1)).drop()
            with pytest.raises(TransportClosed) as info:
                await transport.receive_batch()
            assert info.value.code == 1006
            await transport.abort()
            nursery.cancel_scope.cancel()


async def test_client_close_sends_the_code(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            transport = await open_transport(
                endpoint(phoenix_server),
                subprotocols=["phoenix"],
                headers=[("X-Probe", "1")],
                max_message_size=MAX,
            )
            connection = await phoenix_server.wait_connections(1)
            assert connection.connect_info.header("x-probe") == "1"
            await transport.aclose(1000, "done")
            await connection.wait_closed()
            assert (connection.close_code, connection.close_reason) == (1000, "done")
            await transport.abort()
            nursery.cancel_scope.cancel()


@pytest.fixture
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def _echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        await ws.send_message(await ws.get_message())
    finally:
        await ws.aclose()


async def test_wss_verifies_certificates(
    certificate_authority: trustme.CA, autojump_clock: trio.abc.Clock
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    trusting = ssl.create_default_context()
    certificate_authority.configure_trust(trusting)
    with trio.fail_after(LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, _echo, "127.0.0.1", 0, server_context)
            url = f"wss://127.0.0.1:{server.port}/socket/websocket?vsn=2.0.0"
            # The default context does not trust our test CA.
            with pytest.raises(ConnectError) as info:
                await open_transport(url, max_message_size=MAX)
            assert info.value.status is None
            assert "TLS handshake" in str(info.value)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            assert trio.current_time() == 0
            transport = await open_transport(url, ssl_context=trusting, max_message_size=MAX)
            await transport.send_many(["over TLS"])
            assert await transport.receive_batch() == ["over TLS"]
            await transport.abort()
            nursery.cancel_scope.cancel()
