"""Chaos soak: a client, a fault-injecting proxy and the test server, with invariants checked.

``tests/client/test_reliability.py`` runs a short soak in the normal test run; the long one is

    .venv/bin/python tests/system/soak.py --minutes 10   # or: python -m tests.system.soak ...

It prints its figures after every round and exits with status 1 when an invariant breaks.

What runs, in one Trio process on loopback (client ↔ `FaultProxy` ↔ `TestServer`):

* one socket with a few channels, each followed by a subscriber and a presence view;
* pusher tasks per channel pushing ``echo`` (text and binary), ``error``, ``noreply``, slow
  replies and pushes they cancel themselves, each with a unique id;
* a broadcaster sending numbered ``tick`` broadcasts to every topic, recording which server
  connections each number was sent to (the server's truth);
* a fault injector: abrupt drops, short stalls, long stalls (half-open connections that only
  the heartbeat can detect), latency, server closes with 1000 / 1001 / 1011 / 1012, channel
  crashes, rejected reconnects (HTTP 403 / 503) and refused TCP connections.

Checked once the faults stop, every round:

* every push ended exactly once, in an outcome its event allows (return value, `PushError`,
  `PushTimeout`, cancelled, `ReplyLost`; `ChannelClosed` / `SocketClosed` only when closing);
  ok replies and errors carried that push's own payload; none outlived its timeout + slack;
* the socket is connected and every channel joined again within the recovery bound (two
  heartbeats, the longest reconnect and rejoin delays, one timeout, slack) and pushes succeed;
* no pending reply or buffered push is left, and no subscriber overflowed;
* broadcasts: none delivered twice or out of order, and each one not delivered is accounted
  for: it was sent to no connection (the channel was not joined on the server), or it was lost
  in flight with a dying connection, i.e. it is in the *tail* of what that connection was
  sent (a gap followed by later deliveries would be a silent loss);
* every channel's presence view equals the server's presence list;
* nothing logged at ERROR by the client; the server's only crashes are the requested ones;
* closing with pushes in flight ends them with `ChannelClosed` / `SocketClosed`, and every task
  of the socket, the server connections and the proxy connections is gone afterwards.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar, Final

import attrs
import trio

from trio_phoenix import (
    Channel,
    ChannelClosed,
    ChannelState,
    ChannelStatistics,
    PushError,
    PushTimeout,
    ReplyLost,
    Socket,
    SocketClosed,
    SocketState,
    SocketStatistics,
    SubscriptionOverflow,
    open_socket,
)
from trio_phoenix.testing import (
    ChannelSocket,
    EchoChannel,
    FaultProxy,
    ServerConnection,
    TestServer,
    open_fault_proxy,
    open_test_server,
)

__all__ = [
    "FAULTS",
    "BroadcastLedger",
    "PushRecord",
    "Soak",
    "SoakConfig",
    "SoakFailure",
    "main",
    "run_soak",
]

SOCKET_ID: Final = "soak"
PRESENCE_KEY: Final = "soak-client"
TICK: Final = "tick"

#: Every fault the injector knows, with its weight.
FAULTS: Final = {
    "drop": 6,
    "stall_short": 4,
    "stall_long": 3,
    "delay": 3,
    "close_1000": 2,
    "disconnect_1001": 2,
    "close_1011": 2,
    "drain_1012": 2,
    "crash": 4,
    "reject": 2,
    "refuse": 2,
}

#: Push kinds the pushers choose from, with their weights.
PUSH_KINDS: Final = {"echo": 45, "binary": 5, "error": 10, "noreply": 4, "slow": 12, "cancel": 10}
#: The outcomes each kind of push may end in.
ALLOWED: Final = {
    "echo": {"ok", "timeout", "reply_lost"},
    "binary": {"ok", "timeout", "reply_lost"},
    "error": {"error", "timeout", "reply_lost"},
    "noreply": {"timeout", "reply_lost"},
    "slow": {"ok", "timeout", "reply_lost"},
    "cancel": {"ok", "timeout", "reply_lost", "cancelled"},
    "crash": {"timeout", "reply_lost"},
    "clean": {"ok"},  # after the faults stopped
    "closing": {"channel_closed", "socket_closed"},  # in flight when the socket closes
}


class SoakFailure(AssertionError):
    """An invariant did not hold."""


@attrs.frozen(kw_only=True)
class SoakConfig:
    """What a soak does; the defaults are the short soak of the test run."""

    seconds: float = 8.0
    seed: int = attrs.field(factory=lambda: random.randrange(2**32))
    channels: int = 3
    pushers_per_channel: int = 3
    push_interval: tuple[float, float] = (0.01, 0.05)
    broadcast_interval: float = 0.02
    heartbeat_interval: float = 0.3
    timeout: float = 1.0
    #: Reconnect and rejoin delays (attempt n takes the n-th; the last one repeats).
    reconnect_delays: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4, 0.5)
    rejoin_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
    faults: frozenset[str] = frozenset(FAULTS)
    #: Faults injected first, in this order, before the random ones.
    first_faults: tuple[str, ...] = ("stall_long", "crash", "reject")
    fault_interval: tuple[float, float] = (0.1, 0.4)
    #: How late a push may end after its timeout (scheduling latency on a loaded machine).
    slack: float = 0.5
    #: Added to the recovery bound derived from the settings.
    recovery_slack: float = 1.0

    @property
    def recovery_bound(self) -> float:
        """How soon after the faults stop the socket must be connected with every channel
        joined: a dead connection found (two heartbeats), the longest reconnect and rejoin
        delays, a join that times out once, and slack."""
        return (
            2 * self.heartbeat_interval
            + max(self.reconnect_delays)
            + max(self.rejoin_delays)
            + self.timeout
            + self.recovery_slack
        )


def schedule(delays: tuple[float, ...]) -> Callable[[int], float]:
    """A reconnect/rejoin schedule: attempt n waits ``delays[n - 1]``, the last repeats."""

    def after(attempt: int) -> float:
        return delays[min(attempt, len(delays)) - 1]

    return after


class SoakChannel(EchoChannel):
    """The demo echo channel (echo, error, noreply, crash, reply_later, ...) with presence."""

    joins: ClassVar[int] = 0

    async def after_join(self, socket: ChannelSocket) -> None:
        await super().after_join(socket)
        SoakChannel.joins += 1
        socket.server.presence.track(socket, PRESENCE_KEY, {"join": SoakChannel.joins})
        socket.server.presence.push_state(socket)


# -- the ledgers: pure bookkeeping, unit-tested on their own --------------------------------


@attrs.define(eq=False, kw_only=True)
class PushRecord:
    """One push, from the call to its one outcome."""

    kind: str
    id: int
    limit: float  # its timeout, or when its caller cancels it if sooner
    started: float
    ended: float | None = None
    outcome: str | None = None
    detail: Any = None

    def end(self, outcome: str, now: float, detail: Any = None) -> None:
        if self.outcome is not None:
            raise SoakFailure(f"push ended twice: {self} then {outcome}")
        self.outcome, self.ended, self.detail = outcome, now, detail

    def check(self, slack: float) -> float:
        """How late the push ended after its limit (seconds; negative if in time).

        Raises:
            SoakFailure: it never ended, ended in an outcome its kind does not allow, or
                ended more than ``slack`` after its limit.
        """
        if self.outcome is None or self.ended is None:
            raise SoakFailure(f"push never ended: {self}")
        if self.outcome not in ALLOWED[self.kind]:
            raise SoakFailure(f"unexpected outcome: {self}")
        late = self.ended - self.started - self.limit
        if late > slack:
            raise SoakFailure(f"push outlived its timeout by {late:.3f} s: {self}")
        return late


@attrs.define(eq=False)
class BroadcastLedger:
    """The numbered broadcasts of one topic: the server connections each was sent to, and the
    numbers the client received, in order."""

    topic: str
    sent: dict[int, list[int]] = attrs.Factory(dict)
    received: list[int] = attrs.Factory(list)
    totals: collections.Counter[str] = attrs.Factory(collections.Counter)

    def check(self, upto: int, live: int) -> None:
        """Check the broadcasts numbered up to ``upto`` (which has arrived), then forget them.

        ``live`` is the index of the connection the client is on now; it lost nothing.

        Raises:
            SoakFailure: a broadcast arrived twice, out of order, without being sent, or was
                lost although later ones sent to the same connection arrived.
        """
        topic, sent, received = self.topic, self.sent, self.received
        if any(b <= a for a, b in itertools.pairwise(received)):
            twice = sorted(n for n, k in collections.Counter(received).items() if k > 1)
            raise SoakFailure(f"{topic}: broadcasts delivered twice {twice} or out of order")
        unknown = set(received) - sent.keys()
        if unknown:
            raise SoakFailure(f"{topic}: received broadcasts never sent: {sorted(unknown)}")
        # The client reads one connection at a time, so a broadcast can only arrive through the
        # newest connection it was sent to; of each connection's broadcasts, what arrived must
        # be a prefix (a connection that dies loses its tail; nothing else may go missing).
        numbers = [n for n in sent if n <= upto]
        got = {n for n in received if n <= upto}
        by_connection: dict[int, list[int]] = collections.defaultdict(list)
        for n in numbers:
            if sent[n]:
                by_connection[max(sent[n])].append(n)
            else:
                self.totals["not sent (not joined)"] += 1
        for index, mine in by_connection.items():
            arrived = [n for n in mine if n in got]
            if arrived != mine[: len(arrived)]:
                missing = sorted(set(mine[: mine.index(arrived[-1])]) - got)
                raise SoakFailure(
                    f"{topic}: broadcasts {missing} sent on connection {index} were lost, "
                    "but later ones arrived"
                )
            if index == live and len(arrived) != len(mine):
                raise SoakFailure(f"{topic}: the live connection lost broadcasts")
            self.totals["lost with a dying connection"] += len(mine) - len(arrived)
        self.totals["sent"] += len(numbers)
        self.totals["received"] += len(got)
        for n in numbers:
            del sent[n]
        self.received = [n for n in received if n > upto]


class _LogCounter(logging.Handler):
    """Counts the client's log records (not the test server's); keeps ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_message: collections.Counter[str] = collections.Counter()
        self.errors: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("trio_phoenix.testing"):
            return
        self.by_message[f"{record.levelname} {record.msg}"] += 1
        if record.levelno >= logging.ERROR:
            self.errors.append(record)


