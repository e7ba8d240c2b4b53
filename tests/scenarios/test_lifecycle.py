"""Crashes, stops, server-side disconnects: rejoin, reconnect, and what calls see."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_phoenix import (
    ChannelClosed,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    Disconnected,
    HeartbeatTimeout,
    RejoinScheduled,
    ReplyLost,
    SocketState,
    open_socket,
)

from .conftest import LIMIT, ScenarioServer, disconnect_me, fast_rejoin


async def test_crash_errors_then_rejoins(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, rejoin_after=fast_rejoin) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:crash") as channel,
        ):
            first_ref = channel.join_ref
            with pytest.raises(ReplyLost):
                await channel.push("crash", {})
            seen: list[type[object]] = []
            async for event in events:
                if isinstance(event, ChannelJoined | ChannelErrored | RejoinScheduled):
                    seen.append(type(event))
                if len(seen) == 4:
                    break
            assert seen == [ChannelJoined, ChannelErrored, RejoinScheduled, ChannelJoined]
            await channel.wait_joined()
            assert channel.join_ref != first_ref
            assert await channel.push("echo", {"back": 1}) == {"back": 1}


async def test_stop_closes_the_channel_for_good(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:stop") as channel,
            channel.subscribe() as messages,
        ):
            with pytest.raises(ChannelClosed):
                await channel.push("stop", {})
            with pytest.raises(ChannelClosed) as caught:
                await messages.receive()
            assert caught.value.reason == "server_closed"
            assert channel.state is ChannelState.CLOSED
            async for event in events:
                if isinstance(event, ChannelEnded):
                    assert event.reason == "server_closed"
                    break


async def test_stop_with_reply(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.lifecycle() as events,
        ):
            channel = socket.channel("echo:stop_reply")
            await channel.join()
            assert await channel.push("stop_reply", {}) == {}
            async for event in events:
                if isinstance(event, ChannelEnded):
                    assert event.reason == "server_closed"
                    break
            assert channel.state is ChannelState.CLOSED
            with pytest.raises(ChannelClosed):
                await channel.push("echo", {})


async def test_disconnect_reconnects_and_rejoins(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, params={"user": "dora"}) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:dc", {"k": "v"}) as channel,
        ):
            first_ref = channel.join_ref
            await disconnect_me(channel)
            kinds = []
            async for event in events:
                kinds.append(type(event))
                if isinstance(event, ChannelJoined) and event.rejoin:
                    break
            assert Disconnected in kinds
            assert kinds.index(Disconnected) < kinds.index(Connected)
            assert channel.join_ref != first_ref
            assert await channel.push("echo", {"again": 1}) == {"again": 1}
            assert socket.statistics().connects == 2


async def test_push_while_offline_is_sent_after_rejoin(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, params={"user": "eve"}) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:offline") as channel,
        ):
            await disconnect_me(channel)
            async for event in events:
                if isinstance(event, Disconnected):
                    break
            # Made while the socket is down: buffered, then sent after the rejoin.
            assert await channel.push("echo", {"late": True}) == {"late": True}


async def test_pending_push_is_lost_on_disconnect(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, params={"user": "finn"}) as socket,
            socket.channel("echo:lost") as slow,
            socket.channel("echo:trigger") as trigger,
        ):
            async with trio.open_nursery() as nursery:
                outcome: list[BaseException] = []

                async def wait_for_reply() -> None:
                    try:
                        await slow.push("noreply", {})
                    except ReplyLost as exc:
                        outcome.append(exc)

                nursery.start_soon(wait_for_reply)
                await trio.testing.wait_all_tasks_blocked()  # the push is on the wire
                await disconnect_me(trigger)
            assert len(outcome) == 1


async def test_socket_closes_cleanly(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channel = socket.channel("echo:bye")
            await channel.join()
        assert socket.state is SocketState.CLOSED
        assert channel.state is ChannelState.CLOSED


async def test_heartbeats_are_answered(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, heartbeat_interval=0.05) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:hb") as channel,
        ):
            # Ten intervals: a heartbeat left unanswered would close the connection.
            with trio.move_on_after(0.5):
                async for event in events:
                    assert not isinstance(event, HeartbeatTimeout | Disconnected)
            assert socket.statistics().heartbeats_sent >= 5
            assert socket.statistics().connects == 1
            assert await channel.push("echo", {}) == {}
