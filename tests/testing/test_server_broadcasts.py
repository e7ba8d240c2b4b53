"""Broadcasts and server pushes on the test server: every subscriber gets them, payloads must
be maps, no push during join, replies sent later, ``socket_ref``.

How these tests run: ``tests/testing/server_helpers.py``.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio

from tests.testing.server_helpers import Shouter, connect, error, ok
from trio_phoenix.testing import ChannelHandler, ChannelSocket, Reply, TestServer


async def test_broadcasts_reach_every_subscriber(server: TestServer) -> None:
    server.channel("shout:*", Shouter)
    async with connect(server) as a, connect(server) as b, connect(server, "") as c:
        await a.join("room:1", "1", {"user": "ann"})
        await b.join("room:1", "2", {"user": "bob"})
        await c.send("3", "3", "room:1", "phx_join", {"user": "cy"})
        for client, count in ((a, 4), (b, 3), (c, 3)):  # state and diffs (c: reply too)
            for _ in range(count):
                await client.recv()
        await a.send("1", "5", "room:1", "new_msg", {"body": "hi"})
        expected = [None, None, "room:1", "new_msg", {"body": "hi", "user": "ann"}]
        assert await a.recv() == expected
        assert await a.recv() == ["1", "5", "room:1", "phx_reply", ok({})]
        assert await b.recv() == expected
        assert await c.recv() == {
            "event": "new_msg",
            "payload": {"body": "hi", "user": "ann"},
            "ref": None,
            "topic": "room:1",
        }
        server.broadcast("room:1", "news", {"n": 1})
        assert await a.recv() == [None, None, "room:1", "news", {"n": 1}]
        assert await b.recv() == [None, None, "room:1", "news", {"n": 1}]
        await a.join("shout:1", "7")
        await b.join("shout:1", "8")
        await a.send("7", "9", "shout:1", "from", {"x": 1})
        assert await a.recv() == ["7", "9", "shout:1", "phx_reply", ok({})]
        assert await b.recv() == [None, None, "shout:1", "shout", {"x": 1}]
        await a.recv_nothing_before_heartbeat()


async def test_server_payloads_must_be_maps(server: TestServer) -> None:
    server.channel("shout:*", Shouter)
    with pytest.raises(ValueError, match="dict or bytes"):
        server.broadcast("room:1", "e", cast(Any, [1]))
    async with connect(server) as client:
        await client.join("shout:1", "1")
        await client.send("1", "2", "shout:1", "bad_push", {})
        assert await client.recv() == [
            "1",
            "1",
            "shout:1",
            "phx_error",
            {"reason": "channel_crash"},
        ]
    assert isinstance(server.crashes[0], ValueError)


class Eager(ChannelHandler):
    """Pushes inside join, which Phoenix forbids."""

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        await trio.lowlevel.checkpoint()
        socket.push("too_early", {})
        return None


async def test_push_during_join_crashes_the_join(server: TestServer) -> None:
    server.channel("eager", Eager)
    async with connect(server) as client:
        assert (await client.join("eager", "1"))[4] == error({"reason": "join crashed"})
    assert isinstance(server.crashes[0], RuntimeError)


async def test_reply_later(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        start = trio.current_time()
        await client.send("1", "2", "echo:1", "reply_later", {"delay": 3, "payload": {"v": 1}})
        await client.recv_nothing_before_heartbeat()
        assert await client.recv() == ["1", "2", "echo:1", "phx_reply", ok({"v": 1})]
        assert trio.current_time() - start >= 3


async def test_socket_ref_outside_handle_in_is_an_error(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        process = connection._channels["echo:1"]
        with pytest.raises(RuntimeError, match="socket_ref"):
            process.socket.socket_ref()
        assert process.socket.joined
        assert process.socket.ref is None
        assert process.socket.socket_id is None
        assert process.socket.params == {"vsn": "2.0.0"}
