"""Fault injection and inspection on the test server's connections: drop, stall, send delay,
chosen close codes, received messages, ``wait_connections``.

How these tests run: ``tests/testing/server_helpers.py``.
"""

from __future__ import annotations

import pytest
import trio

from tests.testing.server_helpers import connect, ok
from trio_phoenix.testing import TestServer


async def test_drop_is_abrupt(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        connection.drop()
        assert (await client.closed()).code == 1006
        await connection.wait_closed()
        assert connection.close_code == 1006
        assert connection.closed
        assert server.connections == []


async def test_stall_and_resume(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        connection.stall()
        assert connection.stalled
        await client.send("1", "2", "echo:1", "echo", {"n": 2})
        with trio.move_on_after(120) as waited:  # idle timeout (60 s) is paused too
            await client.ws.get_message()
        assert waited.cancelled_caught
        connection.resume()
        assert await client.recv() == ["1", "2", "echo:1", "phx_reply", ok({"n": 2})]


async def test_send_delay(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    async with connect(server) as client:
        connection = await server.wait_connections(1)
        connection.send_delay = 2.5
        assert connection.send_delay == 2.5
        with pytest.raises(ValueError, match=">= 0"):
            connection.send_delay = -1
        start = trio.current_time()
        await client.recv_nothing_before_heartbeat()
        assert trio.current_time() - start >= 2.5


async def test_close_with_a_chosen_code(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        connection.close(4000, "go away")
        reason = await client.closed()
        assert (reason.code, reason.reason) == (4000, "go away")
    await connection.wait_closed()
    assert (connection.close_code, connection.close_reason) == (4000, "go away")


async def test_received_messages_are_recorded(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "7")
        connection = await server.wait_connections(1)
        join = await connection.wait_message(lambda m: m.event == "phx_join")
        assert (join.join_ref, join.ref, join.topic) == ("7", "7", "echo:1")

        async def late() -> None:
            await trio.sleep(0.01)
            await client.send("7", "8", "echo:1", "noreply", {"k": 1})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(late)
            push = await connection.wait_message(lambda m: m.ref == "8")
        assert push.payload == {"k": 1}
        assert [m.ref for m in connection.received] == ["7", "8"]
    await connection.wait_closed()
    with pytest.raises(trio.ClosedResourceError):
        await connection.wait_message(lambda m: False)


async def test_wait_connections_counts_every_accepted_connection(server: TestServer) -> None:
    for _ in range(2):
        async with connect(server):
            pass
    second = await server.wait_connections(2)
    assert second is server.accepted_connections[1]
    assert second.closed
    assert server.statistics().connections_open == 0


async def test_server_handles_before_start() -> None:
    server = TestServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    assert "not started" in repr(server)
