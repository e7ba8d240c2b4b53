"""SocketCore under random interleavings of commands, frames, transport events and time
(a Hypothesis state machine checked against a model).

The helpers and the conventions are in ``tests/proto/core_helpers.py``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.proto.core_helpers import (
    SERVER,
    connected_core,
    msg,
)
from trio_phoenix.proto import (
    ChannelCore,
    ChannelEnded,
    ChannelState,
    Event,
    FrameDropped,
    LocalProtocolError,
    Message,
    PhoenixError,
    PingLost,
    PingReplied,
    Push,
    PushFailed,
    PushKind,
    PushReplied,
    PushTimedOut,
    Serializer,
    SocketClosed,
    SocketCore,
    SocketState,
    V1JSONSerializer,
    phoenix_reconnect_after,
)
from trio_phoenix.proto._serializer import Frame

# -- random interleavings (Hypothesis stateful) ----------------------------------------------

TOPICS = ["room:a", "room:b", "room:c"]


class CoreModel:
    """One SocketCore under random commands, server frames, timer advances and drops.

    ``check()`` holds after every step: every push ended at most once and a done push is
    nowhere in the core; a live push is in exactly one place; ``statistics()`` agrees with
    what the channels hold. ``finish()`` closes the socket, which must end every push and
    every joined channel exactly once. ``receive()`` and ``handle_timers()`` never raise.
    """

    def __init__(
        self,
        *,
        heartbeat: float | None = 30.0,
        timeout: float | None = 10.0,
        clean: bool = True,
        v1: bool = False,
        give_up: bool = False,
        connect: bool = True,
    ) -> None:
        self.v1 = v1
        self.server: Serializer = V1JSONSerializer("server") if v1 else SERVER
        self.core = SocketCore(
            serializer=V1JSONSerializer() if v1 else None,
            heartbeat_interval=heartbeat,
            timeout=timeout,
            reconnect_on_clean_close=clean,
            reconnect_after=give_up_after_two if give_up else phoenix_reconnect_after,
        )
        self.now = 0.0
        self.channels: list[ChannelCore] = []
        self.pushes: list[Push] = []
        self.push_ends: dict[int, list[Event]] = {}
        self.cancelled: set[int] = set()
        self.channel_ends: dict[int, int] = {}
        self.pings: set[str] = set()
        self.sent: list[Message] = []
        if connect:
            self.core.connection_started(self.now)
            self.core.connection_opened(self.now)

    def drain(self) -> None:
        for raw in self.core.data_to_send():
            self.sent.append(self.server.decode(raw))
        for event in self.core.events():
            if isinstance(event, PushReplied | PushTimedOut | PushFailed):
                self.push_ends.setdefault(id(event.push), []).append(event)
            elif isinstance(event, ChannelEnded):
                key = id(event.channel)
                self.channel_ends[key] = self.channel_ends.get(key, 0) + 1
            elif isinstance(event, PingReplied | PingLost):
                assert event.ref in self.pings
                self.pings.discard(event.ref)
        self.check()

    def receive(self, message: Message) -> None:
        self.core.receive(self.server.encode(message), self.now)
        self.drain()

    # -- transport and time --------------------------------------------------------------

    def transport(self, action: str, code: int | None) -> None:
        core = self.core
        state = core.state
        connecting = state is SocketState.CONNECTING
        if action == "connect":
            if state is not SocketState.CLOSED and state is not SocketState.CONNECTED:
                if not connecting:
                    core.connection_started(self.now)
                core.connection_opened(self.now)
        elif action == "start":
            if state is SocketState.CLOSED:
                with pytest.raises(SocketClosed):
                    core.connection_started(self.now)
            elif connecting or state is SocketState.CONNECTED:
                with pytest.raises(LocalProtocolError):
                    core.connection_started(self.now)
            else:
                core.connection_started(self.now)
        elif action in ("open", "fail"):
            call = core.connection_opened if action == "open" else core.connection_failed
            if connecting:
                call(self.now)
            else:
                with pytest.raises(LocalProtocolError):
                    call(self.now)
        else:
            core.connection_lost(self.now, code)
        self.drain()

    def advance(self, step: float) -> None:
        deadline = self.core.next_deadline()
        if step < 0:  # jump to the next deadline
            if deadline is None:
                return
            self.now = max(self.now, deadline)
        else:
            self.now += step
        self.core.handle_timers(self.now)
        self.drain()
        after = self.core.next_deadline()
        assert after is None or after > self.now

    # -- commands ------------------------------------------------------------------------

    def join(self, topic: str, params: Any, timeout: Any) -> None:
        kwargs = {} if timeout == "default" else {"timeout": timeout}
        channel = self.core.channel(topic, params, **kwargs)
        self.channels.append(channel)
        before = self.core.statistics()
        try:
            self.core.join(channel, self.now)
        except (LocalProtocolError, SocketClosed):
            assert not channel.join_called
            assert self.core.data_to_send() == []
            assert self.core.events() == []
            assert self.core.statistics() == before
        self.drain()

    def push(self, index: int, event: str, payload: Any, timeout: Any) -> None:
        # Mostly on live channels; sometimes on ended or never-joined ones.
        candidates = self.core.channels() if index % 8 else self.channels
        if not candidates:
            return
        channel = candidates[index % len(candidates)]
        before = self.core.statistics()
        kwargs = {} if timeout == "default" else {"timeout": timeout}
        try:
            push = self.core.push(channel, event, payload, self.now, **kwargs)
        except PhoenixError:
            assert self.core.data_to_send() == []
            assert self.core.events() == []
            assert self.core.statistics() == before
            return
        assert event != "phx_reply"
        assert payload != {"bad": {1}}
        self.pushes.append(push)
        self.drain()

    def command(self, action: str, index: int) -> None:
        core = self.core
        if action == "cancel" and self.pushes:
            push = self.pushes[-1 - index % len(self.pushes)]
            if not push.done:
                self.cancelled.add(id(push))
            core.cancel_push(push)
            assert push.done
            assert core.events() == []
        elif action == "leave":
            candidates = core.channels() if index % 4 else self.channels
            if candidates:
                core.leave(candidates[index % len(candidates)], self.now)
        elif action == "ping":
            if core.state is SocketState.CONNECTED:
                self.pings.add(core.ping(self.now))
            else:
                with pytest.raises(SocketClosed):
                    core.ping(self.now)
        elif action == "close":
            core.close()
        self.drain()

    # -- the server ----------------------------------------------------------------------

    def server_answers_joins(self, status: str) -> None:
        for channel in self.core.channels():
            if channel.state is ChannelState.JOINING and channel.join_ref is not None:
                ref = channel.join_ref
                self.receive(
                    msg(ref, ref, channel.topic, "phx_reply", {"response": {}, "status": status})
                )

    def server_replies(self, index: int, status: str, join_ref: str, binary: bool) -> None:
        requests = [m for m in self.sent if m.ref is not None]
        if not requests:
            return
        request = requests[-1 - index % len(requests)]
        jr = {"same": request.join_ref, "null": None, "stale": "999"}[join_ref]
        response: Any = b"\x00" if binary and not self.v1 else {"r": 1}
        payload = {"response": response, "status": status}
        self.receive(msg(jr, request.ref, request.topic, "phx_reply", payload))

    def server_sends(self, topic: str, event: str, join_ref: str, payload: Any) -> None:
        current = next((c.join_ref for c in self.core.channels() if c.topic == topic), None)
        jr = {"current": current, "null": None, "stale": "999", "empty": ""}[join_ref]
        if isinstance(payload, bytes) and self.v1:
            payload = {"bytes": "no"}
        elif isinstance(payload, bytes) and event == "phx_reply":
            payload = {"status": "ok", "response": payload}
        self.receive(msg(jr, None, topic, event, payload))

    def garbage(self, raw: Frame) -> None:
        before = self.core.statistics()
        self.core.receive(raw, self.now)
        after = self.core.statistics()
        assert after.frames_received == before.frames_received + 1
        self.drain()

    # -- invariants ----------------------------------------------------------------------

    def check(self) -> None:
        self.check_pushes()
        self.check_statistics()

    def check_pushes(self) -> None:
        live = {id(c): c for c in self.core.channels()}
        for push in self.pushes:
            ends = self.push_ends.get(id(push), [])
            cancelled = id(push) in self.cancelled
            assert len(ends) + cancelled <= 1, (push, ends, cancelled)
            channel = push.channel
            in_pending = any(p is push for c in live.values() for p in c.pending.values())
            in_buffer = any(p is push for c in live.values() for p in c.buffer)
            if push.done:
                assert len(ends) + cancelled == 1, (push, ends)
                assert not in_pending
                assert not in_buffer
            else:
                assert not ends
                assert id(channel) in live
                assert in_pending != in_buffer
                if in_pending:
                    assert push.ref is not None
                    assert channel.pending[push.ref] is push
                else:
                    assert push.ref is None

    def check_statistics(self) -> None:
        stats = self.core.statistics()
        channels = self.core.channels()
        assert stats.state is self.core.state
        assert stats.channels == len(channels)
        assert stats.pending_replies == sum(len(c.pending) for c in channels) + len(self.pings)
        assert stats.buffered_pushes == sum(len(c.buffer) for c in channels)
        for channel in channels:
            assert channel.state is not ChannelState.CLOSED
            assert self.channel_ends.get(id(channel), 0) == 0
            for ref, push in channel.pending.items():
                assert push.ref == ref
                assert not push.done
            if channel.state is ChannelState.JOINED:
                assert not channel.buffer
            if not self.core.connected:
                assert channel.state in (ChannelState.JOINING, ChannelState.ERRORED)
                assert all(p.kind is not PushKind.USER for p in channel.pending.values())
        for channel in self.channels:
            assert self.channel_ends.get(id(channel), 0) <= 1
            if self.channel_ends.get(id(channel)):
                assert channel.state is ChannelState.CLOSED
                assert channel not in channels

    def finish(self) -> None:
        self.core.close()
        self.drain()
        for push in self.pushes:
            assert push.done
        for channel in self.channels:
            if channel.join_called:
                assert self.channel_ends.get(id(channel)) == 1
            assert channel.state is ChannelState.CLOSED
        assert self.core.statistics().pending_replies == 0
        assert self.core.next_deadline() is None


def give_up_after_two(attempt: int) -> float | None:
    return 0.01 if attempt < 3 else None


TRANSPORT_ACTIONS = ["connect", "connect", "start", "open", "fail", "lose"]
CLOSE_CODES = [None, 1000, 1001, 1006, 1011]
STEPS = [0.0, 0.005, 0.01, 0.5, 1.0, 2.5, 5.0, 10.0, 31.0, -1.0]
JOIN_PARAMS: list[Any] = [None, {"p": 1}, {"bad": {1}}]
JOIN_TIMEOUTS: list[Any] = ["default", "default", None, 2.0]
PUSH_EVENTS = ["msg", "msg", "phx_reply", "e" * 256]
PUSH_PAYLOADS: list[Any] = [{}, {"n": 1}, b"\x01", {"bad": {1}}]
PUSH_TIMEOUTS: list[Any] = ["default", None, 0.0, 3.0]
COMMANDS = ["cancel", "cancel", "leave", "ping", "close"]
REPLY_STATUSES = ["ok", "ok", "error", "accepted"]
REPLY_JOIN_REFS = ["same", "same", "null", "stale"]
SERVER_TOPICS = [*TOPICS, "phoenix", "room:zzz"]
SERVER_EVENTS = ["news", "phx_error", "phx_close", "phx_reply"]
SERVER_JOIN_REFS = ["current", "current", "null", "stale", "empty"]
SERVER_PAYLOADS: list[Any] = [{}, {"reason": "channel_crash"}, b"\x02", [1], None]

garbage_frames = (
    st.text(max_size=40)
    | st.binary(max_size=40)
    | st.lists(
        st.none() | st.text(max_size=3) | st.integers() | st.sampled_from(TOPICS), max_size=6
    ).map(json.dumps)
)


class CoreMachine(RuleBasedStateMachine):
    """The model as a Hypothesis state machine (shrinks to a minimal failing program)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = CoreModel()

    @initialize(
        heartbeat=st.sampled_from([None, 30.0]),
        timeout=st.sampled_from([None, 1.0, 10.0]),
        clean=st.booleans(),
        v1=st.booleans(),
        give_up=st.booleans(),
        connect=st.booleans(),
    )
    def setup(
        self,
        heartbeat: float | None,
        timeout: float | None,
        clean: bool,
        v1: bool,
        give_up: bool,
        connect: bool,
    ) -> None:
        self.model = CoreModel(
            heartbeat=heartbeat,
            timeout=timeout,
            clean=clean,
            v1=v1,
            give_up=give_up,
            connect=connect,
        )

    @rule(action=st.sampled_from(TRANSPORT_ACTIONS), code=st.sampled_from(CLOSE_CODES))
    def transport(self, action: str, code: int | None) -> None:
        self.model.transport(action, code)

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step: float) -> None:
        self.model.advance(step)

    @rule(
        topic=st.sampled_from(TOPICS),
        params=st.sampled_from(JOIN_PARAMS),
        timeout=st.sampled_from(JOIN_TIMEOUTS),
    )
    def join(self, topic: str, params: Any, timeout: Any) -> None:
        self.model.join(topic, params, timeout)

    @rule(
        index=st.integers(min_value=0, max_value=50),
        event=st.sampled_from(PUSH_EVENTS),
        payload=st.sampled_from(PUSH_PAYLOADS),
        timeout=st.sampled_from(PUSH_TIMEOUTS),
    )
    def push(self, index: int, event: str, payload: Any, timeout: Any) -> None:
        self.model.push(index, event, payload, timeout)

    @rule(action=st.sampled_from(COMMANDS), index=st.integers(min_value=0, max_value=50))
    def command(self, action: str, index: int) -> None:
        self.model.command(action, index)

    @rule(status=st.sampled_from(["ok", "ok", "ok", "error"]))
    def server_answers_joins(self, status: str) -> None:
        self.model.server_answers_joins(status)

    @rule(
        index=st.integers(min_value=0, max_value=3) | st.integers(min_value=0, max_value=200),
        status=st.sampled_from(REPLY_STATUSES),
        join_ref=st.sampled_from(REPLY_JOIN_REFS),
        binary=st.booleans(),
    )
    def server_replies(self, index: int, status: str, join_ref: str, binary: bool) -> None:
        self.model.server_replies(index, status, join_ref, binary)

    @rule(
        topic=st.sampled_from(SERVER_TOPICS),
        event=st.sampled_from(SERVER_EVENTS),
        join_ref=st.sampled_from(SERVER_JOIN_REFS),
        payload=st.sampled_from(SERVER_PAYLOADS),
    )
    def server_sends(self, topic: str, event: str, join_ref: str, payload: Any) -> None:
        self.model.server_sends(topic, event, join_ref, payload)

    @rule(raw=garbage_frames)
    def garbage(self, raw: Frame) -> None:
        self.model.garbage(raw)

    @invariant()
    def consistent(self) -> None:
        self.model.check()

    def teardown(self) -> None:
        self.model.finish()


CoreMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_core_machine = CoreMachine.TestCase

# Weighted actions for long random walks: the state machine above explores short programs
# evenly; these walks spend most steps where the protocol is busy (joined channels, pushes,
# replies), and reach deep states (rejoin backoff, buffered pushes flushed on rejoin).
WALK: list[tuple[int, Callable[[CoreModel, random.Random], None]]] = [
    (6, lambda w, r: w.transport(r.choice(TRANSPORT_ACTIONS), r.choice(CLOSE_CODES))),
    (10, lambda w, r: w.advance(r.choice(STEPS))),
    (6, lambda w, r: w.join(r.choice(TOPICS), r.choice(JOIN_PARAMS), r.choice(JOIN_TIMEOUTS))),
    (
        16,
        lambda w, r: w.push(
            r.randrange(64),
            r.choice(PUSH_EVENTS),
            r.choice(PUSH_PAYLOADS),
            r.choice(PUSH_TIMEOUTS),
        ),
    ),
    (
        5,
        lambda w, r: w.command(
            r.choice(["cancel", "cancel", "leave", "leave", "ping"]), r.randrange(64)
        ),
    ),
    (8, lambda w, r: w.server_answers_joins(r.choice(["ok", "ok", "ok", "error"]))),
    (
        16,
        lambda w, r: w.server_replies(
            r.randrange(4), r.choice(REPLY_STATUSES), r.choice(REPLY_JOIN_REFS), r.random() < 0.2
        ),
    ),
    (
        6,
        lambda w, r: w.server_sends(
            r.choice(SERVER_TOPICS),
            r.choice(SERVER_EVENTS),
            r.choice(SERVER_JOIN_REFS),
            r.choice(SERVER_PAYLOADS),
        ),
    ),
    (2, lambda w, r: w.garbage(r.randbytes(r.randrange(12)))),
]


@settings(max_examples=100, deadline=None)
@given(
    rnd=st.randoms(use_true_random=True),
    heartbeat=st.sampled_from([None, 30.0]),
    timeout=st.sampled_from([None, 1.0, 10.0]),
    clean=st.booleans(),
    v1=st.booleans(),
)
def test_core_random_walk(
    rnd: random.Random, heartbeat: float | None, timeout: float | None, clean: bool, v1: bool
) -> None:
    model = CoreModel(heartbeat=heartbeat, timeout=timeout, clean=clean, v1=v1)
    weights = [weight for weight, _ in WALK]
    actions = [action for _, action in WALK]
    for _ in range(250):
        (action,) = rnd.choices(actions, weights)
        action(model, rnd)
    model.finish()


def test_cancel_ping_forgets_it() -> None:
    core = connected_core()
    ref = core.ping(1.0)
    assert core.statistics().pending_replies == 1
    core.cancel_ping(ref)
    core.cancel_ping(ref)  # idempotent
    assert core.statistics().pending_replies == 0
    core.receive(f'[null,"{ref}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]', 2.0)
    assert [type(event) for event in core.events()] == [FrameDropped]  # not a PingReplied
