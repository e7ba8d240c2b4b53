"""Pushes and replies: ok, error, no reply, slow replies, cancellation, pipelining."""

from __future__ import annotations

import pytest
import trio

from trio_phoenix import PushError, PushTimeout, open_socket

from .conftest import LIMIT, ScenarioServer


async def test_ok_reply(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:p") as channel,
        ):
            payload = {"text": "héllo ☃", "n": 1.5, "list": [True, None], "big": 2**53}
            assert await channel.push("echo", payload) == payload


async def test_error_reply(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:p") as channel,
        ):
            with pytest.raises(PushError) as caught:
                await channel.push("error", {"why": "because"})
            assert caught.value.status == "error"
            assert caught.value.response == {"why": "because"}


async def test_unknown_event_is_an_error_reply(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:p") as channel,
        ):
            with pytest.raises(PushError) as caught:
                await channel.push("no_such_event", {})
            assert caught.value.response == {"reason": "unknown event"}


async def test_no_reply_times_out_and_channel_goes_on(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:p", timeout=0.3) as channel,
        ):
            with pytest.raises(PushTimeout):
                await channel.push("noreply", {})
            assert channel.statistics().pending_replies == 0
            assert await channel.push("echo", {"still": "here"}) == {"still": "here"}


async def test_slow_reply_from_another_process(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:p") as channel,
        ):
            reply = await channel.push("reply_later", {"delay": 0.2, "payload": {"late": 1}})
            assert reply == {"late": 1}


async def test_slow_reply_blocks_only_its_channel(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:slow") as slow,
            socket.channel("echo:fast") as fast,
        ):
            async with trio.open_nursery() as nursery:
                replies: list[object] = []

                async def sleeper() -> None:
                    replies.append(await slow.push("sleep", {"ms": 300}))

                nursery.start_soon(sleeper)
                assert await fast.push("echo", {"fast": 1}) == {"fast": 1}
                assert replies == []  # the slow one is still sleeping
            assert replies == [{"slept": 300}]


async def test_cancelled_push_leaves_nothing_pending(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:p") as channel,
        ):
            with trio.move_on_after(0.1) as scope:
                await channel.push("sleep", {"ms": 500})
            assert scope.cancelled_caught
            assert channel.statistics().pending_replies == 0
            assert await channel.push("echo", {"after": 1}) == {"after": 1}


async def test_pipelined_pushes(server: ScenarioServer) -> None:
    results: dict[int, object] = {}
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:pipe") as channel,
        ):

            async def one(n: int) -> None:
                results[n] = await channel.push("echo", {"n": n})

            async with trio.open_nursery() as nursery:
                for n in range(300):
                    nursery.start_soon(one, n)
    assert results == {n: {"n": n} for n in range(300)}


async def test_large_payload(server: ScenarioServer) -> None:
    text = "x" * 1_000_000
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:big") as channel,
        ):
            assert await channel.push("echo", {"text": text}) == {"text": text}
