"""Subscriptions: event filtering, bounded buffers with an explicit overflow policy, a reader
that never waits for a slow subscriber, and how streams end.

Real client, real in-process server, real loopback WebSockets; anything timed runs on
``autojump_clock`` and every test has an absolute deadline. Server pushes are triggered with
the echo channel's ``push`` event: the push frame precedes the reply on the wire, so once
``channel.push`` returns, the pushed message has been handed to the subscribers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from tests.client.raw_hostile import open_raw_server
from tests.helpers import LIMIT
from trio_phoenix import (
    Channel,
    ChannelClosed,
    Message,
    Subscription,
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


# -- delivery without a task switch per message ---------------------------------------------


def broadcasts(topic: str, first: int, count: int) -> list[str]:
    """Small broadcasts numbered ``first`` on: ~60 bytes, so that a 64 KiB read holds more
    than the default ``max_buffer`` of them."""
    return [
        json.dumps([None, None, topic, "m", {"body": "hello", "n": n}], separators=(",", ":"))
        for n in range(first, first + count)
    ]


async def count_through(messages: Subscription[Message], count: int) -> tuple[int, int]:
    """Iterate until ``count`` messages were delivered or reported dropped; check their order."""
    delivered = dropped = 0
    while delivered + dropped < count:
        try:
            async for message in messages:
                assert message.payload["n"] >= delivered + dropped
                delivered += 1
                if delivered + dropped == count:
                    break
        except SubscriptionOverflow as exc:
            dropped += exc.dropped
    return delivered, dropped


async def test_a_burst_reaches_an_async_for_consumer_without_drops() -> None:
    # Real clock: nothing here is timed, and with an autojump clock an idle instant of the
    # loopback could jump over heartbeat intervals while the server's writes hold up replies.
    # The server writes the burst in large writes (as a real server does when the client falls
    # behind), so every read of the client holds ~1,100 messages, more than the default
    # buffer of 1,000. Before, the consumer took one message per scheduler step and ~99 % of
    # the burst was dropped; now it takes what is buffered whenever the reader pauses, which
    # it does at least every Flow.SLICE messages.
    count, per_write = 200_000, 20_000
    with trio.fail_after(LIMIT):
        async with (
            open_raw_server(topics_to_join=1) as server,
            open_socket(server.url) as socket,
            socket.channel("room:burst") as channel,
            channel.subscribe("m") as messages,  # default options
        ):
            connection = server.connections[0]

            async def send_burst() -> None:
                for first in range(0, count, per_write):
                    await connection.send_texts(broadcasts(channel.topic, first, per_write))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_burst)
                assert await count_through(messages, count) == (count, 0)
            stats = messages.statistics()
            assert (stats.delivered, stats.dropped, stats.buffered) == (count, 0, 0)


async def test_iteration_takes_buffered_messages_without_a_schedule_point(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    other_task_ran = False

    async def other_task() -> None:
        nonlocal other_task_ran
        other_task_ran = True

    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:it") as channel,
            channel.subscribe("m") as messages,
        ):
            for i in range(5):
                await server_push(channel, "m", {"i": i})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(other_task)
                seen = []
                async for message in messages:
                    seen.append(message.payload["i"])
                    if len(seen) == 5:
                        break
                assert seen == [0, 1, 2, 3, 4]
                assert not other_task_ran  # five messages, no schedule point
                # receive() is a full checkpoint even with a message buffered.
                await server_push(channel, "m", {"i": 5})
                with trio.testing.assert_checkpoints():
                    assert (await messages.receive()).payload == {"i": 5}
                # An empty buffer: iteration waits, which is a full checkpoint.
                nursery.start_soon(server_push, channel, "m", {"i": 6})
                with trio.testing.assert_checkpoints():
                    async for message in messages:
                        assert message.payload == {"i": 6}
                        break


async def test_iteration_honours_cancellation_between_buffered_messages(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:ic") as channel,
            channel.subscribe("m") as messages,
        ):
            for i in range(3):
                await server_push(channel, "m", {"i": i})
            seen = []
            with trio.CancelScope() as scope:
                async for message in messages:
                    seen.append(message.payload["i"])
                    scope.cancel()
            assert seen == [0]
            assert messages.receive_nowait().payload == {"i": 1}  # nothing lost


async def test_receive_batch(phoenix_server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:b") as channel,
            channel.subscribe("m", max_buffer=3) as messages,
        ):
            for i in range(5):
                await server_push(channel, "m", {"i": i})
            # Stops before the gap, which the next call reports.
            with trio.testing.assert_checkpoints():
                batch = await messages.receive_batch(2)
            assert [m.payload["i"] for m in batch] == [0, 1]
            assert [m.payload["i"] for m in await messages.receive_batch()] == [2]
            with pytest.raises(SubscriptionOverflow) as info:
                await messages.receive_batch()
            assert info.value.dropped == 2
            # Waits for the first message when nothing is buffered.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server_push, channel, "m", {"i": 5})
                assert [m.payload["i"] for m in await messages.receive_batch()] == [5]
            with pytest.raises(ValueError, match="max_messages must be at least 1"):
                await messages.receive_batch(0)
            await channel.leave()
            with pytest.raises(trio.EndOfChannel):
                await messages.receive_batch()
            assert messages.statistics().delivered == 4
