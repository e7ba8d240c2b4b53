"""Reliability: a short chaos soak, dead (half-open) connections, and no reconnect storms.

The soak itself lives in ``tests/system/soak.py`` (run the long one with ``python
tests/system/soak.py``); here it runs for a few seconds of real time, and its bookkeeping is
checked on its own so that we know it can fail. Dead connections are tested on
``autojump_clock`` (virtual time, default 30 s heartbeat) and once in real time with a 0.2 s
heartbeat through a TCP proxy that stops relaying, which is what a half-open connection looks
like to the client. The last tests pin down failures the soak and these tests once found: a
reconnect storm against a server that closes every new connection, RuntimeError or an
ExceptionGroup when a socket closes or gives up before its first connection, a reset during the
opening handshake taken for a 10 s timeout, and a ping racing a heartbeat timeout that raised
SocketClosed.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from tests.conftest import client_tasks
from tests.helpers import next_of
from tests.system.soak import BroadcastLedger, PushRecord, SoakConfig, SoakFailure, run_soak
from trio_phoenix import (
    DEFAULT_MAX_BUFFER_BYTES,
    Channel,
    ChannelClosed,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    ConnectError,
    ConnectFailed,
    Disconnected,
    HeartbeatTimeout,
    ReconnectScheduled,
    ReplyLost,
    SocketState,
    SubscriptionOverflow,
    open_socket,
)
from trio_phoenix.proto import SocketCore
from trio_phoenix.testing import FaultProxy, TestServer, open_fault_proxy

LIMIT = 200  # virtual seconds a test on autojump_clock may take
HEARTBEAT = 30.0  # the default heartbeat interval


@pytest.fixture
async def proxy(phoenix_server: TestServer) -> AsyncIterator[FaultProxy]:
    async with open_fault_proxy("127.0.0.1", phoenix_server.port) as running:
        yield running


# -- the chaos soak -----------------------------------------------------------------------


async def test_short_soak() -> None:
    """Every fault (long stalls included) for 8 s; every invariant of soak.py checked."""
    soak = await run_soak(SoakConfig(seconds=8.0))
    assert soak.rounds == 1
    assert soak.faults["stall_long"] >= 1  # the heartbeat had a dead connection to find
    assert soak.socket.statistics().heartbeat_timeouts >= 1
    assert soak.outcomes["ok"] > 0
    assert soak.outcomes["reply_lost"] > 0


def ledger(sent: dict[int, list[int]], received: list[int]) -> BroadcastLedger:
    book = BroadcastLedger("t")
    book.sent.update(sent)
    book.received.extend(received)
    return book


def test_broadcast_ledger_accepts_losses_only_at_a_dying_connections_tail() -> None:
    # 1-3 went to connection 0, which died after delivering 1; 4 was sent nowhere (not
    # joined); 5-6 went to the zombie 0 and to connection 1, which delivered them.
    book = ledger({1: [0], 2: [0], 3: [0], 4: [], 5: [0, 1], 6: [1, 0], 7: [1]}, [1, 5, 6, 7])
    book.check(upto=6, live=1)
    assert book.totals == {
        "sent": 6,
        "received": 3,
        "lost with a dying connection": 2,
        "not sent (not joined)": 1,
    }
    assert book.sent == {7: [1]}
    assert book.received == [7]  # after the marker: checked next round


@pytest.mark.parametrize(
    ("sent", "received", "problem"),
    [
        ({1: [0], 2: [0], 3: [0]}, [1, 3], r"\[2\] sent on connection 0 were lost"),
        ({1: [0], 2: [0]}, [1, 1, 2], "twice"),
        ({1: [0], 2: [0]}, [2, 1], "out of order"),
        ({1: [0]}, [1, 2], "never sent"),
        ({1: [1], 2: [1]}, [1], "the live connection lost"),
    ],
)
def test_broadcast_ledger_finds_silent_losses_and_duplicates(
    sent: dict[int, list[int]], received: list[int], problem: str
) -> None:
    with pytest.raises(SoakFailure, match=problem):
        ledger(sent, received).check(upto=max(sent), live=1)


def test_push_record_finds_late_pushes_and_wrong_outcomes() -> None:
    record = PushRecord(kind="echo", id=1, limit=1.0, started=10.0)
    with pytest.raises(SoakFailure, match="never ended"):
        record.check(slack=0.5)
    record.end("ok", now=11.4)
    assert record.check(slack=0.5) == pytest.approx(0.4)
    with pytest.raises(SoakFailure, match="ended twice"):
        record.end("timeout", now=12.0)
    late = PushRecord(kind="noreply", id=2, limit=1.0, started=10.0)
    late.end("timeout", now=11.6)
    with pytest.raises(SoakFailure, match="outlived its timeout"):
        late.check(slack=0.5)
    wrong = PushRecord(kind="error", id=3, limit=1.0, started=10.0)
    wrong.end("ok", now=10.1)
    with pytest.raises(SoakFailure, match="unexpected outcome"):
        wrong.check(slack=0.5)


# -- dead connections ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["server", "proxy"])
@pytest.mark.parametrize("phase", [0.001, 0.5, 0.999])
async def test_a_stalled_connection_is_found_within_two_heartbeats(
    phoenix_server: TestServer,
    proxy: FaultProxy,
    autojump_clock: trio.abc.Clock,
    where: str,
    phase: float,
) -> None:
    """Stall the connection (no data, no close) anywhere in a heartbeat interval: the client
    gives up on it within two intervals, reconnects, rejoins, and pushes work again."""
    with trio.fail_after(LIMIT):
        async with (
            open_socket(proxy.url_for(phoenix_server.url)) as socket,
            socket.lifecycle() as events,
        ):
            opened = trio.current_time()
            channel = socket.channel("echo:dead")
            await channel.join()
            assert await channel.push("echo", {"n": 1}) == {"n": 1}
            await trio.sleep_until(opened + HEARTBEAT * (1 + phase))
            stalled_at = trio.current_time()
            if where == "server":
                phoenix_server.accepted_connections[0].stall()
            else:
                proxy.accepted_connections[0].stall()
            found = await next_of(events, HeartbeatTimeout)
            assert found - stalled_at <= 2 * HEARTBEAT
            assert await events.receive() == ChannelErrored(
                topic="echo:dead",
                payload={"source": "transport", "reason": "heartbeat_timeout"},
            )
            assert await events.receive() == ReconnectScheduled(delay=0.01, attempt=1)
            assert isinstance(await events.receive(), Disconnected)
            reconnected = await next_of(events, Connected)
            # The reconnect delay, plus at most 1 s spent on the dead connection's closing
            # handshake (the client's close grace).
            assert reconnected - found <= 0.01 + 1.0
            rejoin = await events.receive()
            assert isinstance(rejoin, ChannelJoined)
            assert rejoin.rejoin
            assert await channel.push("echo", {"n": 2}) == {"n": 2}
            assert socket.statistics().heartbeat_timeouts == 1
            new = phoenix_server.accepted_connections[1]
            assert [(m.event, m.payload) for m in new.received if m.event == "echo"] == [
                ("echo", {"n": 2})
            ]
            phoenix_server.accepted_connections[0].drop()


async def test_pushes_on_a_dead_connection_end_when_it_is_found(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """With no timeout at all, a push sent into a dead connection ends with ReplyLost as
    soon as the heartbeat finds it dead; a push made while reconnecting is sent afterwards."""
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, timeout=None) as socket:
            channel = socket.channel("echo:lost")
            await channel.join()
            dead = phoenix_server.accepted_connections[0]
            dead.stall()
            stalled_at = trio.current_time()
            ended: dict[str, float] = {}

            async def push_into_the_void(event: str) -> None:
                with pytest.raises(ReplyLost):
                    await channel.push(event, {})
                ended[event] = trio.current_time()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(push_into_the_void, "noreply")
                await trio.sleep(HEARTBEAT / 2)
                nursery.start_soon(push_into_the_void, "echo")
            assert ended["noreply"] == ended["echo"]
            assert ended["echo"] - stalled_at <= 2 * HEARTBEAT
            assert await channel.push("echo", {"after": True}) == {"after": True}
            stats = socket.statistics()
            assert (stats.pending_replies, stats.buffered_pushes) == (0, 0)
            dead.drop()


async def test_a_half_open_connection_is_found_in_real_time(
    phoenix_server: TestServer, proxy: FaultProxy
) -> None:
    """Real time, 0.2 s heartbeat: the proxy stops relaying (a half-open TCP connection);
    within two heartbeats (plus scheduling slack) the client has given up on it."""
    interval, slack = 0.2, 0.3
    with trio.fail_after(10):
        async with (
            open_socket(proxy.url_for(phoenix_server.url), heartbeat_interval=interval) as socket,
            socket.lifecycle() as events,
        ):
            channel = socket.channel("echo:realtime")
            await channel.join()
            await trio.sleep(interval * 1.5)  # a few heartbeats answered
            stalled = proxy.accepted_connections[0]
            stalled.stall()
            stalled_at = trio.current_time()
            found = await next_of(events, HeartbeatTimeout)
            assert interval / 2 < found - stalled_at <= 2 * interval + slack
            await next_of(events, Connected)
            await channel.wait_joined()
            assert await channel.push("echo", {"ok": True}) == {"ok": True}
            assert len(proxy.accepted_connections) == 2
            stalled.drop()


# -- no reconnect storms ---------------------------------------------------------------------


async def test_a_server_that_closes_every_new_connection_gets_backoff_not_a_storm(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """phoenix.js's schedule (10, 50, 100, 150, 200, 250, 500 ms, 1, 2, 5 s) allows about ten
    attempts in 10 s; a storm makes hundreds."""
    server = phoenix_server

    async def close_every_new_connection() -> None:
        seen = 1
        while True:
            connection = await server.wait_connections(seen + 1)
            seen += 1
            connection.close(1012, "draining")

    with trio.fail_after(LIMIT):
        async with open_socket(server.url), trio.open_nursery() as nursery:
            nursery.start_soon(close_every_new_connection)
            started = trio.current_time()
            server.accepted_connections[0].close(1012, "draining")
            with trio.move_on_after(10):
                await server.wait_connections(30)
            accepted = len(server.accepted_connections)
            elapsed = trio.current_time() - started
            nursery.cancel_scope.cancel()
    assert accepted <= 13, f"{accepted} connections in {elapsed:.2f} s"


async def test_giving_up_before_the_first_connection_raises_connect_error(
    closed_port: int,
) -> None:
    with trio.fail_after(10), pytest.raises(ConnectError, match="cannot connect") as raised:
        async with open_socket(
            f"ws://127.0.0.1:{closed_port}/socket", reconnect_after=lambda attempt: None
        ):
            pytest.fail("connected to a closed port")
    assert raised.value.status is None


async def test_closing_a_socket_that_never_connected(closed_port: int) -> None:
    """Leave the block right after a failed attempt, twenty times (real time, ~10 ms each):
    the socket was once closed between a failed attempt and its state check about half the
    time, and open_socket then raised RuntimeError from nursery.start()."""
    url = f"ws://127.0.0.1:{closed_port}/socket"
    with trio.fail_after(10):
        for _ in range(20):
            async with (
                open_socket(url, wait_connected=False) as socket,
                socket.lifecycle() as events,
            ):
                await next_of(events, ConnectFailed)
            assert socket.state is SocketState.CLOSED


async def test_a_connection_reset_during_the_handshake_fails_the_attempt_at_once(
    phoenix_server: TestServer, proxy: FaultProxy, autojump_clock: trio.abc.Clock
) -> None:
    """A proxy or load balancer that accepts and resets: the attempt fails at once with the
    reset, not at ``connect_timeout`` (10 s) as "timed out" (as it did on trio-websocket,
    whose opening handshake never noticed the reset)."""
    proxy.refuse()
    with trio.fail_after(LIMIT):
        async with (
            open_socket(proxy.url_for(phoenix_server.url), wait_connected=False) as socket,
            socket.lifecycle() as events,
        ):
            started = trio.current_time()
            while not isinstance(event := await events.receive(), ConnectFailed):
                pass
            assert trio.current_time() - started < 1
    assert proxy.statistics().connections_refused >= 1
    assert event.error.status is None
    assert "timed out" not in str(event.error)


async def test_a_ping_racing_a_heartbeat_timeout_is_lost_not_closed(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """Ping at the very tick that finds the connection dead, sixteen times (Trio runs the two
    woken tasks in either order): the ping waits for the new connection or is lost. (It once
    raised SocketClosed half the time: wait_connected() checked, then took a checkpoint.)"""
    with trio.fail_after(LIMIT * 16):
        async with open_socket(phoenix_server.url) as socket, socket.lifecycle() as events:
            opened = trio.current_time()
            for _ in range(16):
                phoenix_server.accepted_connections[-1].stall()
                await trio.sleep_until(opened + 2 * HEARTBEAT)  # the tick that finds it dead
                try:
                    assert await socket.ping() >= 0
                except ReplyLost:
                    pass
                opened = await next_of(events, Connected)
                phoenix_server.accepted_connections[-2].drop()


# -- issue 13: cancellation, interrupts, done is released, bounded buffers -------------------


async def test_keyboard_interrupt_in_a_socket_task_reaches_the_caller_as_itself(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C landing in the reader (not in the caller's task) while the caller pushes: the
    caller's push fails with SocketClosed, but the block must raise the KeyboardInterrupt,
    which ``except Exception`` does not swallow."""
    caught: list[BaseException] = []

    async def push_loop() -> None:
        async with open_socket(phoenix_server.url) as socket, socket.channel("echo:ki") as ch:
            receive = SocketCore.receive

            def interrupted(core: SocketCore, frame: str | bytes, now: float) -> None:
                if "interrupt-me" in str(frame):
                    raise KeyboardInterrupt
                receive(core, frame, now)

            # (The core has slots: the method is patched on the class, for this test only.)
            monkeypatch.setattr(SocketCore, "receive", interrupted)
            for n in range(100):
                try:
                    await ch.push("echo", {"n": n, "tag": "interrupt-me" if n == 5 else ""})
                except Exception as exc:  # what a careless push loop does
                    caught.append(exc)
                    raise

    with trio.fail_after(LIMIT), pytest.raises(KeyboardInterrupt) as interrupt:
        await push_loop()
    assert isinstance(interrupt.value.__context__, BaseExceptionGroup)
    assert [type(exc).__name__ for exc in caught] in (["SocketClosed"], [])
    assert client_tasks() == []


