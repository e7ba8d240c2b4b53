"""The fault-injecting TCP proxy: pass-through, drop, stall, delay and refuse."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
from trio_websocket import wrap_client_stream

from trio_phoenix.testing import FaultProxy, open_fault_proxy, open_test_server

WAIT = 5.0


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            async for chunk in stream:
                await stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            partial(trio.serve_tcp, _echo, 0, host="127.0.0.1")
        )
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[FaultProxy]:
    async with open_fault_proxy("127.0.0.1", echo_port) as running:
        yield running


async def _dial(proxy: FaultProxy) -> trio.SocketStream:
    with trio.fail_after(WAIT):
        return await trio.open_tcp_stream(proxy.host, proxy.port)


async def _read(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    with trio.fail_after(WAIT):
        while len(data) < size:
            chunk = await stream.receive_some()
            assert chunk, "the stream ended early"
            data += chunk
    return data


async def _ended(stream: trio.SocketStream) -> None:
    """The stream ends (EOF or reset) without any more data."""
    with trio.fail_after(WAIT):
        try:
            assert await stream.receive_some() == b""
        except trio.BrokenResourceError:
            pass


async def test_pass_through(proxy: FaultProxy, echo_port: int) -> None:
    assert proxy.target == ("127.0.0.1", echo_port)
    async with await _dial(proxy) as stream:
        await stream.send_all(b"hello")
        assert await _read(stream, 5) == b"hello"
        connection = await proxy.wait_connections(1)
        assert (connection.bytes_up, connection.bytes_down) == (5, 5)
        await stream.send_eof()
        await _ended(stream)
    with trio.fail_after(WAIT):
        await connection.wait_closed()
    assert connection.closed
    assert proxy.statistics().connections_open == 0


async def test_websocket_through_the_proxy() -> None:
    async with (
        open_test_server() as server,
        open_fault_proxy("127.0.0.1", server.port) as proxy,
    ):
        url = proxy.url_for(server.url)
        assert url == f"ws://127.0.0.1:{proxy.port}/socket"
        assert proxy.url_for("ws://user@x:1/a?b=c") == f"ws://user@127.0.0.1:{proxy.port}/a?b=c"
        async with await _dial(proxy) as stream, trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery, stream, "127.0.0.1", "/socket/websocket?vsn=2.0.0"
            )
            await ws.send_message('[null,"1","phoenix","heartbeat",{}]')
            with trio.fail_after(WAIT):
                assert json.loads(await ws.get_message())[1] == "1"
            await ws.aclose()
            nursery.cancel_scope.cancel()
        server_side = await server.wait_connections(1)
        with trio.fail_after(WAIT):
            await server_side.wait_closed()


async def test_drop_closes_both_sides(proxy: FaultProxy) -> None:
    async with await _dial(proxy) as stream:
        await stream.send_all(b"x")
        await _read(stream, 1)
        connection = await proxy.wait_connections(1)
        connection.drop()
        await _ended(stream)
        with trio.fail_after(WAIT):
            await connection.wait_closed()


async def test_stall_holds_bytes_until_resume(
    proxy: FaultProxy, autojump_clock: trio.abc.Clock
) -> None:
    async with await _dial(proxy) as stream:
        connection = await proxy.wait_connections(1)
        connection.stall()
        assert connection.stalled
        await stream.send_all(b"held")
        with trio.move_on_after(60) as waited:
            await stream.receive_some()
        assert waited.cancelled_caught
        assert connection.bytes_up == 0
        connection.resume()
        assert await _read(stream, 4) == b"held"


async def test_delay_adds_latency_both_ways(
    proxy: FaultProxy, autojump_clock: trio.abc.Clock
) -> None:
    async with await _dial(proxy) as stream:
        connection = await proxy.wait_connections(1)
        connection.delay(1.5)
        with pytest.raises(ValueError, match=">= 0"):
            connection.delay(-1)
        start = trio.current_time()
        await stream.send_all(b"a")
        await stream.send_all(b"b")
        assert await _read(stream, 2) == b"ab"
        assert trio.current_time() - start >= 3.0  # 1.5 s up, 1.5 s down


async def test_refuse_resets_new_connections(proxy: FaultProxy) -> None:
    proxy.refuse()
    async with await _dial(proxy) as stream:
        await _ended(stream)
    assert proxy.statistics().connections_refused == 1
    assert proxy.accepted_connections == []
    proxy.refuse(False)
    async with await _dial(proxy) as stream:
        await stream.send_all(b"ok")
        assert await _read(stream, 2) == b"ok"


async def test_unreachable_target_closes_the_client() -> None:
    async with open_fault_proxy("127.0.0.1", 1) as proxy, await _dial(proxy) as stream:
        await _ended(stream)


async def test_user_exceptions_are_not_wrapped(echo_port: int) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_fault_proxy("127.0.0.1", echo_port):
            raise KeyError("mine")


def test_port_before_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = FaultProxy("127.0.0.1", 1).port
