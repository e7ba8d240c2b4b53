"""Broadcasts and server pushes: who gets them, in what order, and bounded subscriptions."""

from __future__ import annotations

import pytest
import trio

from trio_phoenix import SubscriptionOverflow, open_socket

from .conftest import LIMIT, ScenarioServer


async def test_broadcast_reaches_every_subscriber(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as alice,
            open_socket(server.url, **server.options) as bob,
            alice.channel("echo:room") as alice_room,
            bob.channel("echo:room") as bob_room,
            alice_room.subscribe("news") as alice_news,
            bob_room.subscribe("news") as bob_news,
        ):
            await alice_room.push("broadcast", {"event": "news", "payload": {"v": 1}})
            for stream in (alice_news, bob_news):
                message = await stream.receive()
                assert (message.topic, message.event, message.payload) == (
                    "echo:room",
                    "news",
                    {"v": 1},
                )
                assert message.ref is None


async def test_server_push_reaches_only_its_channel(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as alice,
            open_socket(server.url, **server.options) as bob,
            alice.channel("echo:room") as alice_room,
            bob.channel("echo:room") as bob_room,
            alice_room.subscribe("private") as alice_private,
            bob_room.subscribe() as bob_all,
        ):
            await alice_room.push("push", {"event": "private", "payload": {"to": "alice"}})
            message = await alice_private.receive()
            assert message.payload == {"to": "alice"}
            assert message.join_ref == alice_room.join_ref
            await bob_room.push("echo", {})  # anything for bob would have come before this
            assert bob_all.statistics().buffered == 0


async def test_bulk_broadcast_arrives_in_order(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:bulk") as channel,
            channel.subscribe("tick", max_buffer=5000) as ticks,
        ):
            assert await channel.push("bulk", {"event": "tick", "count": 2000}) == {"count": 2000}
            received = [(await ticks.receive()).payload["n"] for _ in range(2000)]
            assert received == list(range(1, 2001))


async def test_event_filter(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:filter") as channel,
            channel.subscribe("wanted") as wanted,
        ):
            for event in ("other", "wanted", "other", "wanted"):
                await channel.push("broadcast", {"event": event, "payload": {"e": event}})
            assert [(await wanted.receive()).event for _ in range(2)] == ["wanted", "wanted"]
            assert wanted.statistics().buffered == 0


async def test_overflow_drop_oldest_counts_drops(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:flood") as channel,
            channel.subscribe("tick", max_buffer=10, overflow="drop_oldest") as ticks,
        ):
            await channel.push("bulk", {"event": "tick", "count": 50})
            kept = [ticks.receive_nowait().payload["n"] for _ in range(10)]
            assert kept == list(range(41, 51))
            assert ticks.statistics().dropped == 40


async def test_overflow_raise_marks_the_gap(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:flood") as channel,
            channel.subscribe("tick", max_buffer=10) as ticks,
        ):
            await channel.push("bulk", {"event": "tick", "count": 50})
            kept = [(await ticks.receive()).payload["n"] for _ in range(10)]
            assert kept == list(range(1, 11))
            with pytest.raises(SubscriptionOverflow) as gap:
                await ticks.receive()
            assert gap.value.dropped == 40