async def test_a_join_cancelled_as_its_ok_arrives_leaves_the_topic_free(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:race")
            with trio.CancelScope() as scope:
                joined = Channel._joined

                def cancel_then_join(self: Channel, response: Any, rejoin: bool) -> None:
                    if self is channel:
                        scope.cancel()  # delivered to the waiting join() first...
                    joined(self, response, rejoin)  # ...then the ok is processed

                # (Channel has slots: patched on the class, for this channel only.)
                monkeypatch.setattr(Channel, "_joined", cancel_then_join)
                await channel.join()
                pytest.fail("the join was not cancelled")
            assert channel.state is not ChannelState.JOINED
            again = socket.channel("echo:race")
            await again.join()  # the topic is free
            assert await again.push("echo", {"n": 1}) == {"n": 1}
            assert channel.state is ChannelState.CLOSED
    received = phoenix_server.accepted_connections[0].received
    sent = [m.event for m in received if m.topic == "echo:race"]
    assert sent[:3] == ["phx_join", "phx_leave", "phx_join"]


@pytest.mark.parametrize("nested_channel", [False, True])
async def test_shutdown_under_a_stalled_server_fits_in_one_close_timeout(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock, nested_channel: bool
) -> None:
    with trio.fail_after(LIMIT):
        with trio.move_on_after(1) as scope:
            async with open_socket(phoenix_server.url, close_timeout=5) as socket:
                channels = [socket.channel(f"echo:stall{n}") for n in range(3)]
                for channel in channels[1:]:
                    await channel.join()
                async with channels[0] if nested_channel else trio.open_nursery():
                    phoenix_server.accepted_connections[0].stall()
                    await trio.sleep_forever()
        assert scope.cancelled_caught
        assert trio.current_time() - 1 <= 5  # the cancellation came at 1 s
    assert socket.state is SocketState.CLOSED
    assert [channel.state for channel in channels[1:]] == [ChannelState.CLOSED] * 2
    assert client_tasks() == []


class Payload(dict[str, Any]):
    """A JSON object that can be watched with a weak reference."""


async def test_answered_pushes_release_their_payloads_at_once(phoenix_server: TestServer) -> None:
    """100 pushes of 200 kB with a 60 s timeout, all answered: no payload outlives its
    reply (the test server keeps its own copies, so memory is watched by weak references).
    Real time: an autojump clock would jump to the push timeout while large frames cross
    the loopback; nothing here waits for a timer."""
    payloads: list[weakref.ref[Payload]] = []
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, timeout=60) as socket:
            channel = socket.channel("echo:big")
            await channel.join()
            gc.disable()  # freed by reference counting, at once
            try:
                for n in range(100):
                    payload = Payload(n=n, blob="x" * 200_000)
                    payloads.append(weakref.ref(payload))
                    await channel.push("echo", payload)
                    del payload
                alive = [ref for ref in payloads if ref() is not None]
            finally:
                gc.enable()
            assert alive == []
            assert socket.statistics().pending_replies == 0
            assert len(socket._core._timers) < 70  # the timer heap does not keep them either


