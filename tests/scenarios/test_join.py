"""Joining and leaving: replies, refusals, crashes, unmatched topics, rejoining a topic."""

from __future__ import annotations

import pytest
import trio

from trio_phoenix import ChannelState, JoinError, LocalProtocolError, open_socket

from .conftest import LIMIT, ScenarioServer


async def test_join_replies_with_params(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channel = socket.channel("echo:join", {"a": [1, 2], "b": {"c": "d"}})
            assert await channel.join() == {"a": [1, 2], "b": {"c": "d"}}
            assert channel.state is ChannelState.JOINED
            assert channel.join_ref is not None
            await channel.leave()
            assert channel.statistics().state is ChannelState.CLOSED


async def test_forbidden_join(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channel = socket.channel("echo:forbidden", {"reject": "unauthorized"})
            with pytest.raises(JoinError) as caught:
                await channel.join()
            assert caught.value.response == {"reason": "unauthorized"}
            assert channel.state is ChannelState.CLOSED
            # The socket is still fine.
            async with socket.channel("echo:after") as other:
                assert await other.push("echo", {"x": 1}) == {"x": 1}


async def test_join_crash_is_refused(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            with pytest.raises(JoinError) as caught:
                await socket.channel("echo:crash", {"crash": True}).join()
            assert caught.value.response == {"reason": "join crashed"}


async def test_unmatched_topic(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            with pytest.raises(JoinError) as caught:
                await socket.channel("nowhere:1").join()
            assert caught.value.response == {"reason": "unmatched topic"}


async def test_join_same_topic_after_leave(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            first = socket.channel("echo:again", {"n": 1})
            await first.join()
            with pytest.raises(LocalProtocolError):
                await socket.channel("echo:again").join()
            await first.leave()
            async with socket.channel("echo:again", {"n": 2}) as second:
                assert second.join_response == {"n": 2}
                assert second.join_ref != first.join_ref
                assert await second.push("echo", {"ok": True}) == {"ok": True}


async def test_many_channels_on_one_socket(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channels = [socket.channel(f"echo:many:{n}", {"n": n}) for n in range(20)]
            async with trio.open_nursery() as nursery:
                for channel in channels:
                    nursery.start_soon(channel.join)
            for n, channel in enumerate(channels):
                assert await channel.push("echo", {"n": n}) == {"n": n}


async def test_leave_ends_subscriptions(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channel = socket.channel("echo:leave")
            await channel.join()
            async with channel.subscribe() as messages:
                await channel.leave()
                assert [message async for message in messages] == []
            assert channel.statistics().messages_dropped == 0
