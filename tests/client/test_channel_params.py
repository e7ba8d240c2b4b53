"""Channel params as a sync or async callable, evaluated before every join and rejoin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from tests.helpers import LIMIT
from trio_phoenix import (
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    RejoinScheduled,
    ReplyLost,
    open_socket,
)
from trio_phoenix.testing import TestServer


def sync_since(seen: list[int]) -> Callable[[], dict[str, int]]:
    return lambda: {"since": seen[-1]}


def async_since(seen: list[int]) -> Callable[[], Awaitable[dict[str, int]]]:
    async def params() -> dict[str, int]:
        await trio.sleep(0.01)
        return {"since": seen[-1]}

    return params


@pytest.mark.parametrize("make", [sync_since, async_since], ids=["sync", "async"])
async def test_a_rejoin_after_a_crash_sends_the_new_params(
    phoenix_server: TestServer, make: Callable[[list[int]], Any], autojump_clock: trio.abc.Clock
) -> None:
    seen = [0]
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:since", make(seen)) as channel,
        ):
            assert channel.join_response == {"since": 0}
            assert callable(channel.params)
            seen.append(41)
            with pytest.raises(ReplyLost):
                await channel.push("crash", {})
            await channel.wait_joined()
            assert channel.join_response == {"since": 41}
            # And after a reconnect.
            seen.append(42)
            await socket.reconnect()
            await channel.wait_joined()
            assert channel.join_response == {"since": 42}
            joins = [
                m.payload
                for c in phoenix_server.accepted_connections
                for m in c.received
                if m.event == "phx_join"
            ]
            assert joins == [{"since": 0}, {"since": 41}, {"since": 42}]


async def test_a_first_join_raises_what_the_params_raise(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    def broken() -> dict[str, Any]:
        raise LookupError("no last id")

    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:broken", broken)
            with pytest.raises(LookupError, match="no last id"):
                await channel.join()
            assert channel.state is ChannelState.CLOSED
            assert socket.statistics().channels == 0


async def test_a_rejoin_whose_params_raise_is_retried_with_backoff(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = [0]

    async def params() -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        if failures[0]:
            failures[0] -= 1
            raise LookupError("store unavailable")
        return {"ok": 1}

    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:flaky", params) as channel,
        ):
            assert isinstance(await events.receive(), ChannelJoined)
            failures[0] = 2
            with pytest.raises(ReplyLost):
                await channel.push("crash", {})
            seen: list[Any] = []
            async for event in events:
                seen.append(event)
                if isinstance(event, ChannelJoined):
                    break
            kinds = [type(event) for event in seen]
            assert kinds == [ChannelErrored, RejoinScheduled] * 3 + [ChannelJoined]
            errors = [e.payload for e in seen if isinstance(e, ChannelErrored)][1:]
            assert [(p["source"], p["reason"]) for p in errors] == [("client", "params_error")] * 2
            assert all(isinstance(p["error"], LookupError) for p in errors)
            delays = [e.delay for e in seen if isinstance(e, RejoinScheduled)]
            assert delays == [1.0, 2.0, 5.0]
            assert socket.state.value == "connected"
            assert await channel.push("echo", {"n": 1}) == {"n": 1}
    assert "the params of 'echo:flaky' raised" in caplog.text
