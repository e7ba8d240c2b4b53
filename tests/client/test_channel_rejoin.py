"""Channels after the join: rejoin after reconnects and crashes with its backoff, server-side
closes (``phx_close``, a stop with a reply) and messages with a stale join ref.

How these tests run: ``tests/client/channel_helpers.py``.
"""

from __future__ import annotations

import pytest
import trio

from tests.client.channel_helpers import Recorder
from tests.helpers import LIMIT, wire
from trio_phoenix import (
    ChannelClosed,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    RejoinScheduled,
    ReplyLost,
    open_socket,
)
from trio_phoenix.testing import TestServer


async def test_rejoin_after_a_reconnect_uses_a_new_join_ref(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("echo:r", {"p": 1})
            await channel.join()
            await channel.push("echo", {"n": 1})
            server.accepted_connections[0].drop()
            await server.wait_connections(2)
            await channel.wait_joined()
            assert await channel.push("echo", {"n": 2}) == {"n": 2}
            assert channel.join_ref == "3"
            assert wire(server, 1) == [
                ("3", "3", "echo:r", "phx_join", {"p": 1}),
                ("3", "4", "echo:r", "echo", {"n": 2}),
            ]
            assert channel.join_response == {"p": 1}


async def test_rejoin_after_a_crash_waits_for_the_rejoin_backoff(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:x")
            await channel.join()
            await events.receive()
            with pytest.raises(ReplyLost) as info:
                await channel.push("crash", {})
            assert (info.value.event, info.value.reason) == ("crash", {"reason": "channel_crash"})
            crashed_at = trio.current_time()
            assert channel.state is ChannelState.ERRORED
            connection = server.accepted_connections[0]
            rejoin = await connection.wait_message(
                lambda m: m.event == "phx_join" and m.join_ref != "1"
            )
            assert trio.current_time() - crashed_at == pytest.approx(1.0)
            assert (rejoin.join_ref, rejoin.ref) == ("3", "3")
            await channel.wait_joined()
            assert [await events.receive() for _ in range(3)] == [
                ChannelErrored(topic="echo:x", payload={"reason": "channel_crash"}),
                RejoinScheduled(topic="echo:x", delay=1.0, attempt=1),
                ChannelJoined(topic="echo:x", response={}, rejoin=True),
            ]
            assert connection.topics == {"echo:x": "3"}


async def test_refused_rejoins_back_off_1_2_5_10_seconds(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("flaky:1")
            assert await channel.join() == {"join": 1}
            await events.receive()
            with pytest.raises(ReplyLost):
                await channel.push("crash", {})
            start = trio.current_time()
            seen = [await events.receive() for _ in range(6)]
            assert seen == [
                ChannelErrored(topic="flaky:1", payload={"reason": "channel_crash"}),
                RejoinScheduled(topic="flaky:1", delay=1.0, attempt=1),
                RejoinScheduled(topic="flaky:1", delay=2.0, attempt=2),
                RejoinScheduled(topic="flaky:1", delay=5.0, attempt=3),
                RejoinScheduled(topic="flaky:1", delay=10.0, attempt=4),
                ChannelJoined(topic="flaky:1", response={"join": 5}, rejoin=True),
            ]
            assert trio.current_time() - start == pytest.approx(18.0)
            assert [jr for jr, _, _, event, _ in wire(server) if event == "phx_join"] == [
                "1",
                "3",
                "4",
                "5",
                "6",
            ]
            assert channel.join_response == {"join": 5}


async def test_phx_close_ends_the_channel_for_good(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:s")
            await channel.join()
            await events.receive()
            async with channel.subscribe() as messages:
                with pytest.raises(ChannelClosed) as info:
                    await channel.push("stop", {})
                assert info.value.reason == "server_closed"
                with pytest.raises(ChannelClosed) as info:
                    await messages.receive()
                assert (info.value.topic, info.value.reason) == ("echo:s", "server_closed")
            assert channel.state is ChannelState.CLOSED
            assert await events.receive() == ChannelEnded(
                topic="echo:s", reason="server_closed", payload={}
            )
            with pytest.raises(ChannelClosed):
                await channel.push("echo", {})
            with pytest.raises(ChannelClosed):
                async with channel.subscribe():
                    pass
            await trio.sleep(30)
            assert [event for _, _, _, event, _ in wire(server)] == ["phx_join", "stop"]


async def test_stop_with_a_reply_answers_the_push_then_closes(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:sr")
            await channel.join()
            await events.receive()
            assert await channel.push("stop_reply", {}) == {}
            assert await events.receive() == ChannelEnded(
                topic="echo:sr", reason="server_closed", payload={}
            )
            assert channel.state is ChannelState.CLOSED
            with pytest.raises(ChannelClosed):
                await channel.wait_joined()


async def test_messages_with_a_stale_join_ref_are_dropped(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("rec:1")
            async with channel.subscribe("note") as notes:
                await channel.join()
                with pytest.raises(ReplyLost):
                    await channel.push("crash", {})
                await trio.sleep(1.5)  # rejoined
                assert channel.join_ref == "3"
                old, new = Recorder.sockets
                assert (old.join_ref, new.join_ref) == ("1", "3")
                old.push("note", {"from": "old"})  # [ "1", null, "rec:1", "note", ...]
                new.push("note", {"from": "new"})
                server.broadcast("rec:1", "note", {"from": "broadcast"})
                assert await channel.push("echo", {}) == {}
                received = [notes.receive_nowait() for _ in range(2)]
                assert [(m.join_ref, m.payload) for m in received] == [
                    ("3", {"from": "new"}),
                    (None, {"from": "broadcast"}),
                ]
                with pytest.raises(trio.WouldBlock):
                    notes.receive_nowait()
                assert socket.statistics().dropped_messages == 1