async def test_subscription_buffers_are_bounded_in_bytes(phoenix_server: TestServer) -> None:
    """A subscriber that does not read, and broadcasts of 100 kB: the buffer holds at most
    ``max_buffer_bytes`` (the default, 16 MB, far below 1000 such messages), and the gap is
    reported, as the count bound's is. Real time (30 MB cross the loopback; nothing waits
    for a timer)."""
    blob = "x" * 100_000
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:bytes") as channel,
            channel.subscribe("big") as default,
            channel.subscribe("big", max_buffer_bytes=350_000) as small,
            channel.subscribe("big", max_buffer_bytes=350_000, overflow="drop_oldest") as oldest,
        ):
            for n in range(300):
                phoenix_server.broadcast("echo:bytes", "big", {"n": n, "blob": blob})
            await socket.ping()  # every broadcast has been handled
            default_stats = default.statistics()
            assert default_stats.max_buffer_bytes == DEFAULT_MAX_BUFFER_BYTES == 16_000_000
            assert default_stats.buffered == 159  # 159 frames of 100,059 bytes fit in 16 MB
            assert default_stats.buffered_bytes <= DEFAULT_MAX_BUFFER_BYTES
            assert (small.statistics().buffered, small.statistics().dropped) == (3, 297)
            assert [(await small.receive()).payload["n"] for _ in range(3)] == [0, 1, 2]
            with pytest.raises(SubscriptionOverflow) as gap:
                await small.receive()
            assert gap.value.dropped == 297
            assert [(await oldest.receive()).payload["n"] for _ in range(3)] == [297, 298, 299]
            assert channel.statistics().messages_dropped == 141 + 297 + 297
            with pytest.raises(ValueError, match="max_buffer_bytes must be at least 1"):
                async with channel.subscribe(max_buffer_bytes=0):
                    pytest.fail("subscribed")


async def test_presence_of_a_channel_already_left_raises_channel_closed(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:gone")
            async with channel:
                pass
            presence = channel.presence(state_event="custom_state", diff_event="custom_diff")
            with pytest.raises(ChannelClosed, match=r"'echo:gone' is closed \(left\)"):
                await presence.wait_synced()
            with pytest.raises(ChannelClosed):
                async with presence.changes():
                    pass
            default = channel.presence()
            with pytest.raises(ChannelClosed):
                await default.wait_synced()
