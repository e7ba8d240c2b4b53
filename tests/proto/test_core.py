"""SocketCore, driven through its public calls only, with explicit ``now`` values.

The server side of every exchange is written out as the exact V2 frames Phoenix sends
(protocol.md §2, §3, §13); what the core writes is decoded with the server-role serializer and
compared field by field (or compared as exact text where phoenix.js's tests do).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, overload

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from trio_phoenix.proto import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_TIMEOUT,
    ChannelClosed,
    ChannelCore,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    CloseTransport,
    EncodeError,
    Event,
    FrameDropped,
    JoinFailed,
    LocalProtocolError,
    Message,
    MessageReceived,
    PhoenixError,
    PingLost,
    PingReplied,
    Push,
    PushFailed,
    PushKind,
    PushReplied,
    PushTimedOut,
    ReconnectDue,
    ReconnectScheduled,
    RejoinScheduled,
    RemoteProtocolError,
    Serializer,
    SocketClosed,
    SocketCore,
    SocketState,
    SocketStatistics,
    V1JSONSerializer,
    V2JSONSerializer,
    phoenix_reconnect_after,
)
from trio_phoenix.proto._core import STABLE_CONNECTION
from trio_phoenix.proto._serializer import Frame

SERVER = V2JSONSerializer("server")
TOPIC = "room:1"
TRANSPORT_CLOSED = {"source": "transport", "reason": "connection_closed"}
TRANSPORT_HEARTBEAT = {"source": "transport", "reason": "heartbeat_timeout"}
CLIENT_JOIN_TIMEOUT = {"source": "client", "reason": "join_timeout"}

# -- helpers ---------------------------------------------------------------------------------


def frame(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    """A V2 text frame exactly as Phoenix (Jason) writes it."""
    return json.dumps([join_ref, ref, topic, event, payload], separators=(",", ":"))


def reply(
    join_ref: str | None,
    ref: str | None,
    topic: str = TOPIC,
    status: str = "ok",
    response: Any = None,
) -> str:
    payload = {"response": {} if response is None else response, "status": status}
    return frame(join_ref, ref, topic, "phx_reply", payload)


def m(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> Message:
    return Message(join_ref=join_ref, ref=ref, topic=topic, event=event, payload=payload)


def ok_reply(join_ref: str | None, ref: str | None, topic: str = TOPIC) -> Message:
    """The decoded form of ``reply(join_ref, ref, topic)``."""
    return m(join_ref, ref, topic, "phx_reply", {"response": {}, "status": "ok"})


def sent(core: SocketCore) -> list[Message]:
    """Take what the core wrote, decoded as the server would."""
    return [SERVER.decode(f) for f in core.data_to_send()]


def new_core(**kwargs: Any) -> SocketCore:
    kwargs.setdefault("heartbeat_interval", None)
    return SocketCore(**kwargs)


def connect(core: SocketCore, now: float = 0.0) -> None:
    core.connection_started(now)
    core.connection_opened(now)


def connected_core(now: float = 0.0, **kwargs: Any) -> SocketCore:
    core = new_core(**kwargs)
    connect(core, now)
    return core


def join_ok(
    core: SocketCore, topic: str = TOPIC, now: float = 0.0, params: Any = None, **kwargs: Any
) -> ChannelCore:
    """Create and join a channel, answer its join with ok, and drain frames and events."""
    channel = core.channel(topic, params, **kwargs)
    core.join(channel, now)
    (join,) = sent(core)
    assert join.event == "phx_join"
    core.receive(reply(join.ref, join.ref, topic), now)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert state(channel) is ChannelState.JOINED
    return channel


def stats(core: SocketCore) -> SocketStatistics:
    return core.statistics()


# Read state through calls, so that mypy does not narrow it across the calls that change it.
@overload
def state(obj: SocketCore) -> SocketState: ...
@overload
def state(obj: ChannelCore) -> ChannelState: ...
def state(obj: SocketCore | ChannelCore) -> SocketState | ChannelState:
    return obj.state


def done(push: Push) -> bool:
    return push.done


def connected(core: SocketCore) -> bool:
    return core.connected


def has_data(core: SocketCore) -> bool:
    return core.has_data_to_send


# -- construction and introspection ----------------------------------------------------------


def test_defaults() -> None:
    core = SocketCore()
    assert DEFAULT_TIMEOUT == 10.0
    assert DEFAULT_HEARTBEAT_INTERVAL == 30.0
    assert core.timeout == 10.0
    assert core.heartbeat_interval == 30.0
    assert core.reconnect_on_clean_close is True
    assert isinstance(core.serializer, V2JSONSerializer)
    assert core.serializer.role == "client"
    assert state(core) is SocketState.IDLE
    assert not connected(core)
    assert core.channels() == []
    assert core.next_deadline() is None
    assert core.data_to_send() == []
    assert core.events() == []
    assert stats(core) == SocketStatistics(
        state=SocketState.IDLE,
        channels=0,
        pending_replies=0,
        buffered_pushes=0,
        frames_received=0,
        frames_sent=0,
        malformed_frames=0,
        dropped_messages=0,
        heartbeats_sent=0,
        heartbeat_timeouts=0,
        connects=0,
        disconnects=0,
    )


@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
def test_bad_heartbeat_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="heartbeat_interval must be positive or None"):
        SocketCore(heartbeat_interval=interval)


@pytest.mark.parametrize("timeout", [-0.001, float("nan")])
def test_bad_timeouts(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be a non-negative number"):
        SocketCore(timeout=timeout)
    core = new_core()
    with pytest.raises(ValueError, match="timeout must be a non-negative number"):
        core.channel(TOPIC, timeout=timeout)


def test_channel_needs_a_string_topic() -> None:
    with pytest.raises(TypeError, match="topic must be a string, got int"):
        new_core().channel(1)  # type: ignore[arg-type]


def test_channel_defaults() -> None:
    core = new_core(timeout=3.0)
    channel = core.channel(TOPIC)
    assert channel.topic == TOPIC
    assert channel.params == {}
    assert channel.timeout == 3.0
    assert state(channel) is ChannelState.CLOSED
    assert channel.join_ref is None
    assert core.channel(TOPIC, timeout=None).timeout is None
    assert core.channel(TOPIC, {"a": 1}, timeout=0).params == {"a": 1}
    # A channel is registered with the socket only when joined.
    assert core.channels() == []
    assert repr(channel) == "<trio_phoenix.proto.ChannelCore 'room:1' closed join_ref=None>"


def test_make_ref_counts_from_one() -> None:
    core = new_core()
    assert [core.make_ref() for _ in range(3)] == ["1", "2", "3"]


def test_data_and_events_are_taken_once() -> None:
    core = connected_core()
    assert has_data(core) is False
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert has_data(core) is True
    assert len(core.data_to_send()) == 1
    assert has_data(core) is False
    assert core.data_to_send() == []
    core.receive(reply("1", "1"), 0)
    assert len(core.events()) == 1
    assert core.events() == []


# -- connection lifecycle --------------------------------------------------------------------


def test_connect_open_lose() -> None:
    core = new_core()
    core.connection_started(0)
    assert state(core) is SocketState.CONNECTING
    assert not connected(core)
    core.connection_opened(1)
    assert state(core) is SocketState.CONNECTED
    assert connected(core)
    assert stats(core).connects == 1
    core.connection_lost(2, 1006)
    assert state(core) is SocketState.WAITING
    assert core.events() == [ReconnectScheduled(0.01, 1)]
    assert core.next_deadline() == 2.01
    assert stats(core).disconnects == 1


def test_lifecycle_misuse() -> None:
    core = new_core()
    with pytest.raises(LocalProtocolError, match="a connection cannot open while idle"):
        core.connection_opened(0)
    with pytest.raises(LocalProtocolError, match="a connection cannot fail while idle"):
        core.connection_failed(0)
    core.connection_started(0)
    with pytest.raises(LocalProtocolError, match="cannot start connecting while connecting"):
        core.connection_started(0)
    core.connection_opened(0)
    with pytest.raises(LocalProtocolError, match="cannot start connecting while connected"):
        core.connection_started(0)
    with pytest.raises(LocalProtocolError, match="a connection cannot open while connected"):
        core.connection_opened(0)
    with pytest.raises(LocalProtocolError, match="a connection cannot fail while connected"):
        core.connection_failed(0)
    assert core.events() == []


def test_connection_lost_is_ignored_unless_connected() -> None:
    core = new_core()
    core.connection_lost(0, 1006)
    assert state(core) is SocketState.IDLE
    core.connection_started(0)
    core.connection_lost(0, 1006)
    assert state(core) is SocketState.CONNECTING
    core.connection_failed(0)
    core.events()
    core.connection_lost(0, 1006)
    assert state(core) is SocketState.WAITING
    assert core.events() == []
    assert stats(core).disconnects == 0


def test_reconnect_backoff_across_repeated_failures_and_reset_after_a_stable_connection() -> None:
    core = new_core()
    now = 0.0
    core.connection_started(now)
    delays = []
    for attempt in range(1, 13):
        core.connection_failed(now)
        assert state(core) is SocketState.WAITING
        (event,) = core.events()
        assert isinstance(event, ReconnectScheduled)
        assert event.attempt == attempt
        delays.append(round(event.delay * 1000))
        deadline = core.next_deadline()
        assert deadline == now + event.delay
        core.handle_timers(deadline - 0.001)
        assert core.events() == []
        now = deadline
        core.handle_timers(now)
        assert core.events() == [ReconnectDue()]
        assert state(core) is SocketState.WAITING
        assert core.next_deadline() is None
        core.connection_started(now)
    assert delays == [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000, 5000]
    # A connection lost at once does not restart the backoff (no reconnect storm) ...
    core.connection_opened(now)
    core.connection_lost(now + STABLE_CONNECTION - 0.001, 1011)
    assert core.events() == [ReconnectScheduled(5.0, 13)]
    # ... one that lived STABLE_CONNECTION seconds does.
    now += 10 * STABLE_CONNECTION
    core.handle_timers(now)
    core.connection_started(now)
    core.connection_opened(now)
    core.connection_lost(now + STABLE_CONNECTION, 1011)
    assert core.events() == [ReconnectDue(), ReconnectScheduled(0.01, 1)]


def test_connecting_early_cancels_the_reconnect_timer() -> None:
    core = new_core()
    core.connection_started(0)
    core.connection_failed(0)
    assert core.next_deadline() == 0.01
    core.connection_started(0.005)
    assert core.next_deadline() is None
    core.handle_timers(1)
    assert core.events() == [ReconnectScheduled(0.01, 1)]
    # The early attempt did not count as a fired attempt.
    core.connection_failed(1)
    assert core.events() == [ReconnectScheduled(0.01, 1)]


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 1011, 1012])
def test_reconnect_on_any_close_by_default(code: int | None) -> None:
    core = connected_core()
    core.connection_lost(5, code)
    assert state(core) is SocketState.WAITING
    assert core.events() == [ReconnectScheduled(0.01, 1)]


def test_no_reconnect_on_clean_close_when_asked() -> None:
    core = connected_core(reconnect_on_clean_close=False)
    channel = join_ok(core)
    core.connection_lost(5, 1000)
    assert state(core) is SocketState.DISCONNECTED
    assert core.events() == [ChannelErrored(channel.topic, TRANSPORT_CLOSED, channel=channel)]
    assert core.next_deadline() is None
    # The application may still connect again; the channel rejoins then.
    connect(core, 6)
    assert sent(core) == [m("2", "2", TOPIC, "phx_join", {})]


def test_unclean_close_reconnects_even_without_clean_reconnect() -> None:
    core = connected_core(reconnect_on_clean_close=False)
    core.connection_lost(5, 1001)
    assert core.events() == [ReconnectScheduled(0.01, 1)]


def test_reconnect_after_none_gives_up() -> None:
    calls: list[int] = []

    def twice(attempt: int) -> float | None:
        calls.append(attempt)
        return 1.0 if attempt <= 2 else None

    core = new_core(reconnect_after=twice)
    core.connection_started(0)
    core.connection_failed(0)
    assert core.events() == [ReconnectScheduled(1.0, 1)]
    core.handle_timers(1)
    core.connection_started(1)
    core.connection_failed(1)
    assert core.events() == [ReconnectDue(), ReconnectScheduled(1.0, 2)]
    core.handle_timers(2)
    core.connection_started(2)
    core.connection_failed(2)
    assert core.events() == [ReconnectDue()]
    assert state(core) is SocketState.DISCONNECTED
    assert core.next_deadline() is None
    assert calls == [1, 2, 3]
    # The application may try again by hand; a stable connection resets the attempts.
    core.connection_started(3)
    core.connection_opened(3)
    core.connection_lost(3 + STABLE_CONNECTION)
    assert state(core) is SocketState.WAITING
    assert core.events() == [ReconnectScheduled(1.0, 1)]
    assert calls == [1, 2, 3, 1]


def test_reconnect_after_none_gives_up_on_a_lost_connection() -> None:
    core = connected_core(reconnect_after=lambda attempt: None)
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    assert state(core) is SocketState.DISCONNECTED
    assert core.events() == [ChannelErrored(channel.topic, TRANSPORT_CLOSED, channel=channel)]
    assert core.next_deadline() is None


# -- refs and frames -------------------------------------------------------------------------


def test_refs_and_join_refs_on_the_wire() -> None:
    core = connected_core()
    channel = core.channel(TOPIC, {"user": "a"})
    core.join(channel, 0)
    assert core.data_to_send() == ['["1","1","room:1","phx_join",{"user":"a"}]']
    assert channel.join_ref == "1"
    core.receive(reply("1", "1"), 0)
    core.events()
    core.push(channel, "new_msg", {"body": "hi"}, 0)
    core.push(channel, "new_msg", {"body": "again"}, 0)
    assert core.data_to_send() == [
        '["1","2","room:1","new_msg",{"body":"hi"}]',
        '["1","3","room:1","new_msg",{"body":"again"}]',
    ]
    other = core.channel("room:2")
    core.join(other, 0)
    assert sent(core) == [m("4", "4", "room:2", "phx_join", {})]
    core.leave(channel, 0)
    assert sent(core) == [m("1", "5", TOPIC, "phx_leave", {})]
    assert stats(core).frames_sent == 5


def test_first_heartbeat_frame_is_exactly_phoenix_js() -> None:
    core = SocketCore()
    connect(core, 0)
    assert core.next_deadline() == 30.0
    core.handle_timers(30)
    assert core.data_to_send() == ['[null,"1","phoenix","heartbeat",{}]']
    assert stats(core).heartbeats_sent == 1


# -- heartbeat -------------------------------------------------------------------------------


def test_heartbeat_schedule_follows_replies() -> None:
    core = SocketCore()
    connect(core, 100)
    core.handle_timers(129.999)
    assert core.data_to_send() == []
    core.handle_timers(130)
    assert sent(core) == [m(None, "1", "phoenix", "heartbeat", {})]
    assert core.next_deadline() == 160
    # The reply restarts the interval from its arrival (interval + round trip).
    core.receive(reply(None, "1", "phoenix"), 131)
    assert core.events() == []
    assert core.next_deadline() == 161
    core.handle_timers(160.5)
    assert core.data_to_send() == []
    core.handle_timers(161)
    assert sent(core) == [m(None, "2", "phoenix", "heartbeat", {})]
    assert stats(core).heartbeats_sent == 2
    assert stats(core).dropped_messages == 0


def test_heartbeat_status_is_not_inspected() -> None:
    core = SocketCore()
    connect(core, 0)
    core.handle_timers(30)
    core.data_to_send()
    core.receive(reply(None, "1", "phoenix", "error", {"reason": "whatever"}), 31)
    assert core.events() == []
    assert core.next_deadline() == 61


def test_missed_heartbeat_closes_at_two_intervals() -> None:
    core = SocketCore()
    connect(core, 0)
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    core.receive(reply("1", "1"), 0)
    push = core.push(channel, "slow", {}, 0, timeout=None)
    ping = core.ping(0)
    core.events()
    core.data_to_send()
    core.handle_timers(30)
    assert sent(core) == [m(None, "4", "phoenix", "heartbeat", {})]
    core.handle_timers(59.999)
    assert core.events() == []
    assert connected(core)
    core.handle_timers(60)
    assert core.events() == [
        CloseTransport(1000, "heartbeat timeout"),
        PingLost(ping),
        PushFailed(push, "reply_lost", TRANSPORT_HEARTBEAT),
        ChannelErrored(channel.topic, TRANSPORT_HEARTBEAT, channel=channel),
        ReconnectScheduled(0.01, 1),
    ]
    assert state(core) is SocketState.WAITING
    assert state(channel) is ChannelState.ERRORED
    assert stats(core).heartbeat_timeouts == 1
    assert stats(core).disconnects == 1
    assert stats(core).pending_replies == 0
    # The I/O layer reports the close it made: nothing more happens.
    core.connection_lost(60.1, 1000)
    assert core.events() == []
    assert stats(core).disconnects == 1
    assert core.next_deadline() == 60.01
    # A late heartbeat reply is not mistaken for anything.
    core.receive(reply(None, "4", "phoenix"), 60.005)
    assert core.events() == [FrameDropped("unknown_topic", ok_reply(None, "4", "phoenix"))]


def test_pending_heartbeat_is_reset_on_reconnect() -> None:
    core = SocketCore()
    connect(core, 0)
    core.handle_timers(30)
    assert sent(core) == [m(None, "1", "phoenix", "heartbeat", {})]
    core.connection_lost(31, 1006)
    core.handle_timers(31.01)
    core.connection_started(31.01)
    core.connection_opened(32)
    core.events()
    assert core.next_deadline() == 62
    core.handle_timers(62)
    # A new heartbeat, not a timeout for the one lost with the old connection.
    assert sent(core) == [m(None, "2", "phoenix", "heartbeat", {})]
    assert core.events() == []
    # The old heartbeat's reply does not count for the new one.
    core.receive(reply(None, "1", "phoenix"), 63)
    assert [type(e) for e in core.events()] == [FrameDropped]
    core.handle_timers(92)
    assert core.events()[0] == CloseTransport(1000, "heartbeat timeout")


def test_no_heartbeat_while_disconnected() -> None:
    core = SocketCore()
    connect(core, 0)
    core.connection_lost(10, 1006)
    core.events()
    assert core.next_deadline() == 10.01  # the reconnect only
    core.handle_timers(100)
    assert core.data_to_send() == []
    assert core.events() == [ReconnectDue()]


def test_heartbeats_disabled() -> None:
    core = new_core()
    connect(core, 0)
    assert core.next_deadline() is None
    core.handle_timers(1000)
    assert core.data_to_send() == []


def test_heartbeat_reply_on_another_topic_is_still_routed() -> None:
    # phoenix.js matches the pending heartbeat on the ref alone.
    core = SocketCore()
    connect(core, 0)
    channel = join_ok(core)
    core.handle_timers(30)
    assert sent(core) == [m(None, "2", "phoenix", "heartbeat", {})]
    core.receive(frame(None, "2", TOPIC, "odd", {}), 31)
    assert core.events() == [MessageReceived(channel, m(None, "2", TOPIC, "odd", {}))]
    assert core.next_deadline() == 61


# -- join ------------------------------------------------------------------------------------


def test_join_ok() -> None:
    core = connected_core()
    channel = core.channel(TOPIC, {"user": "a"})
    push = core.join(channel, 0)
    assert isinstance(push, Push)
    assert push.kind is PushKind.JOIN
    assert push.event == "phx_join"
    assert push.ref == "1"
    assert repr(push) == "<trio_phoenix.proto.Push join 'phx_join' on 'room:1' ref=1>"
    assert state(channel) is ChannelState.JOINING
    assert core.channels() == [channel]
    assert stats(core).pending_replies == 1
    assert core.next_deadline() == 10.0
    core.receive(reply("1", "1", response={"welcome": True}), 1)
    assert core.events() == [
        ChannelJoined(channel.topic, {"welcome": True}, False, channel=channel)
    ]
    assert state(channel) is ChannelState.JOINED
    assert channel.joined_once
    assert stats(core).pending_replies == 0
    assert core.next_deadline() is None
    # The join timeout no longer fires.
    core.handle_timers(100)
    assert core.events() == []


def test_first_join_error_ends_the_channel() -> None:
    core = connected_core()
    channel = core.channel("room:x")
    core.join(channel, 0)
    buffered = core.push(channel, "early", {}, 0)
    sent(core)
    core.receive(reply("1", "1", "room:x", "error", {"reason": "unauthorized"}), 0)
    assert core.events() == [
        JoinFailed(channel, "error", {"reason": "unauthorized"}, True),
        PushFailed(buffered, "channel_closed", "join_failed"),
        ChannelEnded(channel.topic, "join_failed", {"reason": "unauthorized"}, channel=channel),
    ]
    assert state(channel) is ChannelState.CLOSED
    assert core.channels() == []
    assert core.next_deadline() is None
    assert core.data_to_send() == []
    assert stats(core).pending_replies == 0
    with pytest.raises(ChannelClosed, match="join_failed") as info:
        core.push(channel, "late", {}, 0)
    assert info.value.reason == "join_failed"
    assert info.value.topic == "room:x"


def test_first_join_unmatched_topic() -> None:
    # §13 C: the server answers an unknown topic with a null join_ref.
    core = connected_core()
    channel = core.channel("nope")
    core.join(channel, 0)
    sent(core)
    core.receive(reply(None, "1", "nope", "error", {"reason": "unmatched topic"}), 0)
    assert core.events() == [
        JoinFailed(channel, "error", {"reason": "unmatched topic"}, True),
        ChannelEnded(channel.topic, "join_failed", {"reason": "unmatched topic"}, channel=channel),
    ]


def test_rejoin_errors_retry_with_the_rejoin_backoff() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    assert core.events() == [
        ChannelErrored(channel.topic, TRANSPORT_CLOSED, channel=channel),
        ReconnectScheduled(0.01, 1),
    ]
    core.handle_timers(1.01)
    core.events()
    core.connection_started(1.01)
    core.connection_opened(2)
    (join,) = sent(core)
    assert join == m("2", "2", TOPIC, "phx_join", {})
    now = 2.0
    delays = []
    for attempt in range(1, 6):
        core.receive(reply(join.ref, join.ref, status="error", response={"r": attempt}), now)
        events = core.events()
        assert events[0] == JoinFailed(channel, "error", {"r": attempt}, False)
        scheduled = events[1]
        assert isinstance(scheduled, RejoinScheduled)
        assert events == [
            events[0],
            RejoinScheduled(channel.topic, scheduled.delay, attempt, channel=channel),
        ]
        assert state(channel) is ChannelState.ERRORED
        delays.append(scheduled.delay)
        core.handle_timers(now + scheduled.delay - 0.001)
        assert core.data_to_send() == []
        now += scheduled.delay
        core.handle_timers(now)
        (join,) = sent(core)
        assert join.event == "phx_join"
        assert join.join_ref == join.ref == channel.join_ref
        assert state(channel) is ChannelState.JOINING
    assert delays == [1.0, 2.0, 5.0, 10.0, 10.0]
    core.receive(reply(join.ref, join.ref), now)
    assert core.events() == [ChannelJoined(channel.topic, {}, True, channel=channel)]
    # A successful join resets the rejoin backoff.
    core.receive(frame(join.ref, join.ref, TOPIC, "phx_error", {"reason": "channel_crash"}), now)
    assert core.events()[-1] == RejoinScheduled(channel.topic, 1.0, 1, channel=channel)


def test_first_join_timeout_sends_leave_and_ends() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {})]
    core.handle_timers(9.999)
    assert core.events() == []
    core.handle_timers(10)
    assert sent(core) == [m("1", "2", TOPIC, "phx_leave", {})]
    assert core.events() == [ChannelEnded(channel.topic, "join_timeout", None, channel=channel)]
    assert core.channels() == []
    assert stats(core).pending_replies == 0
    assert core.next_deadline() is None
    # A late join reply is for a channel that is gone.
    core.receive(reply("1", "1"), 11)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_topic"]


def test_first_join_timeout_while_disconnected_sends_nothing() -> None:
    core = new_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert core.data_to_send() == []
    assert core.next_deadline() == 10
    core.handle_timers(10)
    assert core.data_to_send() == []
    assert core.events() == [ChannelEnded(channel.topic, "join_timeout", None, channel=channel)]
    assert core.channels() == []


def test_join_while_disconnected_is_sent_on_open_and_keeps_its_deadline() -> None:
    core = new_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert channel.join_ref is None
    assert stats(core).pending_replies == 0
    core.connection_started(5)
    core.connection_opened(6)
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {})]
    assert core.next_deadline() == 10  # not restarted at 6
    core.receive(reply("1", "1"), 9)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]


def test_join_while_disconnected_times_out_from_join_time() -> None:
    core = new_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    core.connection_started(5)
    core.connection_opened(6)
    sent(core)
    core.handle_timers(10)
    assert sent(core) == [m("1", "2", TOPIC, "phx_leave", {})]
    assert core.events() == [ChannelEnded(channel.topic, "join_timeout", None, channel=channel)]


def test_rejoin_timeout_after_a_successful_join() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.events()
    core.connection_started(2)
    core.connection_opened(2)
    assert sent(core) == [m("2", "2", TOPIC, "phx_join", {})]
    assert core.next_deadline() == 12  # a rejoin gets a fresh timeout
    core.handle_timers(12)
    assert sent(core) == [m("2", "3", TOPIC, "phx_leave", {})]
    assert core.events() == [
        ChannelErrored(channel.topic, CLIENT_JOIN_TIMEOUT, channel=channel),
        RejoinScheduled(channel.topic, 1.0, 1, channel=channel),
    ]
    assert state(channel) is ChannelState.ERRORED
    assert channel.join_ref is None
    assert stats(core).pending_replies == 0
    # The late reply to the timed-out join is stale.
    core.receive(reply("2", "2"), 12.5)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["stale_join_ref"]
    core.handle_timers(13)
    assert sent(core) == [m("4", "4", TOPIC, "phx_join", {})]
    core.receive(reply("4", "4"), 13.5)
    assert core.events() == [ChannelJoined(channel.topic, {}, True, channel=channel)]


def test_join_timeout_none_waits_forever() -> None:
    core = connected_core(timeout=None)
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {})]
    assert core.next_deadline() is None
    core.connection_lost(1, 1006)
    core.events()
    core.connection_started(2)
    core.connection_opened(2)
    assert sent(core) == [m("2", "2", TOPIC, "phx_join", {})]
    assert core.next_deadline() is None


def test_join_misuse_raises_before_sending() -> None:
    core = connected_core()
    channel = join_ok(core)
    before = stats(core)
    with pytest.raises(LocalProtocolError, match="tried to join 'room:1' multiple times"):
        core.join(channel, 0)
    twin = core.channel(TOPIC)
    with pytest.raises(LocalProtocolError, match="already has a joined channel"):
        core.join(twin, 0)
    bad = core.channel("room:2", {"x": object()})
    with pytest.raises(EncodeError):
        core.join(bad, 0)
    assert state(bad) is ChannelState.CLOSED
    assert core.data_to_send() == []
    assert core.events() == []
    assert stats(core) == before
    assert core.channels() == [channel]
    core.close()
    core.events()
    with pytest.raises(SocketClosed):
        core.join(core.channel("room:3"), 0)
    assert core.data_to_send() == []


def test_join_replaces_a_leaving_channel() -> None:
    core = connected_core()
    old = join_ok(core)
    leave = core.leave(old, 0)
    assert leave is not None
    assert sent(core) == [m("1", "2", TOPIC, "phx_leave", {})]
    new = core.channel(TOPIC)
    core.join(new, 1)
    assert core.events() == [ChannelEnded(old.topic, "left", None, channel=old)]
    assert sent(core) == [m("3", "3", TOPIC, "phx_join", {})]
    assert core.channels() == [new]
    # The old leave's reply and phx_close carry the old join ref: stale for the new channel.
    core.receive(reply("1", "2"), 1)
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 1)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == [
        "stale_join_ref",
        "stale_join_ref",
    ]
    core.receive(reply("3", "3"), 1)
    assert core.events() == [ChannelJoined(new.topic, {}, False, channel=new)]


def test_join_that_cannot_be_encoded_leaves_a_leaving_channel_alone() -> None:
    core = connected_core()
    old = join_ok(core)
    leave = core.leave(old, 0)
    sent(core)
    with pytest.raises(EncodeError):
        core.join(core.channel(TOPIC, {"bad": object()}), 1)
    assert core.events() == []
    assert core.channels() == [old]
    assert state(old) is ChannelState.LEAVING
    core.receive(reply("1", "2"), 1)
    assert core.events() == [ChannelEnded(old.topic, "left", None, channel=old)]
    assert leave is not None
    assert leave.ref == "2"


def test_duplicate_join_close_sequence_as_a_client_sees_it() -> None:
    # §13 E: after a rejoin, Phoenix replies to the new join and then closes the old join ref.
    core = connected_core()
    channel = join_ok(core)  # join ref "1"
    core.connection_lost(1, 1006)
    core.events()
    core.connection_started(1)
    core.connection_opened(1)
    assert sent(core) == [m("2", "2", TOPIC, "phx_join", {})]
    core.receive(reply("2", "2"), 1)
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 1)
    assert core.events() == [
        ChannelJoined(channel.topic, {}, True, channel=channel),
        FrameDropped("stale_join_ref", m("1", "1", TOPIC, "phx_close", {})),
    ]
    assert state(channel) is ChannelState.JOINED
    assert core.channels() == [channel]


# -- phx_error and phx_close -----------------------------------------------------------------


def test_phx_error_errors_fails_pending_and_rejoins() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "new_msg", {"body": "hi"}, 0)
    assert sent(core) == [m("1", "2", TOPIC, "new_msg", {"body": "hi"})]
    core.receive(frame("1", "1", TOPIC, "phx_error", {"reason": "channel_crash"}), 2)
    assert core.events() == [
        PushFailed(push, "reply_lost", {"reason": "channel_crash"}),
        ChannelErrored(channel.topic, {"reason": "channel_crash"}, channel=channel),
        RejoinScheduled(channel.topic, 1.0, 1, channel=channel),
    ]
    assert done(push)
    assert state(channel) is ChannelState.ERRORED
    assert stats(core).pending_replies == 0
    # A second error while errored is dropped.
    core.receive(frame(None, None, TOPIC, "phx_error", {}), 2.5)
    assert core.events() == [
        FrameDropped("already_errored", m(None, None, TOPIC, "phx_error", {}))
    ]
    core.handle_timers(2.999)
    assert core.data_to_send() == []
    core.handle_timers(3)
    assert sent(core) == [m("3", "3", TOPIC, "phx_join", {})]
    # The lost push's late reply now carries a stale join ref.
    core.receive(reply("1", "2"), 3)
    assert core.events() == [FrameDropped("stale_join_ref", ok_reply("1", "2"))]
    core.receive(reply("3", "3"), 3)
    assert core.events() == [ChannelJoined(channel.topic, {}, True, channel=channel)]


def test_phx_error_during_the_first_join_keeps_its_deadline() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    sent(core)
    core.receive(frame("1", "1", TOPIC, "phx_error", {"reason": "channel_crash"}), 2)
    assert core.events() == [
        ChannelErrored(channel.topic, {"reason": "channel_crash"}, channel=channel),
        RejoinScheduled(channel.topic, 1.0, 1, channel=channel),
    ]
    assert channel.join_ref is None
    core.handle_timers(3)
    assert sent(core) == [m("2", "2", TOPIC, "phx_join", {})]
    core.handle_timers(10)
    assert sent(core) == [m("2", "3", TOPIC, "phx_leave", {})]
    assert core.events() == [ChannelEnded(channel.topic, "join_timeout", None, channel=channel)]


def test_first_join_deadline_while_errored() -> None:
    core = connected_core(rejoin_after=lambda attempt: 20.0)
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    sent(core)
    core.receive(frame("1", "1", TOPIC, "phx_error", {}), 2)
    core.events()
    core.handle_timers(10)
    assert core.data_to_send() == []  # nothing in flight: no leave
    assert core.events() == [ChannelEnded(channel.topic, "join_timeout", None, channel=channel)]
    assert core.next_deadline() is None


def test_phx_close_ends_the_channel_without_rejoin() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "new_msg", {}, 0)
    sent(core)
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 1)
    assert core.events() == [
        PushFailed(push, "channel_closed", "server_closed"),
        ChannelEnded(channel.topic, "server_closed", {}, channel=channel),
    ]
    assert state(channel) is ChannelState.CLOSED
    assert channel.close_reason == "server_closed"
    assert core.channels() == []
    assert core.next_deadline() is None
    assert stats(core).pending_replies == 0
    with pytest.raises(ChannelClosed, match=r"channel 'room:1' is closed \(server_closed\)"):
        core.push(channel, "x", {}, 1)


def test_phx_close_fails_buffered_pushes() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    buffered = core.push(channel, "early", {}, 0)
    assert stats(core).buffered_pushes == 1
    core.receive(frame(None, None, TOPIC, "phx_close", {}), 1)
    assert core.events() == [
        PushFailed(buffered, "channel_closed", "server_closed"),
        ChannelEnded(channel.topic, "server_closed", {}, channel=channel),
    ]
    assert stats(core) == SocketStatistics(
        state=SocketState.CONNECTED,
        channels=0,
        pending_replies=0,
        buffered_pushes=0,
        frames_received=1,
        frames_sent=1,
        malformed_frames=0,
        dropped_messages=0,
        heartbeats_sent=0,
        heartbeat_timeouts=0,
        connects=1,
        disconnects=0,
    )
    core.handle_timers(100)
    assert core.events() == []
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {})]


# -- routing and drops -----------------------------------------------------------------------


def test_stale_join_ref_is_dropped_null_and_empty_pass() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.receive(frame("99", None, TOPIC, "news", {"a": 1}), 1)
    core.receive(frame(None, None, TOPIC, "news", {"a": 2}), 1)
    core.receive(frame("", None, TOPIC, "news", {"a": 3}), 1)
    core.receive(frame("1", None, TOPIC, "news", {"a": 4}), 1)
    core.receive(bytes([0, 0, 6, 4]) + b"room:1news\x07", 1)  # binary push, join_ref ""
    assert core.events() == [
        FrameDropped("stale_join_ref", m("99", None, TOPIC, "news", {"a": 1})),
        MessageReceived(channel, m(None, None, TOPIC, "news", {"a": 2})),
        MessageReceived(channel, m("", None, TOPIC, "news", {"a": 3})),
        MessageReceived(channel, m("1", None, TOPIC, "news", {"a": 4})),
        MessageReceived(channel, m("", None, TOPIC, "news", b"\x07")),
    ]
    assert stats(core).dropped_messages == 1
    assert stats(core).frames_received == 6


def test_replies_for_unknown_refs_and_other_topics_are_dropped() -> None:
    core = connected_core()
    a = join_ok(core, "room:a")
    b = join_ok(core, "room:b")
    push = core.push(a, "ask", {}, 0)
    (frame_a,) = sent(core)
    assert frame_a == m("1", "3", "room:a", "ask", {})
    # Same ref on the wrong topic, an unknown ref, a null ref.
    core.receive(reply("2", "3", "room:b"), 1)
    core.receive(reply("1", "77", "room:a"), 1)
    core.receive(reply("1", None, "room:a"), 1)
    events = core.events()
    assert [e.reason for e in events if isinstance(e, FrameDropped)] == ["unknown_ref"] * 3
    assert len(events) == 3
    assert stats(core).pending_replies == 1
    core.receive(reply("1", "3", "room:a", response={"answer": 42}), 2)
    assert core.events() == [PushReplied(push, "ok", {"answer": 42})]
    assert state(b) is ChannelState.JOINED


@pytest.mark.parametrize(
    "raw",
    ["not json", "[1,2]", '{"a":1}', b"\x09", b"", '["1","1",5,"e",{}]'],
)
def test_malformed_frames_are_dropped(raw: str | bytes) -> None:
    core = connected_core()
    channel = join_ok(core)
    core.receive(raw, 1)
    (event,) = core.events()
    assert isinstance(event, FrameDropped)
    assert event.reason == "malformed"
    assert event.message is None
    assert isinstance(event.error, RemoteProtocolError)
    assert stats(core).malformed_frames == 1
    assert stats(core).dropped_messages == 0
    # The socket keeps working.
    core.receive(frame(None, None, TOPIC, "ok", {}), 1)
    assert core.events() == [MessageReceived(channel, m(None, None, TOPIC, "ok", {}))]


def test_unknown_topic_is_dropped() -> None:
    core = connected_core()
    core.receive(frame(None, None, "room:zzz", "news", {}), 0)
    assert core.events() == [FrameDropped("unknown_topic", m(None, None, "room:zzz", "news", {}))]
    assert stats(core).dropped_messages == 1


@pytest.mark.parametrize(
    "payload",
    [{"response": {}}, {"status": 1, "response": {}}, ["ok"], "ok", None, {"status": None}],
)
def test_reply_without_a_string_status_is_dropped(payload: Any) -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "ask", {}, 0)
    core.receive(frame("1", "2", TOPIC, "phx_reply", payload), 1)
    assert core.events() == [FrameDropped("bad_reply", m("1", "2", TOPIC, "phx_reply", payload))]
    assert stats(core).pending_replies == 1
    assert not done(push)


def test_reply_with_custom_status_and_no_response() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "ask", {}, 0)
    core.receive(frame("1", "2", TOPIC, "phx_reply", {"status": "accepted"}), 1)
    assert core.events() == [PushReplied(push, "accepted", None)]


def test_server_messages_are_delivered_in_any_live_state() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    core.receive(frame(None, None, TOPIC, "early", {}), 0)
    assert core.events() == [MessageReceived(channel, m(None, None, TOPIC, "early", {}))]


# -- pushes ----------------------------------------------------------------------------------


def test_push_while_joined() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "new_msg", {"body": "hi"}, 0)
    assert push.kind is PushKind.USER
    assert push.ref == "2"
    assert not done(push)
    assert repr(push) == "<trio_phoenix.proto.Push push 'new_msg' on 'room:1' ref=2>"
    assert sent(core) == [m("1", "2", TOPIC, "new_msg", {"body": "hi"})]
    assert stats(core).pending_replies == 1
    assert core.next_deadline() == 10
    core.receive(reply("1", "2", status="error", response={"reason": "nope"}), 1)
    assert core.events() == [PushReplied(push, "error", {"reason": "nope"})]
    assert done(push)
    assert stats(core).pending_replies == 0
    assert core.next_deadline() is None


def test_push_timeout() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "ask", {}, 0, timeout=2.5)
    sent(core)
    core.handle_timers(2.4)
    assert core.events() == []
    core.handle_timers(2.5)
    assert core.events() == [PushTimedOut(push)]
    assert done(push)
    assert stats(core).pending_replies == 0
    core.receive(reply("1", "2"), 3)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_ref"]


def test_push_timeouts_default_to_the_channel_timeout() -> None:
    core = connected_core(timeout=7.0)
    channel = join_ok(core, timeout=4.0)
    core.push(channel, "a", {}, 0)
    assert core.next_deadline() == 4.0
    sent(core)
    no_timeout = join_ok(core, "room:2", timeout=None)
    core.push(no_timeout, "b", {}, 0)
    core.push(channel, "c", {}, 0, timeout=None)
    core.push(channel, "d", {}, 0, timeout=0)
    core.handle_timers(0)
    assert [type(e) for e in core.events()] == [PushTimedOut]
    core.handle_timers(4)
    assert [type(e) for e in core.events()] == [PushTimedOut]
    core.handle_timers(1e9)
    assert core.events() == []
    assert stats(core).pending_replies == 2


def test_pushes_are_buffered_while_joining_and_sent_in_order_after_join() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {})]
    first = core.push(channel, "a", {"n": 1}, 0)
    second = core.push(channel, "b", {"n": 2}, 0)
    assert first.ref is None
    assert core.data_to_send() == []
    assert stats(core).buffered_pushes == 2
    assert stats(core).pending_replies == 1  # the join
    core.receive(reply("1", "1"), 1)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert sent(core) == [m("1", "2", TOPIC, "a", {"n": 1}), m("1", "3", TOPIC, "b", {"n": 2})]
    assert [p.ref for p in (first, second)] == ["2", "3"]
    assert stats(core).buffered_pushes == 0
    assert stats(core).pending_replies == 2
    core.receive(reply("1", "3"), 2)
    core.receive(reply("1", "2"), 2)
    assert core.events() == [PushReplied(second, "ok", {}), PushReplied(first, "ok", {})]


def test_buffered_push_keeps_its_deadline() -> None:
    # Documented deviation: phoenix.js restarts the timeout when a buffered push is sent.
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    push = core.push(channel, "a", {}, 0, timeout=8)
    core.receive(reply("1", "1"), 5)
    core.events()
    assert sent(core)[-1] == m("1", "2", TOPIC, "a", {})
    core.handle_timers(8)
    assert core.events() == [PushTimedOut(push)]


def test_timed_out_buffered_pushes_are_never_sent() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    sent(core)
    early = core.push(channel, "early", {}, 0, timeout=1)
    late = core.push(channel, "late", {}, 0, timeout=20)
    core.handle_timers(1)
    assert core.events() == [PushTimedOut(early)]
    assert stats(core).buffered_pushes == 1
    core.receive(reply("1", "1"), 5)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert sent(core) == [m("1", "2", TOPIC, "late", {})]
    assert late.ref == "2"


def test_push_while_disconnected_waits_for_the_rejoin() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.events()
    push = core.push(channel, "offline", {"x": 1}, 1.5, timeout=None)
    assert core.data_to_send() == []
    core.connection_started(2)
    core.connection_opened(2)
    assert sent(core) == [m("2", "2", TOPIC, "phx_join", {})]
    core.receive(reply("2", "2"), 2)
    assert sent(core) == [m("2", "3", TOPIC, "offline", {"x": 1})]
    core.receive(reply("2", "3"), 2)
    assert core.events() == [
        ChannelJoined(channel.topic, {}, True, channel=channel),
        PushReplied(push, "ok", {}),
    ]


def test_join_error_keeps_the_buffer() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.connection_started(1)
    core.connection_opened(1)
    push = core.push(channel, "held", {}, 1, timeout=None)
    core.receive(reply("2", "2", status="error"), 1)
    assert stats(core).buffered_pushes == 1
    core.handle_timers(2)
    core.receive(reply("3", "3"), 2)
    core.events()
    assert [f.event for f in sent(core)] == ["phx_join", "phx_join", "held"]
    assert push.ref == "4"


def test_payload_changed_after_buffering_fails_at_flush() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    payload: dict[str, Any] = {"ok": 1}
    push = core.push(channel, "a", payload, 0)
    kept = core.push(channel, "b", {}, 0)
    payload["bad"] = object()
    core.receive(reply("1", "1"), 1)
    events = core.events()
    assert events[0] == ChannelJoined(channel.topic, {}, False, channel=channel)
    failed = events[1]
    assert isinstance(failed, PushFailed)
    assert failed.push is push
    assert failed.reason == "encode_error"
    assert isinstance(failed.detail, EncodeError)
    assert len(events) == 2
    assert done(push)
    # The failed push consumed ref "2" (refs need not be contiguous, as in phoenix.js).
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {}), m("1", "3", TOPIC, "b", {})]
    assert kept.ref == "3"
    assert stats(core).pending_replies == 1
    core.handle_timers(100)
    assert core.events() == [PushTimedOut(kept)]


def test_cancel_push_leaves_nothing_behind() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    join = core.join(channel, 0)
    buffered = core.push(channel, "buffered", {}, 0)
    core.cancel_push(buffered)
    assert done(buffered)
    assert stats(core).buffered_pushes == 0
    core.cancel_push(join)  # joins and leaves cannot be cancelled this way
    assert stats(core).pending_replies == 1
    core.receive(reply("1", "1"), 1)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {})]  # the buffered push never went
    pending = core.push(channel, "pending", {}, 1)
    assert stats(core).pending_replies == 1
    core.cancel_push(pending)
    core.cancel_push(pending)  # twice is fine
    assert stats(core).pending_replies == 0
    assert stats(core).buffered_pushes == 0
    assert sent(core) == [m("1", "2", TOPIC, "pending", {})]  # already written stays written
    core.receive(reply("1", "2"), 2)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_ref"]
    core.handle_timers(100)
    assert core.events() == []  # no timeout for cancelled pushes
    replied = core.push(channel, "x", {}, 100)
    core.receive(reply("1", "3"), 100)
    core.events()
    core.cancel_push(replied)  # after it ended: nothing happens
    assert core.events() == []


@pytest.mark.parametrize("event", ["phx_join", "phx_leave", "phx_reply", "phx_error", "phx_close"])
def test_reserved_events_cannot_be_pushed(event: str) -> None:
    core = connected_core()
    channel = join_ok(core)
    with pytest.raises(LocalProtocolError, match="is reserved by the Phoenix protocol"):
        core.push(channel, event, {}, 0)
    assert core.data_to_send() == []


def test_push_misuse_raises_before_sending() -> None:
    core = connected_core()
    never_joined = core.channel("room:0")
    with pytest.raises(LocalProtocolError, match="tried to push 'x' to 'room:0' before joining"):
        core.push(never_joined, "x", {}, 0)
    joined = join_ok(core)
    joining = core.channel("room:2")
    core.join(joining, 0)
    sent(core)
    before = stats(core)
    for channel in (joined, joining):
        with pytest.raises(TypeError, match="event must be a string, got int"):
            core.push(channel, 5, {}, 0)  # type: ignore[arg-type]
        with pytest.raises(EncodeError, match="not JSON-serializable"):
            core.push(channel, "x", {"x": {1, 2}}, 0)
        with pytest.raises(EncodeError, match="unable to convert event to binary"):
            core.push(channel, "e" * 256, b"data", 0)
        with pytest.raises(ValueError, match="timeout must be a non-negative number"):
            core.push(channel, "x", {}, 0, timeout=-1)
    assert core.data_to_send() == []
    assert core.events() == []
    assert stats(core) == before
    assert stats(core).pending_replies == 1  # the join of room:2
    assert stats(core).buffered_pushes == 0
    core.leave(joined, 0)
    sent(core)
    with pytest.raises(ChannelClosed, match=r"\(left\)"):
        core.push(joined, "x", {}, 0)  # leaving
    core.receive(reply("1", "3"), 0)
    with pytest.raises(ChannelClosed, match=r"\(left\)"):
        core.push(joined, "x", {}, 0)  # closed
    core.close()
    with pytest.raises(SocketClosed):
        core.push(joining, "x", {}, 0)
    assert core.data_to_send() == []


# -- leave -----------------------------------------------------------------------------------


def test_leave_waits_for_the_reply() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.leave(channel, 1)
    assert push is not None
    assert push.kind is PushKind.LEAVE
    assert sent(core) == [m("1", "2", TOPIC, "phx_leave", {})]
    assert state(channel) is ChannelState.LEAVING
    assert core.leave(channel, 1) is push  # leaving already
    assert core.data_to_send() == []
    core.receive(reply("1", "2"), 2)
    assert core.events() == [ChannelEnded(channel.topic, "left", None, channel=channel)]
    assert state(channel) is ChannelState.CLOSED
    assert core.channels() == []
    assert core.leave(channel, 3) is None  # closed
    # Phoenix's phx_close that follows the reply is expected: not a dropped message.
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 2)
    assert core.events() == []
    assert stats(core).dropped_messages == 0
    # A second one is.
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 2)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_topic"]
    assert stats(core).dropped_messages == 1


def left_channel_core() -> SocketCore:
    """A connected core whose channel on TOPIC joined, left, and had its leave acknowledged."""
    core = connected_core()
    channel = join_ok(core)
    core.leave(channel, 1)
    sent(core)
    core.receive(reply("1", "2"), 1)
    core.events()
    return core


def test_phx_close_after_a_leave_with_the_topic_joined_again() -> None:
    core = left_channel_core()
    again = join_ok(core)
    assert again.join_ref == "3"
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 2)  # the old channel's
    assert core.events() == []
    assert stats(core).dropped_messages == 0
    assert state(again) is ChannelState.JOINED


def test_null_phx_close_after_a_leave() -> None:
    # A server that kept no join ref (a V1 join) closes with [null, null, ...].
    core = left_channel_core()
    core.receive(frame(None, None, TOPIC, "phx_close", {}), 2)
    assert core.events() == []
    assert stats(core).dropped_messages == 0


def test_null_phx_close_with_the_topic_joined_again_closes_the_new_channel() -> None:
    core = left_channel_core()
    again = join_ok(core)
    core.receive(frame(None, None, TOPIC, "phx_close", {}), 2)
    assert core.events() == [ChannelEnded(again.topic, "server_closed", {}, channel=again)]


def test_a_lost_connection_forgets_the_left_channels() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.leave(channel, 1)
    sent(core)
    core.receive(reply("1", "2"), 1)
    core.connection_lost(2, 1006)
    core.events()
    connect(core, 3)
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 4)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_topic"]


def test_leave_timeout_closes_anyway() -> None:
    core = connected_core()
    channel = join_ok(core, timeout=3)
    core.leave(channel, 1)
    sent(core)
    core.handle_timers(3.999)
    assert core.events() == []
    core.handle_timers(4)
    assert core.events() == [ChannelEnded(channel.topic, "left", None, channel=channel)]
    assert stats(core).pending_replies == 0
    assert core.data_to_send() == []


def test_leave_without_timeout() -> None:
    core = connected_core()
    channel = join_ok(core, timeout=None)
    core.leave(channel, 1)
    assert core.next_deadline() is None
    core.connection_lost(2, 1006)
    assert core.events() == [
        ChannelEnded(channel.topic, "left", None, channel=channel),
        ReconnectScheduled(0.01, 1),
    ]


def test_leave_fails_pending_pushes_after_the_reply() -> None:
    core = connected_core()
    channel = join_ok(core)
    answered = core.push(channel, "a", {}, 0)
    unanswered = core.push(channel, "b", {}, 0)
    core.leave(channel, 0)
    assert [f.event for f in sent(core)] == ["a", "b", "phx_leave"]
    core.receive(reply("1", "2"), 1)  # the push was handled before the leave
    core.receive(reply("1", "4"), 1)  # the leave
    assert core.events() == [
        PushReplied(answered, "ok", {}),
        PushFailed(unanswered, "channel_closed", "left"),
        ChannelEnded(channel.topic, "left", None, channel=channel),
    ]


def test_leave_while_disconnected_closes_at_once() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.events()
    buffered = core.push(channel, "held", {}, 1)
    assert core.leave(channel, 2) is None
    assert core.events() == [
        PushFailed(buffered, "channel_closed", "left"),
        ChannelEnded(channel.topic, "left", None, channel=channel),
    ]
    assert core.data_to_send() == []
    core.connection_started(3)
    core.connection_opened(3)
    assert core.data_to_send() == []  # no rejoin


def test_leave_while_joining_sends_leave_for_the_join_in_flight() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    sent(core)
    core.leave(channel, 1)
    assert sent(core) == [m("1", "2", TOPIC, "phx_leave", {})]
    assert stats(core).pending_replies == 1  # the leave only
    core.receive(reply("1", "1"), 1)  # the join's late ok is ignored
    core.receive(reply("1", "2"), 1)
    assert core.events() == [
        FrameDropped("unknown_ref", ok_reply("1", "1")),
        ChannelEnded(channel.topic, "left", None, channel=channel),
    ]
    core.handle_timers(100)
    assert core.events() == []


def test_leave_while_joining_before_the_join_went_out() -> None:
    core = new_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert core.leave(channel, 1) is None
    assert core.events() == [ChannelEnded(channel.topic, "left", None, channel=channel)]
    connect(core, 2)
    assert core.data_to_send() == []
    assert core.next_deadline() is None


def test_leave_while_errored_after_a_crash() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.receive(frame("1", "1", TOPIC, "phx_error", {}), 1)
    core.events()
    core.leave(channel, 1.5)
    # The join ref of the crashed channel is still named; Phoenix answers an unknown leave ok.
    assert sent(core) == [m("1", "2", TOPIC, "phx_leave", {})]
    core.handle_timers(5)  # no rejoin
    assert core.data_to_send() == []
    core.receive(reply("1", "2"), 5)
    assert core.events() == [ChannelEnded(channel.topic, "left", None, channel=channel)]


def test_phx_error_while_leaving_ends_the_channel() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.leave(channel, 1)
    core.receive(frame("1", "1", TOPIC, "phx_error", {"reason": "channel_crash"}), 1)
    assert core.events() == [
        ChannelEnded(channel.topic, "left", {"reason": "channel_crash"}, channel=channel)
    ]
    assert stats(core).pending_replies == 0


def test_phx_close_while_leaving() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.leave(channel, 1)
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 1)
    assert core.events() == [ChannelEnded(channel.topic, "server_closed", {}, channel=channel)]


# -- ping ------------------------------------------------------------------------------------


def test_ping_reports_round_trip() -> None:
    core = connected_core()
    ref = core.ping(10)
    assert ref == "1"
    assert core.data_to_send() == ['[null,"1","phoenix","heartbeat",{}]']
    assert stats(core).pending_replies == 1
    core.receive(reply(None, "1", "phoenix"), 10.25)
    assert core.events() == [PingReplied("1", 0.25)]
    assert stats(core).pending_replies == 0
    # Pings are not periodic heartbeats.
    assert stats(core).heartbeats_sent == 0


def test_ping_reply_on_another_topic_is_still_routed() -> None:
    core = connected_core()
    channel = join_ok(core)
    ref = core.ping(1)
    core.receive(frame(None, ref, TOPIC, "odd", {}), 2)
    assert core.events() == [
        PingReplied(ref, 1.0),
        MessageReceived(channel, m(None, ref, TOPIC, "odd", {})),
    ]


def test_ping_lost_on_disconnect_and_refused_while_disconnected() -> None:
    core = new_core()
    with pytest.raises(SocketClosed, match="cannot ping: the socket is idle"):
        core.ping(0)
    connect(core)
    first = core.ping(0)
    second = core.ping(0)
    core.connection_lost(1, 1006)
    assert core.events() == [PingLost(first), PingLost(second), ReconnectScheduled(0.01, 1)]
    assert stats(core).pending_replies == 0
    with pytest.raises(SocketClosed, match="waiting"):
        core.ping(1)
    # A late pong is just an unknown message.
    core.receive(reply(None, first, "phoenix"), 2)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_topic"]


def test_ping_carries_its_waiter_to_its_reply_and_its_loss() -> None:
    class Recorder:
        def set_value(self, value: Any) -> None: ...
        def set_error(self, error: BaseException) -> None: ...

    core = connected_core()
    answered, lost = Recorder(), Recorder()
    ref = core.ping(0, answered)
    core.ping(0, lost)
    core.receive(reply(None, ref, "phoenix"), 1)
    (replied,) = core.events()
    assert isinstance(replied, PingReplied)
    assert replied.waiter is answered
    core.connection_lost(2, 1006)
    gone = core.events()[0]
    assert isinstance(gone, PingLost)
    assert gone.waiter is lost


def test_reconnect_due_from_the_timer_until_the_next_connection_starts() -> None:
    core = connected_core()

    def due() -> bool:
        return core.reconnect_due

    assert not due()
    core.connection_lost(1, 1006)
    assert core.events() == [ReconnectScheduled(0.01, 1)]
    assert not due()  # scheduled, not yet due
    core.handle_timers(1.01)
    assert core.events() == [ReconnectDue()]
    assert due()
    core.connection_started(1.02)
    assert not due()


def test_a_channel_core_is_a_handle_on_its_socket_core() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)

    def ended() -> bool:
        return channel.ended

    def join_called() -> bool:
        return channel.join_called

    assert not join_called()
    assert not ended()
    channel.join(0)
    assert join_called()
    core.receive(reply("1", "1", TOPIC), 0)
    core.events()
    push = channel.push("x", {}, 0)
    channel.cancel_push(push)
    assert stats(core).pending_replies == 0
    leave = channel.leave(0)
    assert leave is not None
    assert leave is channel.leave_push
    core.receive(reply("1", leave.ref, TOPIC), 0)
    assert ended()
    assert channel.close_reason == "left"


# -- close -----------------------------------------------------------------------------------


def test_close_ends_everything() -> None:
    core = SocketCore(timeout=None)
    connect(core)
    joined = join_ok(core)
    leaving = join_ok(core, "room:3")
    pending = core.push(joined, "a", {}, 0)
    joining = core.channel("room:2")
    core.join(joining, 0)
    buffered = core.push(joining, "b", {}, 0)
    core.leave(leaving, 0)
    ping = core.ping(0)
    core.handle_timers(30)  # a heartbeat in flight
    assert [f.event for f in sent(core)] == [
        "a",
        "phx_join",
        "phx_leave",
        "heartbeat",
        "heartbeat",
    ]
    unsent = core.push(joined, "unsent", {}, 30)
    assert core.events() == []
    core.close()
    assert state(core) is SocketState.CLOSED
    assert core.events() == [
        PingLost(ping),
        PushFailed(pending, "socket_closed", "socket_closed"),
        PushFailed(unsent, "socket_closed", "socket_closed"),
        ChannelEnded(joined.topic, "socket_closed", None, channel=joined),
        ChannelEnded(leaving.topic, "socket_closed", None, channel=leaving),
        PushFailed(buffered, "socket_closed", "socket_closed"),
        ChannelEnded(joining.topic, "socket_closed", None, channel=joining),
    ]
    assert core.data_to_send() == []  # the unsent frame is discarded
    assert core.channels() == []
    assert core.next_deadline() is None
    assert stats(core).pending_replies == 0
    assert stats(core).buffered_pushes == 0
    assert stats(core).disconnects == 1
    core.close()  # idempotent
    assert core.events() == []
    with pytest.raises(SocketClosed):
        core.connection_started(40)
    core.connection_lost(40, 1006)  # ignored
    core.receive(frame(None, None, TOPIC, "late", {}), 40)
    assert [type(e) for e in core.events()] == [FrameDropped]


def test_close_while_waiting() -> None:
    core = connected_core()
    core.connection_lost(1, 1006)
    core.events()
    core.close()
    assert core.events() == []
    assert core.next_deadline() is None
    assert stats(core).disconnects == 1


def test_close_before_connecting_ends_a_waiting_join() -> None:
    core = new_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    core.close()
    assert core.events() == [ChannelEnded(channel.topic, "socket_closed", None, channel=channel)]
    assert core.next_deadline() is None
    assert stats(core).disconnects == 0


# -- connection loss and channels ------------------------------------------------------------


def test_connection_loss_errors_channels_and_rejoins_on_open() -> None:
    core = connected_core()
    joined = join_ok(core, "room:a")
    joining = core.channel("room:b")
    core.join(joining, 0)
    pushed = core.push(joined, "x", {}, 0)
    sent(core)
    core.connection_lost(1, 1006)
    assert core.events() == [
        PushFailed(pushed, "reply_lost", TRANSPORT_CLOSED),
        ChannelErrored(joined.topic, TRANSPORT_CLOSED, channel=joined),
        ChannelErrored(joining.topic, TRANSPORT_CLOSED, channel=joining),
        ReconnectScheduled(0.01, 1),
    ]
    assert state(joined) is ChannelState.ERRORED
    assert state(joining) is ChannelState.ERRORED
    assert core.data_to_send() == []
    core.handle_timers(1.01)
    core.connection_started(1.01)
    core.connection_opened(1.02)
    assert sent(core) == [
        m("4", "4", "room:a", "phx_join", {}),
        m("5", "5", "room:b", "phx_join", {}),
    ]
    assert state(joined) is ChannelState.JOINING


def test_unsent_frames_are_discarded_on_loss() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    core.connection_lost(1, 1006)
    assert core.data_to_send() == []


def test_errored_channel_stays_errored_across_a_failed_reconnect() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.receive(frame("1", "1", TOPIC, "phx_error", {}), 1)
    core.connection_lost(1.5, 1006)
    core.events()
    core.handle_timers(3)  # the rejoin timer was cancelled with the connection
    assert core.data_to_send() == []
    core.connection_started(3)
    core.connection_failed(3)
    assert state(channel) is ChannelState.ERRORED
    core.handle_timers(3.05)
    core.connection_started(3.05)
    core.connection_opened(3.05)
    assert sent(core) == [m("2", "2", TOPIC, "phx_join", {})]


def test_frames_received_while_disconnected_are_routed() -> None:
    # A frame read just before the loss may be delivered after it.
    core = new_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    core.receive(frame(None, None, TOPIC, "phx_error", {}), 1)
    assert core.events() == [
        ChannelErrored(channel.topic, {}, channel=channel),
        RejoinScheduled(channel.topic, 1.0, 1, channel=channel),
    ]
    core.handle_timers(2)  # not connected: no rejoin yet
    assert core.data_to_send() == []
    connect(core, 3)
    assert sent(core) == [m("1", "1", TOPIC, "phx_join", {})]


# -- serializers through the core ------------------------------------------------------------


def test_v1_end_to_end() -> None:
    server = V1JSONSerializer("server")
    core = connected_core(serializer=V1JSONSerializer())
    channel = core.channel(TOPIC, {"u": 1})
    core.join(channel, 0)
    assert core.data_to_send() == [
        '{"event":"phx_join","payload":{"u":1},"ref":"1","topic":"room:1","join_ref":"1"}'
    ]

    def server_frame(ref: str | None, event: str, payload: Any) -> str:
        text = server.encode(m("ignored", ref, TOPIC, event, payload))
        assert isinstance(text, str)
        assert "join_ref" not in text
        return text

    core.receive(server_frame("1", "phx_reply", {"response": {}, "status": "ok"}), 0)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    push = core.push(channel, "new_msg", {"body": "hi"}, 0)
    assert core.data_to_send() == [
        '{"event":"new_msg","payload":{"body":"hi"},"ref":"2","topic":"room:1","join_ref":"1"}'
    ]
    core.receive(server_frame("2", "phx_reply", {"response": {"n": 1}, "status": "ok"}), 0)
    core.receive(server_frame(None, "new_msg", {"body": "hi"}), 0)
    assert core.events() == [
        PushReplied(push, "ok", {"n": 1}),
        MessageReceived(channel, m(None, None, TOPIC, "new_msg", {"body": "hi"})),
    ]
    with pytest.raises(EncodeError, match="V1 serializer cannot carry binary"):
        core.push(channel, "bin", b"\x00", 0)
    assert core.data_to_send() == []
    core.receive(server_frame("1", "phx_close", {}), 0)
    assert core.events() == [ChannelEnded(channel.topic, "server_closed", {}, channel=channel)]


def test_binary_push_and_reply() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "upload", b"\x01\x02\x03", 0)
    assert core.data_to_send() == [bytes([0, 1, 1, 6, 6]) + b"12room:1upload\x01\x02\x03"]
    binary_reply = SERVER.encode(
        m("1", "2", TOPIC, "phx_reply", {"status": "ok", "response": b"\x04\x05"})
    )
    assert binary_reply == bytes([1, 1, 1, 6, 2]) + b"12room:1ok\x04\x05"
    core.receive(binary_reply, 1)
    assert core.events() == [PushReplied(push, "ok", b"\x04\x05")]
    core.receive(SERVER.encode(m(None, None, TOPIC, "blob", b"\xff")), 1)
    core.receive(SERVER.encode(m("1", None, TOPIC, "blob", b"\xfe")), 1)
    assert core.events() == [
        MessageReceived(channel, m(None, None, TOPIC, "blob", b"\xff")),
        MessageReceived(channel, m("1", None, TOPIC, "blob", b"\xfe")),
    ]


def test_binary_push_buffered_then_sent() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    sent(core)
    core.push(channel, "upload", bytearray(b"\x09"), 0)
    core.receive(reply("1", "1"), 0)
    assert core.data_to_send() == [bytes([0, 1, 1, 6, 6]) + b"12room:1upload\x09"]


# -- statistics and exceptions ---------------------------------------------------------------


def test_statistics_count_frames() -> None:
    core = SocketCore()
    connect(core)
    join_ok(core)
    core.receive("garbage", 0)
    core.receive(frame(None, None, "nowhere", "x", {}), 0)
    core.handle_timers(30)
    core.events()
    assert stats(core) == SocketStatistics(
        state=SocketState.CONNECTED,
        channels=1,
        pending_replies=0,
        buffered_pushes=0,
        frames_received=3,
        frames_sent=2,
        malformed_frames=1,
        dropped_messages=1,
        heartbeats_sent=1,
        heartbeat_timeouts=0,
        connects=1,
        disconnects=0,
    )


def test_errors_are_phoenix_errors() -> None:
    for exc in (ChannelClosed("t", "left"), SocketClosed("closed"), EncodeError("x")):
        assert isinstance(exc, PhoenixError)
    closed = ChannelClosed("t", "server_closed", {"a": 1})
    assert closed.payload == {"a": 1}
    assert str(closed) == "channel 't' is closed (server_closed)"


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
                    m(ref, ref, channel.topic, "phx_reply", {"response": {}, "status": status})
                )

    def server_replies(self, index: int, status: str, join_ref: str, binary: bool) -> None:
        requests = [m for m in self.sent if m.ref is not None]
        if not requests:
            return
        request = requests[-1 - index % len(requests)]
        jr = {"same": request.join_ref, "null": None, "stale": "999"}[join_ref]
        response: Any = b"\x00" if binary and not self.v1 else {"r": 1}
        payload = {"response": response, "status": status}
        self.receive(m(jr, request.ref, request.topic, "phx_reply", payload))

    def server_sends(self, topic: str, event: str, join_ref: str, payload: Any) -> None:
        current = next((c.join_ref for c in self.core.channels() if c.topic == topic), None)
        jr = {"current": current, "null": None, "stale": "999", "empty": ""}[join_ref]
        if isinstance(payload, bytes) and self.v1:
            payload = {"bytes": "no"}
        elif isinstance(payload, bytes) and event == "phx_reply":
            payload = {"status": "ok", "response": payload}
        self.receive(m(jr, None, topic, event, payload))

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
