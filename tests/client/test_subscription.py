"""Subscriptions: event filtering, bounded buffers with an explicit overflow policy, a reader
that never waits for a slow subscriber, and how streams end.

Real client, real in-process server, real loopback WebSockets; anything timed runs on
``autojump_clock`` and every test has an absolute deadline. Server pushes are triggered with
the echo channel's ``push`` event: the push frame precedes the reply on the wire, so once
``channel.push`` returns, the pushed message has been handed to the subscribers.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.helpers import LIMIT
from trio_phoenix import (
    Channel,
    ChannelClosed,
    Message,
    SubscriptionOverflow,
    open_socket,
)
from trio_phoenix.testing import TestServer


async def server_push(channel: Channel, event: str, payload: Any) -> None:
    """Have the server push ``event`` to this channel; returns once it was delivered."""
    assert await channel.push("push", {"event": event, "payload": payload}) == {}


def msg(topic: str, event: str, payload: Any, join_ref: str | None = "1") -> Message:
    return Message(join_ref=join_ref, ref=None, topic=topic, event=event, payload=payload)


async def test_events_are_filtered_by_name(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:f") as channel,
            channel.subscribe("a") as only_a,
            channel.subscribe("a", "b") as a_and_b,
            channel.subscribe() as everything,
        ):
            for event in ("a", "b", "c", "a"):
                await server_push(channel, event, {"e": event})
            phoenix_server.broadcast("echo:f", "b", {"e": "broadcast"})
            await channel.push("echo", {})
            assert [only_a.receive_nowait() for _ in range(2)] == [
                msg("echo:f", "a", {"e": "a"}),
                msg("echo:f", "a", {"e": "a"}),
            ]
            assert [m.payload for m in [a_and_b.receive_nowait() for _ in range(4)]] == [
                {"e": "a"},
                {"e": "b"},
                {"e": "a"},
                {"e": "broadcast"},
            ]
            # Everything but replies (and the protocol's own phx_* messages).
            assert [
                (m.event, m.join_ref) for m in [everything.receive_nowait() for _ in range(5)]
            ] == [
                ("a", "1"),
                ("b", "1"),
                ("c", "1"),
                ("a", "1"),
                ("b", None),
            ]
            for subscription in (only_a, a_and_b, everything):
                with pytest.raises(trio.WouldBlock):
                    subscription.receive_nowait()
            assert channel.statistics().subscriptions == 3
            assert channel.statistics().messages_received == 5
        assert channel.statistics().subscriptions == 0


async def test_protocol_messages_are_not_delivered(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:px") as channel,
            channel.subscribe() as everything,
        ):
            with pytest.raises(Exception, match="lost"):
                await channel.push("crash", {})
            await channel.wait_joined()  # rejoined after phx_error
            await server_push(channel, "after", {})
            assert [m.event for m in [everything.receive_nowait()]] == ["after"]
            with pytest.raises(trio.WouldBlock):
                everything.receive_nowait()


async def test_subscribe_before_joining_sees_what_follows_the_join(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("room:sub", {"user": "ann"})
            async with channel.subscribe("presence_state") as states:
                await channel.join()
                state = await states.receive()
                assert (state.join_ref, state.ref, state.event) == ("1", None, "presence_state")
                assert list(state.payload) == ["ann"]
            await channel.leave()


async def test_a_slow_subscriber_never_blocks_the_reader(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:slow") as slow,
            socket.channel("echo:fast") as fast,
            slow.subscribe(max_buffer=1) as never_read,
            fast.subscribe() as fast_messages,
        ):
            for i in range(20):
                await server_push(slow, "flood", {"i": i})
                await server_push(fast, "fine", {"i": i})
                assert (await fast_messages.receive()).payload == {"i": i}
            assert await socket.ping() >= 0
            await trio.sleep(100)  # three heartbeats, all answered
            stats = socket.statistics()
            assert (stats.heartbeats_sent, stats.heartbeat_timeouts, stats.connects) == (3, 0, 1)
            assert never_read.statistics().buffered == 1
            assert never_read.statistics().dropped == 19
            assert slow.statistics().messages_dropped == 19
            assert fast.statistics().messages_dropped == 0


async def test_overflow_raise_reports_the_gap_where_it_happened(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:o") as channel,
            channel.subscribe("m", max_buffer=2) as messages,
        ):
            for i in range(5):
                await server_push(channel, "m", {"i": i})
            assert (await messages.receive()).payload == {"i": 0}
            for i in range(5, 7):
                await server_push(channel, "m", {"i": i})
            # Stream: m1, <3 dropped>, m5, <1 dropped>, then what comes next.
            assert (await messages.receive()).payload == {"i": 1}
            with pytest.raises(SubscriptionOverflow) as info:
                await messages.receive()
            assert info.value.dropped == 3
            assert (await messages.receive()).payload == {"i": 5}
            with pytest.raises(SubscriptionOverflow) as info:
                messages.receive_nowait()
            assert info.value.dropped == 1
            with pytest.raises(trio.WouldBlock):
                messages.receive_nowait()
            await server_push(channel, "m", {"i": 7})
            assert (await messages.receive()).payload == {"i": 7}
            stats = messages.statistics()
            assert (stats.buffered, stats.max_buffer, stats.delivered, stats.dropped) == (
                0,
                2,
                4,
                4,
            )
            assert channel.statistics().messages_dropped == 4
        # Drops stay counted after the subscription is gone.
        assert channel.statistics().messages_dropped == 4


async def test_overflow_drop_oldest(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:do") as channel,
            channel.subscribe("m", max_buffer=2, overflow="drop_oldest") as messages,
        ):
            for i in range(5):
                await server_push(channel, "m", {"i": i})
            assert [(await messages.receive()).payload["i"] for _ in range(2)] == [3, 4]
            with pytest.raises(trio.WouldBlock):
                messages.receive_nowait()
            stats = messages.statistics()
            assert (stats.buffered, stats.delivered, stats.dropped) == (0, 2, 3)
            assert channel.statistics().messages_dropped == 3


async def test_iteration_stops_when_the_channel_is_left(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    received: list[Any] = []
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:end")
            await channel.join()
            async with channel.subscribe() as messages:
                for i in range(3):
                    await server_push(channel, "m", {"i": i})
                await channel.leave()
                async for message in messages:
                    received.append(message.payload["i"])
            with pytest.raises(ChannelClosed) as info:
                async with channel.subscribe():
                    pass
            assert info.value.reason == "left"
    assert received == [0, 1, 2]


async def test_iteration_stops_when_the_socket_closes(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    received: list[Any] = []
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:sc")
            await channel.join()
            async with channel.subscribe() as messages:
                await server_push(channel, "m", {"i": 0})
                await socket.aclose()
                async for message in messages:
                    received.append(message.payload)
    assert received == [{"i": 0}]


async def test_leaving_the_subscribe_block_unregisters(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket, socket.channel("echo:u") as channel:
            async with channel.subscribe() as messages:
                assert channel.statistics().subscriptions == 1
            assert channel.statistics().subscriptions == 0
            await server_push(channel, "m", {})
            with pytest.raises(trio.EndOfChannel):
                messages.receive_nowait()
            assert messages.statistics().buffered == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_buffer": 0}, "max_buffer must be at least 1"),
        ({"overflow": "block"}, "overflow must be"),
    ],
)
async def test_bad_subscription_options(
    phoenix_server: TestServer,
    options: dict[str, Any],
    message: str,
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:bad")
            with pytest.raises(ValueError, match=message):
                async with channel.subscribe(**options):
                    pass
            assert channel.statistics().subscriptions == 0


async def test_the_lifecycle_stream_has_the_same_overflow_policy(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.lifecycle(max_buffer=1) as events,
        ):
            for name in ("echo:l1", "echo:l2", "echo:l3"):
                await socket.channel(name).join()
            assert type(await events.receive()).__name__ == "ChannelJoined"
            with pytest.raises(SubscriptionOverflow) as info:
                await events.receive()
            assert info.value.dropped == 2
