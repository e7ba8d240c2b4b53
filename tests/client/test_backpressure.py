"""``overflow="wait"``: a full subscription stops the socket's reader, so nothing is dropped and
TCP slows the server down, at the documented cost (every channel, reply and heartbeat of the
socket waits too); leaving the channel or closing the socket releases the reader.

Also the reader's side of delivery (`Flow`) and iteration's schedule points, on a bare
`Subscription`.
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
    HeartbeatTimeout,
    Message,
    Subscription,
    SubscriptionOverflow,
    open_socket,
)
from trio_phoenix._subscription import Flow
from trio_phoenix.testing import TestServer


def drain(messages: Subscription[Message]) -> list[Any]:
    """The payloads of every buffered message (gaps fail the test)."""
    payloads = []
    while True:
        try:
            payloads.append(messages.receive_nowait().payload)
        except trio.WouldBlock:
            return payloads


async def test_wait_drops_nothing_and_pushes_back_on_the_server() -> None:
    # Real clock: nothing is timed. 20,000 x 1 KB is more than loopback TCP buffers hold, so
    # the server's write can only finish if the client reads.
    count, max_buffer = 20_000, 10
    payload = "x" * 1000
    sent = trio.Event()
    with trio.fail_after(LIMIT):
        async with (
            open_raw_server(topics_to_join=1) as server,
            open_socket(server.url) as socket,
            socket.channel("room:wait") as channel,
            channel.subscribe("m", max_buffer=max_buffer, overflow="wait") as messages,
        ):
            texts = [
                json.dumps([None, None, channel.topic, "m", {"n": n, "body": payload}])
                for n in range(count)
            ]

            async def send() -> None:
                await server.connections[0].send_texts(texts)
                sent.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await trio.testing.wait_all_tasks_blocked()
                # The reader stopped: the server is blocked in its write.
                assert not sent.is_set()
                most = messages.statistics().buffered
                assert max_buffer <= most <= max_buffer + Flow.SLICE
                received = 0
                async for message in messages:
                    assert message.payload["n"] == received
                    received += 1
                    most = max(most, messages.statistics().buffered)
                    await trio.lowlevel.checkpoint()  # a slow consumer
                    if received == count:
                        break
            assert sent.is_set()
            assert most <= max_buffer + Flow.SLICE
            stats = messages.statistics()
            assert (stats.delivered, stats.dropped) == (count, 0)


async def test_a_consumer_stuck_past_the_heartbeat_interval_costs_a_reconnect(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url, heartbeat_interval=30) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:stuck") as channel,
            channel.subscribe("m", max_buffer=1, overflow="wait") as messages,
        ):
            for i in range(3):
                phoenix_server.broadcast("echo:stuck", "m", {"i": i})
            await trio.sleep(100)  # nobody reads: heartbeat replies are not read either
            stats = socket.statistics()
            assert stats.heartbeat_timeouts >= 1
            assert stats.connects >= 2
            assert any(isinstance(event, HeartbeatTimeout) for event in drain_events(events))
            # What was buffered is delivered; what was still in flight on the old connection is
            # gone with it (Phoenix does not resend), but nothing was dropped by the client.
            assert drain(messages)[0] == {"i": 0}
            assert messages.statistics().dropped == 0
            await channel.wait_joined()
            assert await socket.ping() >= 0  # reading again


def drain_events(events: Subscription[Any]) -> list[Any]:
    found = []
    while True:
        try:
            found.append(events.receive_nowait())
        except (trio.WouldBlock, SubscriptionOverflow):
            return found


async def test_a_full_wait_subscription_holds_up_every_channel(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:full") as channel,
            socket.channel("echo:other") as other,
            channel.subscribe("m", max_buffer=1, overflow="wait") as messages,
        ):
            for i in range(2):
                phoenix_server.broadcast("echo:full", "m", {"i": i})
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(5) as waited:
                await other.push("echo", {})  # its reply is not read
            assert waited.cancelled_caught
            # A consumer makes room: the socket reads again.
            received = []

            async def consume() -> None:
                async for message in messages:
                    received.append(message.payload["i"])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                assert await other.push("echo", {"again": True}) == {"again": True}
                nursery.cancel_scope.cancel()
            assert received == [0, 1]
            assert messages.statistics().dropped == 0


async def test_leaving_releases_the_reader(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:leave")
            await channel.join()
            async with channel.subscribe("m", max_buffer=1, overflow="wait") as messages:
                for i in range(3):
                    phoenix_server.broadcast("echo:leave", "m", {"i": i})
                await trio.testing.wait_all_tasks_blocked()
                started = trio.current_time()
                await channel.leave()  # the reply gets through
                assert trio.current_time() - started < 1
                assert channel._core.close_reason == "left"
                delivered = dropped = 0
                while True:
                    try:
                        async for _ in messages:
                            delivered += 1
                        break
                    except SubscriptionOverflow as exc:
                        dropped += exc.dropped
                # Once released, what did not fit was dropped and reported, as with "raise".
                assert delivered + dropped == 3
                assert messages.statistics().dropped == dropped


async def test_closing_the_socket_releases_the_reader(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:close")
            await channel.join()
            async with channel.subscribe("m", max_buffer=1, overflow="wait"):
                for i in range(3):
                    phoenix_server.broadcast("echo:close", "m", {"i": i})
                await trio.testing.wait_all_tasks_blocked()
                started = trio.current_time()
                await socket.aclose()
                assert trio.current_time() - started < 1  # not close_timeout (5 s)
                assert channel._core.close_reason == "left"


async def test_wait_is_only_for_channel_subscriptions(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            with pytest.raises(ValueError, match=r"only for channel\.subscribe"):
                async with socket.lifecycle(overflow="wait"):
                    pass
            channel = socket.channel("echo:presence")
            with pytest.raises(ValueError, match=r"only for channel\.subscribe"):
                async with channel.presence().changes(overflow="wait"):
                    pass


# -- a bare Subscription and Flow ------------------------------------------------------------


async def test_iteration_yields_at_least_every_max_buffer_messages() -> None:
    flow = Flow()
    subscription: Subscription[int] = Subscription(2, "wait", flow=flow)
    for i in range(5):  # "wait" takes them all (the reader stops after)
        subscription.offer(i)
    assert (flow.full, flow.blocked, flow.delivered) == (1, True, True)
    # What trio.testing.assert_checkpoints counts: every step is a cancellation point, only
    # some are schedule points.
    task = trio.lowlevel.current_task()
    seen = []
    with trio.fail_after(LIMIT):
        cancel_points, schedule_points = task._cancel_points, task._schedule_points
        async for item in subscription:
            seen.append(
                (
                    item,
                    task._cancel_points - cancel_points,
                    task._schedule_points - schedule_points,
                )
            )
            if item == 4:
                break
    assert [item for item, _, _ in seen] == [0, 1, 2, 3, 4]
    assert [cancel for _, cancel, _ in seen] == [1, 2, 3, 4, 5]
    # Two messages without a schedule point, then one (a full receive()), and so on.
    assert [schedule for _, _, schedule in seen] == [0, 0, 1, 1, 1]
    assert flow.full == 0  # room again after the 4th


async def test_the_reader_waits_for_room() -> None:
    flow = Flow()
    subscription: Subscription[int] = Subscription(1, "wait", flow=flow)
    subscription.offer(1)
    assert flow.full == 1
    resumed = trio.Event()

    async def reader() -> None:
        await flow.pause()
        resumed.set()

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert not resumed.is_set()
            assert not flow.delivered
            assert subscription.receive_nowait() == 1
            await trio.testing.wait_all_tasks_blocked()
            assert resumed.is_set()
    # Closing the flow (the socket is closing) never waits again.
    subscription.offer(2)
    assert flow.full == 1
    flow.close()
    assert not flow.blocked  # still one full subscription
    with trio.testing.assert_checkpoints():
        await flow.pause()
    # Releasing a full subscription gives its place back; afterwards it drops like "raise".
    subscription.release()
    assert flow.full == 0
    subscription.offer(3)
    assert subscription.receive_nowait() == 2
    with pytest.raises(SubscriptionOverflow):
        subscription.receive_nowait()
