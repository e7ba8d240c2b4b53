"""How the test server closes connections: ``disconnect``, drain, malformed and oversized
frames, idle timeout, shutdown (protocol reference §9, §10).

How these tests run: ``tests/testing/server_helpers.py``.
"""

from __future__ import annotations

import pytest
import trio

from tests.testing.server_helpers import connect, error
from trio_phoenix.testing import TestServer, demo_channels, open_test_server, serve_test_server


async def test_disconnect_closes_every_connection_of_the_id_with_1001() -> None:
    async with (
        open_test_server(connect=lambda params, info: params.get("id")) as server,
        connect(server, "id=u1&vsn=2.0.0") as one,
        connect(server, "id=u1&vsn=2.0.0") as two,
        connect(server, "id=u2&vsn=2.0.0") as other,
    ):
        server.disconnect("u1")
        assert (await one.closed()).code == 1001
        assert (await two.closed()).code == 1001
        await other.recv_nothing_before_heartbeat()
        server.broadcast("u2", "disconnect", {})
        assert (await other.closed()).code == 1001


async def test_phoenix_1_7_disconnects_with_1000_and_crashes_with_an_empty_payload() -> None:
    async with (
        open_test_server(
            demo_channels(), connect=lambda params, info: params.get("id"), phoenix_version="1.7"
        ) as server,
        connect(server, "id=u1&vsn=2.0.0") as one,
    ):
        await one.join("echo:1", "1")
        await one.send("1", "2", "echo:1", "crash", {})
        assert await one.recv() == ["1", "1", "echo:1", "phx_error", {}]
        server.disconnect("u1")
        assert (await one.closed()).code == 1000


async def test_drain_closes_with_1012(server: TestServer) -> None:
    async with connect(server) as client:
        await client.recv_nothing_before_heartbeat()
        server.drain()
        assert (await client.closed()).code == 1012


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1,2]", '{"topic":"t"}', "[1,2,3,4", b"\x05abc", b"\x00\x05\x01", b""],
)
async def test_malformed_frames_close_with_1011(server: TestServer, frame: str | bytes) -> None:
    async with connect(server) as client:
        await client.ws.send_message(frame)
        assert (await client.closed()).code == 1011
    connection = await server.wait_connections(1)
    await connection.wait_closed()
    assert connection.close_code == 1011


async def test_odd_field_types_are_routed_not_fatal(server: TestServer) -> None:
    async with connect(server) as client:
        await client.ws.send_message('[null,1,2,"phx_join",{}]')
        assert await client.recv() == [
            None,
            1,
            2,
            "phx_reply",
            error({"reason": "unmatched topic"}),
        ]
        await client.ws.send_message('[null,"r",["t"],7,{}]')
        assert await client.recv() == [
            None,
            "r",
            ["t"],
            "phx_reply",
            error({"reason": "unmatched topic"}),
        ]
    async with connect(server, "vsn=1.0.0") as client:
        await client.ws.send_message('{"topic":1,"event":"e","payload":{},"ref":2}')
        assert await client.recv() == {
            "event": "phx_reply",
            "payload": error({"reason": "unmatched topic"}),
            "ref": 2,
            "topic": 1,
        }


async def test_oversized_frames_close_with_1009() -> None:
    async with open_test_server(max_frame_size=1000) as server:
        async with connect(server) as client:
            await client.send(None, "1", "phoenix", "heartbeat", {"pad": "x" * 900})
            assert (await client.recv())[1] == "1"
            await client.send(None, "2", "phoenix", "heartbeat", {"pad": "x" * 2000})
            assert (await client.closed()).code == 1009
        async with connect(server) as client:  # 600 characters, 1200 bytes
            await client.send(None, "1", "phoenix", "heartbeat", {"pad": "é" * 600})
            assert (await client.closed()).code == 1009


async def test_idle_timeout(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_server(idle_timeout=60) as server, connect(server) as client:
        start = trio.current_time()
        for _ in range(4):  # a heartbeat every 30 s keeps the connection alive
            await trio.sleep(30)
            await client.recv_nothing_before_heartbeat()
        assert (await client.closed(patience=120)).code == 1000
        assert trio.current_time() - start >= 180
    async with (
        open_test_server(idle_timeout=3, idle_close_code=1002) as server,
        connect(server) as client,
    ):
        assert (await client.closed()).code == 1002


async def test_leaving_open_test_server_closes_clients_with_1001() -> None:
    codes: list[int] = []
    async with trio.open_nursery() as nursery, open_test_server(demo_channels()) as server:
        joined = trio.Event()

        async def client_task() -> None:
            async with connect(server) as client:
                await client.join("echo:1", "1")
                joined.set()
                codes.append((await client.closed()).code)

        nursery.start_soon(client_task)
        await joined.wait()
    assert codes == [1001]
    assert server.connections == []


async def test_cancelling_serve_test_server_sends_1001() -> None:
    server_scope = trio.CancelScope()

    async def run_server(*, task_status: trio.TaskStatus[TestServer]) -> None:
        with server_scope:
            await serve_test_server(demo_channels(), task_status=task_status)

    async with trio.open_nursery() as nursery:
        server: TestServer = await nursery.start(run_server)
        async with connect(server) as client:
            await client.join("echo:1", "1")
            server_scope.cancel()
            assert (await client.closed()).code == 1001
    assert server.connections == []


async def test_user_exceptions_are_not_wrapped() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_test_server():
            raise KeyError("mine")