@contextmanager
def _counting_logs() -> Iterator[_LogCounter]:
    logger = logging.getLogger("trio_phoenix")
    counter = _LogCounter()
    old_level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)


def count_tasks() -> int:
    """The number of tasks in this Trio run."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack, count = [root], 0
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def wait_for(predicate: Callable[[], bool], seconds: float, what: Callable[[], str]) -> None:
    """Poll ``predicate`` until true (these states have no event to wait on).

    Raises:
        SoakFailure: not true within ``seconds``; the message is ``what()``.
    """
    with trio.move_on_after(seconds):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)
    raise SoakFailure(f"not within {seconds} s: {what()}")


# -- the soak -------------------------------------------------------------------------------


class Soak:
    """One socket under chaos: `start`, then `chaos` and `check` per round, then `close`."""

    def __init__(
        self,
        config: SoakConfig,
        server: TestServer,
        proxy: FaultProxy,
        socket: Socket,
        logs: _LogCounter,
    ) -> None:
        self.config = config
        self.server = server
        self.proxy = proxy
        self.socket = socket
        self.logs = logs
        self.rng = random.Random(config.seed)
        self.channels = [socket.channel(f"soak:{i}") for i in range(config.channels)]
        self.ledgers = {ch.topic: BroadcastLedger(ch.topic) for ch in self.channels}
        self.records: list[PushRecord] = []
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.recoveries: list[float] = []
        self.latest = -math.inf  # the latest a push ended after its limit
        self.overflow = 0
        self.rounds = 0
        self._ids = itertools.count(1)
        self._numbers = {ch.topic: itertools.count(1) for ch in self.channels}
        self._connection_index: dict[ServerConnection, int] = {}
        self._pushing = False
        self._broadcasting = False

    async def start(self, nursery: trio.Nursery) -> None:
        """Subscribe, join every channel, start the broadcaster."""
        for channel in self.channels:
            await nursery.start(self._subscriber, channel)
        for channel in self.channels:
            await channel.join()
        self._broadcasting = True
        nursery.start_soon(self._broadcaster)

    async def _subscriber(
        self, channel: Channel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        ledger = self.ledgers[channel.topic]
        async with channel.subscribe(TICK, max_buffer=1_000_000) as messages:
            task_status.started()
            while True:
                try:
                    message = await messages.receive()
                except SubscriptionOverflow as exc:
                    self.overflow += exc.dropped
                    continue
                except trio.EndOfChannel:
                    return
                ledger.received.append(message.payload["n"])

    # -- broadcasts ----------------------------------------------------------------------------

    def broadcast(self, topic: str) -> int:
        """Broadcast the next number to ``topic``, recording the connections it goes to."""
        index = self._connection_index
        for connection in self.server.connections:
            if connection not in index:
                index[connection] = self.server.accepted_connections.index(connection)
        n = next(self._numbers[topic])
        self.ledgers[topic].sent[n] = [
            index[c] for c in self.server.connections if topic in c.topics
        ]
        self.server.broadcast(topic, TICK, {"n": n})
        return n

    async def _broadcaster(self) -> None:
        while self._broadcasting:
            for channel in self.channels:
                self.broadcast(channel.topic)
            await trio.sleep(self.config.broadcast_interval)

    # -- pushes ------------------------------------------------------------------------------

    async def push(self, channel: Channel, kind: str, cancel_after: float | None = None) -> None:
        """Push once and record the outcome; an exception of any other kind propagates."""
        push_id = next(self._ids)
        events = {"error": "error", "noreply": "noreply", "closing": "noreply", "crash": "crash"}
        event = events.get(kind, "echo")
        payload: Any = {"id": push_id}
        expected = payload
        if kind == "binary":
            payload = expected = f"id:{push_id}".encode()
        elif kind == "slow" or (kind == "cancel" and self.rng.random() < 0.5):
            delay = self.rng.uniform(0, 1.4 * self.config.timeout)
            event, payload = "reply_later", {"delay": delay, "payload": expected}
        timeout = self.config.timeout
        record = PushRecord(
            kind=kind,
            id=push_id,
            limit=timeout if cancel_after is None else min(cancel_after, timeout),
            started=trio.current_time(),
        )
        self.records.append(record)
        try:
            with trio.move_on_after(math.inf if cancel_after is None else cancel_after):
                result = await channel.push(event, payload)
                if result != expected:
                    raise SoakFailure(f"push {push_id} got another push's reply: {result!r}")
                record.end("ok", trio.current_time())
        except PushError as exc:
            if (exc.status, exc.response) != ("error", payload):
                raise SoakFailure(f"push {push_id} got another push's error: {exc!r}") from None
            record.end("error", trio.current_time())
        except PushTimeout:
            record.end("timeout", trio.current_time())
        except ReplyLost as exc:
            record.end("reply_lost", trio.current_time(), exc.reason)
        except ChannelClosed as exc:
            record.end("channel_closed", trio.current_time(), exc)
        except SocketClosed:
            record.end("socket_closed", trio.current_time())
        if record.outcome is None:
            record.end("cancelled", trio.current_time())

    async def _pusher(self, channel: Channel, rng: random.Random) -> None:
        kinds, weights = list(PUSH_KINDS), list(PUSH_KINDS.values())
        while self._pushing:
            kind = rng.choices(kinds, weights)[0]
            cancel_after = rng.uniform(0, self.config.timeout) if kind == "cancel" else None
            await self.push(channel, kind, cancel_after)
            await trio.sleep(rng.uniform(*self.config.push_interval))

    # -- faults ------------------------------------------------------------------------------

    async def inject(self, fault: str, nursery: trio.Nursery) -> None:
        """Inject one fault, waiting out those that last a while."""
        rng, proxy, server = self.rng, self.proxy, self.server
        proxied = proxy.connections[-1] if proxy.connections else None
        served = server.connections[-1] if server.connections else None
        if fault in ("drop", "stall_short", "stall_long", "delay") and proxied is None:
            return
        if fault in ("close_1000", "close_1011") and served is None:
            return
        self.faults[fault] += 1
        if fault == "drop":
            assert proxied is not None
            proxied.drop()
        elif fault in ("stall_short", "stall_long"):
            assert proxied is not None
            # Short: well within a heartbeat. Long: at least two heartbeats go unanswered, so
            # only the heartbeat can find that the connection is dead (half-open).
            if fault == "stall_long":
                seconds = rng.uniform(2.5, 4) * self.config.heartbeat_interval
            else:
                seconds = rng.uniform(0.05, 0.15)
            proxied.stall()
            await trio.sleep(seconds)
            proxied.resume()
        elif fault == "delay":
            assert proxied is not None
            proxied.delay(rng.uniform(0.01, 0.08))
            await trio.sleep(rng.uniform(0.3, 1.0))
            proxied.delay(0)
        elif fault in ("close_1000", "close_1011"):
            assert served is not None
            served.close(int(fault[-4:]), "soak")
        elif fault == "disconnect_1001":
            server.disconnect(SOCKET_ID)
        elif fault == "drain_1012":
            server.drain()
        elif fault == "crash":
            nursery.start_soon(self.push, rng.choice(self.channels), "crash")
        else:  # reject, refuse: new connections fail for a while
            if fault == "reject":
                server.reject_upgrades(rng.choice((403, 503)))
            else:
                proxy.refuse()
            if proxied is not None:
                proxied.drop()
            await trio.sleep(rng.uniform(0.2, 0.6))
            server.reject_upgrades(None)
            proxy.refuse(False)

    async def chaos(self, seconds: float) -> None:
        """Push, broadcast and inject faults for ``seconds``; stop the faults; recover; push
        once more on every channel (every push must succeed now); stop pushing."""
        config = self.config
        faults = sorted(config.faults)
        weights = [FAULTS[fault] for fault in faults]
        first = [f for f in config.first_faults if f in config.faults] if not self.rounds else []
        self._pushing = True
        async with trio.open_nursery() as pushers:
            for channel in self.channels:
                for _ in range(config.pushers_per_channel):
                    pushers.start_soon(self._pusher, channel, random.Random(self.rng.random()))
            async with trio.open_nursery() as nursery:
                end = trio.current_time() + seconds
                while trio.current_time() < end:
                    await trio.sleep(self.rng.uniform(*config.fault_interval))
                    fault = first.pop(0) if first else self.rng.choices(faults, weights)[0]
                    await self.inject(fault, nursery)
            await self.recover()
            async with trio.open_nursery() as clean:
                for channel in self.channels:
                    for _ in range(3):
                        clean.start_soon(self.push, channel, "clean")
            self._pushing = False

    async def recover(self) -> None:
        """Wait until connected with every channel joined, stably; record how long it took.

        Raises:
            SoakFailure: not within ``config.recovery_bound``.
        """
        start, bound = trio.current_time(), self.config.recovery_bound
        with trio.move_on_after(bound):
            await self._wait_stable()
            self.recoveries.append(trio.current_time() - start)
            return
        states = {ch.topic: ch.state.value for ch in self.channels}
        raise SoakFailure(
            f"not recovered {bound:.2f} s after the faults stopped: socket "
            f"{self.socket.state.value}, channels {states}"
        )

    async def _wait_stable(self) -> None:
        socket = self.socket
        while True:
            await socket.wait_connected()
            for channel in self.channels:
                await channel.wait_joined()
            connects = socket.statistics().connects
            refs = [channel.join_ref for channel in self.channels]
            try:
                await socket.ping()  # the connection answers: not a dead one yet to be found
            except ReplyLost:
                continue
            if (
                socket.statistics().connects == connects
                and [channel.join_ref for channel in self.channels] == refs
                and all(ch.state is ChannelState.JOINED for ch in self.channels)
            ):
                return

    # -- checks ------------------------------------------------------------------------------

    async def check(self) -> None:
        """Check every invariant; call after `chaos`."""
        self._check_pushes()
        stats: list[SocketStatistics | ChannelStatistics] = [self.socket.statistics()]
        stats += [channel.statistics() for channel in self.channels]
        left = [s for s in stats if s.pending_replies or s.buffered_pushes]
        if left:
            raise SoakFailure(f"pushes left behind: {left}")
        await self._check_broadcasts()
        await self._check_presence()
        if self.overflow:
            raise SoakFailure(f"{self.overflow} broadcasts overflowed a subscriber")
        if self.logs.errors:
            raise SoakFailure(f"the client logged errors: {self.logs.errors!r}")
        unexpected = [c for c in self.server.crashes if str(c) != "crash requested"]
        if unexpected:
            raise SoakFailure(f"the server crashed unexpectedly: {unexpected!r}")
        self.rounds += 1

    def _check_pushes(self) -> None:
        for record in self.records:
            self.latest = max(self.latest, record.check(self.config.slack))
            self.outcomes[record.outcome or ""] += 1
        self.records.clear()

    async def _check_broadcasts(self) -> None:
        # A marker per topic, broadcast on the healthy connection: once it has arrived,
        # everything sent before it to this connection has arrived too.
        markers = {topic: self.broadcast(topic) for topic in self.ledgers}
        await wait_for(
            lambda: all(self.ledgers[t].received[-1:] >= [n] for t, n in markers.items()),
            2 * self.config.timeout,
            lambda: f"the marker broadcasts {markers} did not arrive",
        )
        live = max(self._connection_index[c] for c in self.server.connections)
        for topic, marker in markers.items():
            self.ledgers[topic].check(marker, live)

    async def _check_presence(self) -> None:
        server = self.server
        await wait_for(
            lambda: len(server.connections) == 1,
            5.0,
            lambda: f"the server still has {len(server.connections)} connections",
        )
        for channel in self.channels:
            await wait_for(
                partial(self._presence_synced, channel),
                2.0,
                partial(self._presence_difference, channel),
            )
            metas = server.presence.list(channel.topic)[PRESENCE_KEY]["metas"]
            if len(metas) != 1:
                raise SoakFailure(f"{channel.topic}: the server still tracks {metas}")

    def _presence_synced(self, channel: Channel) -> bool:
        return channel.presence().state == self.server.presence.list(channel.topic)

    def _presence_difference(self, channel: Channel) -> str:
        truth = self.server.presence.list(channel.topic)
        return f"{channel.topic}: presence {channel.presence().state} != the server's {truth}"

    async def close(self) -> None:
        """Close the socket with a push in flight on every channel; each must end at once."""
        self._broadcasting = False
        async with trio.open_nursery() as closing:
            for channel in self.channels:
                closing.start_soon(self.push, channel, "closing")
            await wait_for(
                lambda: self.socket.statistics().pending_replies >= len(self.channels),
                2 * self.config.timeout,
                lambda: "the last pushes were not sent",
            )
            await self.socket.aclose()
        self._check_pushes()
        stats = self.socket.statistics()
        if stats.pending_replies or stats.buffered_pushes or stats.state is not SocketState.CLOSED:
            raise SoakFailure(f"left behind after closing: {stats}")

    # -- figures -----------------------------------------------------------------------------

    def figures(self) -> str:
        """The figures so far, one topic per line."""
        stats = self.socket.statistics()
        recoveries = self.recoveries or [math.nan]
        broadcasts: collections.Counter[str] = collections.Counter()
        for ledger in self.ledgers.values():
            broadcasts.update(ledger.totals)
        return "\n".join(
            [
                f"seed {self.config.seed}, {self.rounds} round(s) checked",
                f"faults injected: {sum(self.faults.values())} ({_counts(self.faults)})",
                f"pushes by outcome: {sum(self.outcomes.values())} ({_counts(self.outcomes)})",
                f"latest end after a push's timeout: {self.latest * 1000:+.0f} ms "
                f"(allowed: {self.config.slack * 1000:+.0f} ms)",
                f"reconnects: {stats.connects - 1} ({stats.heartbeat_timeouts} after a heartbeat "
                f"timeout; {self.server.statistics().upgrades_rejected} upgrades rejected, "
                f"{self.proxy.statistics().connections_refused} TCP connections refused)",
                f"time to recover: max {max(recoveries):.3f} s, mean "
                f"{sum(recoveries) / len(recoveries):.3f} s "
                f"(bound {self.config.recovery_bound:.2f} s)",
                f"broadcasts: {_counts(broadcasts)}; delivered twice 0, overflowed "
                f"{self.overflow}",
                f"frames: {stats.frames_sent} sent, {stats.frames_received} received, "
                f"{stats.malformed_frames} malformed, {stats.dropped_messages} dropped "
                "(replies after their push ended, stale join refs)",
            ]
        )


def _counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"


def _first_leaf(group: BaseExceptionGroup[SoakFailure]) -> SoakFailure:
    leaf: SoakFailure | BaseExceptionGroup[SoakFailure] = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


async def run_soak(
    config: SoakConfig, *, rounds: int = 1, report: Callable[[str], object] = print
) -> Soak:
    """Run ``rounds`` rounds of ``config.seconds`` of chaos, checking after each; then close.

    Raises:
        SoakFailure: an invariant did not hold (the figures so far are reported first).
    """
    SoakChannel.joins = 0
    async with (
        open_test_server(
            {"soak:*": SoakChannel},
            connect=lambda params, info: SOCKET_ID,
            idle_timeout=max(5.0, 3 * config.heartbeat_interval),  # ends zombie connections
        ) as server,
        open_fault_proxy("127.0.0.1", server.port) as proxy,
    ):
        baseline = count_tasks()
        failure: SoakFailure | None = None
        with _counting_logs() as logs:
            async with open_socket(
                proxy.url_for(server.url),
                timeout=config.timeout,
                heartbeat_interval=config.heartbeat_interval,
                reconnect_after=schedule(config.reconnect_delays),
                rejoin_after=schedule(config.rejoin_delays),
                connect_timeout=2 * config.timeout,
                close_timeout=config.timeout,
            ) as socket:
                soak = Soak(config, server, proxy, socket, logs)
                try:
                    async with trio.open_nursery() as nursery:
                        await soak.start(nursery)
                        for index in range(rounds):
                            started = time.monotonic()
                            await soak.chaos(config.seconds)
                            await soak.check()
                            elapsed = time.monotonic() - started
                            report(f"-- round {index + 1}/{rounds} ({elapsed:.1f} s)")
                            report(soak.figures())
                        await soak.close()
                except* SoakFailure as group:
                    failure = _first_leaf(group)
                    report(f"-- FAILED: {failure}\n{soak.figures()}")
        if failure is not None:
            raise failure
        await wait_for(
            lambda: not server.connections and not proxy.connections,
            5.0,
            lambda: f"connections left: {server.connections}, {proxy.connections}",
        )
        await wait_for(
            lambda: count_tasks() == baseline,
            2.0,
            lambda: f"{count_tasks() - baseline} task(s) outlived the socket",
        )
    return soak


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python tests/system/soak.py --minutes 10``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total chaos time")
    parser.add_argument("--round-seconds", type=float, default=60.0, help="chaos per round")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--heartbeat", type=float, default=0.3, help="heartbeat interval (s)")
    parser.add_argument(
        "--without", action="append", default=[], choices=sorted(FAULTS), help="omit a fault"
    )
    args = parser.parse_args(argv)
    seconds = min(args.round_seconds, args.minutes * 60)
    rounds = max(1, round(args.minutes * 60 / seconds))
    options: dict[str, Any] = {
        "seconds": seconds,
        "heartbeat_interval": args.heartbeat,
        "faults": frozenset(FAULTS) - set(args.without),
    }
    if args.seed is not None:
        options["seed"] = args.seed
    config = SoakConfig(**options)
    print(f"soak: {rounds} round(s) of {seconds:.0f} s; {config}", flush=True)

    def report(text: str) -> None:
        print(text, flush=True)

    started = time.monotonic()
    try:
        trio.run(_soak_main, config, rounds, report)
    except SoakFailure as exc:
        print(f"SOAK FAILED after {time.monotonic() - started:.0f} s: {exc}", file=sys.stderr)
        return 1
    print(f"soak passed in {time.monotonic() - started:.0f} s")
    return 0


async def _soak_main(config: SoakConfig, rounds: int, report: Callable[[str], object]) -> None:
    await run_soak(config, rounds=rounds, report=report)


if __name__ == "__main__":
    sys.exit(main())
