"""The socket: heartbeats, reconnect with phoenix.js backoff, and how each close code is
handled.

Real client, real in-process server, real loopback WebSockets; anything timed runs on
``autojump_clock`` and every test has an absolute deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio

from tests.client.socket_helpers import PHOENIX_BACKOFF, by_id, heartbeats, joins
from tests.helpers import LIMIT, next_events
from trio_phoenix import (
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    ConnectFailed,
    Disconnected,
    HeartbeatTimeout,
    Message,
    ReconnectScheduled,
    SocketClosed,
    SocketState,
    jittered,
    open_socket,
    phoenix_reconnect_after,
)
from trio_phoenix.testing import (
    ChannelHandler,
    ChannelSocket,
    PhoenixServerFactory,
    Reply,
    TestServer,
    demo_channels,
)

# -- heartbeat -------------------------------------------------------------------------------


async def test_heartbeat_every_30_seconds_on_the_phoenix_topic(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            counts = []
            for moment in (29.9, 30.1, 59.9, 60.1, 90.1):
                await trio.sleep_until(moment)
                counts.append(len(heartbeats(phoenix_server)))
            assert counts == [0, 1, 1, 2, 3]
            assert heartbeats(phoenix_server) == [
                Message(join_ref=None, ref=ref, topic="phoenix", event="heartbeat", payload={})
                for ref in ("1", "2", "3")
            ]
            assert socket.statistics().heartbeats_sent == 3


@pytest.mark.parametrize(("interval", "expected"), [(5.0, 6), (None, 0)])
async def test_heartbeat_interval_option(
    phoenix_server: TestServer,
    interval: float | None,
    expected: int,
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, heartbeat_interval=interval):
            await trio.sleep(31)
            assert len(heartbeats(phoenix_server)) == expected


async def test_a_stalled_connection_is_closed_and_reconnected_within_two_intervals(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:hb")
            await channel.join()
            assert isinstance(await events.receive(), ChannelJoined)
            first = phoenix_server.accepted_connections[0]
            first.stall()
            assert await next_events(events, 4) == [
                HeartbeatTimeout(),
                ChannelErrored(
                    topic="echo:hb", payload={"source": "transport", "reason": "heartbeat_timeout"}
                ),
                ReconnectScheduled(delay=0.01, attempt=1),
                Disconnected(code=1000, reason="heartbeat timeout"),
            ]
            # Detected at the second tick (+ at most 1 s for the closing handshake).
            assert 60 <= trio.current_time() <= 61
            assert await next_events(events, 2) == [
                Connected(connects=2),
                ChannelJoined(topic="echo:hb", response={}, rejoin=True),
            ]
            assert trio.current_time() <= 62
            assert channel.state is ChannelState.JOINED
            assert joins(phoenix_server, 1, "echo:hb") == [(channel.join_ref, channel.join_ref)]
            assert channel.join_ref != "1"
            stats = socket.statistics()
            assert (stats.heartbeat_timeouts, stats.connects) == (1, 2)
            first.drop()


async def test_pending_heartbeat_is_forgotten_on_reconnect(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket, socket.lifecycle() as events:
            first = phoenix_server.accepted_connections[0]
            await trio.sleep(29)
            first.stall()  # the heartbeat at 30 s stays unanswered
            await trio.sleep(16)
            first.drop()
            assert await next_events(events, 3) == [
                Disconnected(code=1006, reason=None),
                ReconnectScheduled(delay=0.01, attempt=1),
                Connected(connects=2),
            ]
            assert trio.current_time() == pytest.approx(45.01)
            # The next heartbeat (75.01 s) is a fresh one, answered; no spurious timeout.
            await trio.sleep_until(100)
            with pytest.raises(trio.WouldBlock):
                events.receive_nowait()
            assert [m.ref for m in heartbeats(phoenix_server, 1)] == ["2"]
            stats = socket.statistics()
            assert (stats.heartbeat_timeouts, stats.connects, stats.heartbeats_sent) == (0, 2, 2)


# -- reconnect -------------------------------------------------------------------------------


async def test_reconnect_backoff_follows_phoenix_js_and_resets_after_a_stable_connection(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket, socket.lifecycle() as events:
            phoenix_server.reject_upgrades(503)
            phoenix_server.accepted_connections[0].drop()
            assert await events.receive() == Disconnected(code=1006, reason=None)
            scheduled: list[ReconnectScheduled] = []
            while len(scheduled) < len(PHOENIX_BACKOFF):
                event = await events.receive()
                if isinstance(event, ReconnectScheduled):
                    scheduled.append(event)
                else:
                    assert isinstance(event, ConnectFailed)
                    assert event.error.status == 503
            assert scheduled == [
                ReconnectScheduled(delay=delay, attempt=attempt)
                for attempt, delay in enumerate(PHOENIX_BACKOFF, start=1)
            ]
            phoenix_server.reject_upgrades(None)
            assert await events.receive() == Connected(connects=2)
            assert trio.current_time() == pytest.approx(sum(PHOENIX_BACKOFF))
            assert phoenix_server.statistics().upgrades_rejected == len(PHOENIX_BACKOFF) - 1
            # A connection that lived for STABLE_CONNECTION (10 s) restarts the backoff.
            await trio.sleep(11)
            phoenix_server.accepted_connections[1].drop()
            assert await next_events(events, 3) == [
                Disconnected(code=1006, reason=None),
                ReconnectScheduled(delay=0.01, attempt=1),
                Connected(connects=3),
            ]
            # One that is dropped at once does not: the backoff goes on.
            phoenix_server.accepted_connections[2].drop()
            assert await next_events(events, 3) == [
                Disconnected(code=1006, reason=None),
                ReconnectScheduled(delay=0.05, attempt=2),
                Connected(connects=4),
            ]


async def test_jittered_reconnect(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    draws = iter([0.5, 0.25, 0.9])
    schedule = jittered(phoenix_reconnect_after, lambda: next(draws))
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url, reconnect_after=schedule) as socket,
            socket.lifecycle() as events,
        ):
            phoenix_server.reject_upgrades(503)
            phoenix_server.accepted_connections[0].drop()
            await events.receive()  # Disconnected
            delays = []
            for _ in range(3):
                scheduled = await events.receive()
                assert isinstance(scheduled, ReconnectScheduled)
                delays.append(scheduled.delay)
                if len(delays) == 3:
                    phoenix_server.reject_upgrades(None)
                    start = trio.current_time()
                else:
                    assert isinstance(await events.receive(), ConnectFailed)
            assert delays == pytest.approx([0.01 * 0.75, 0.05 * 0.875, 0.1 * 0.55])
            assert await events.receive() == Connected(connects=2)
            assert trio.current_time() - start == pytest.approx(0.055)


@pytest.mark.parametrize(
    ("how", "code", "reason"),
    [
        ("close", 1000, "bye"),
        ("disconnect", 1001, None),
        ("drain", 1012, None),
        ("drop", 1006, None),
    ],
)
async def test_server_side_closes_reconnect_and_rejoin(
    phoenix_server_factory: PhoenixServerFactory,
    how: str,
    code: int,
    reason: str | None,
    autojump_clock: trio.abc.Clock,
) -> None:
    server = await phoenix_server_factory(demo_channels(), connect=by_id)
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:rc", {"v": 1})
            await channel.join()
            assert isinstance(await events.receive(), ChannelJoined)
            connection = server.accepted_connections[0]
            if how == "close":
                connection.close(1000, "bye")
            elif how == "disconnect":
                server.disconnect("user:1")
            elif how == "drain":
                server.drain()
            else:
                connection.drop()
            assert await next_events(events, 5) == [
                Disconnected(code=code, reason=reason),
                ChannelErrored(
                    topic="echo:rc",
                    payload={"source": "transport", "reason": "connection_closed"},
                ),
                ReconnectScheduled(delay=0.01, attempt=1),
                Connected(connects=2),
                ChannelJoined(topic="echo:rc", response={"v": 1}, rejoin=True),
            ]
            assert connection.close_code == code
            assert joins(server, 0, "echo:rc") == [("1", "1")]
            assert joins(server, 1, "echo:rc") == [("2", "2")]
            assert channel.join_ref == "2"
            assert await channel.push("echo", {"again": True}) == {"again": True}


class _SlowJoin(ChannelHandler):
    """Joins only once ``release`` is set (the server's socket process waits meanwhile)."""

    release = trio.Event()

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        await self.release.wait()
        return Reply.ok()


async def test_no_reconnect_after_a_clean_close_when_disabled(
    phoenix_server_factory: PhoenixServerFactory, autojump_clock: trio.abc.Clock
) -> None:
    _SlowJoin.release = trio.Event()
    server = await phoenix_server_factory({"echo:*": demo_channels()["echo:*"], "slow": _SlowJoin})
    outcomes: dict[str, BaseException] = {}

    async def capture(name: str, operation: Callable[[], Awaitable[object]]) -> None:
        try:
            await operation()
        except SocketClosed as exc:
            outcomes[name] = exc

    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, reconnect_on_clean_close=False) as socket,
            socket.lifecycle() as events,
        ):
            joined = socket.channel("echo:joined")
            await joined.join()
            slow = socket.channel("slow")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(capture, "join", slow.join)
                await server.accepted_connections[0].wait_message(lambda m: m.topic == "slow")
                nursery.start_soon(capture, "buffered push", partial(slow.push, "echo", {}))
                await trio.sleep(0.1)
                assert slow.statistics().buffered_pushes == 1
                server.accepted_connections[0].close(1000, "")
                event = await events.receive()
                assert isinstance(event, ChannelJoined)
                assert await events.receive() == Disconnected(code=1000, reason=None)
            assert set(outcomes) == {"join", "buffered push"}
            assert socket.state is SocketState.CLOSED
            with pytest.raises(SocketClosed):
                await socket.wait_connected()
            with pytest.raises(SocketClosed):
                await joined.push("echo", {})
            assert joined.state is ChannelState.CLOSED
            await trio.sleep(10)
            assert server.statistics().connections_accepted == 1


async def test_the_reconnect_policy_can_give_up(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    def twice(attempt: int) -> float | None:
        return 0.5 if attempt <= 2 else None

    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url, reconnect_after=twice) as socket,
            socket.lifecycle() as events,
        ):
            channel = socket.channel("echo:g")
            await channel.join()
            phoenix_server.reject_upgrades(503)
            phoenix_server.accepted_connections[0].drop()
            seen = [type(event).__name__ for event in await next_events(events, 7)]
            assert seen == [
                "ChannelJoined",
                "Disconnected",
                "ChannelErrored",
                "ReconnectScheduled",
                "ConnectFailed",
                "ReconnectScheduled",
                "ConnectFailed",
            ]
            ended = await events.receive()
            assert ended == ChannelEnded(topic="echo:g", reason="socket_closed")
            assert socket.state is SocketState.CLOSED
            with pytest.raises(SocketClosed):
                await channel.push("echo", {})
