"""SocketCore's connection: construction, connecting and disconnecting, refs, closing.

The helpers and the conventions are in ``tests/proto/core_helpers.py``.
"""

from __future__ import annotations

import pytest

from tests.proto.core_helpers import (
    TOPIC,
    TRANSPORT_CLOSED,
    connect,
    connected,
    connected_core,
    frame,
    has_data,
    join_ok,
    msg,
    new_core,
    reply,
    sent,
    state,
    stats,
)
from trio_phoenix.proto import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_TIMEOUT,
    ChannelEnded,
    ChannelErrored,
    ChannelState,
    FrameDropped,
    LocalProtocolError,
    PingLost,
    PushFailed,
    ReconnectDue,
    ReconnectScheduled,
    SocketClosed,
    SocketCore,
    SocketState,
    SocketStatistics,
    V2JSONSerializer,
)
from trio_phoenix.proto._core import STABLE_CONNECTION

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
    assert sent(core) == [msg("2", "2", TOPIC, "phx_join", {})]


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
    assert sent(core) == [msg("4", "4", "room:2", "phx_join", {})]
    core.leave(channel, 0)
    assert sent(core) == [msg("1", "5", TOPIC, "phx_leave", {})]
    assert stats(core).frames_sent == 5


def test_first_heartbeat_frame_is_exactly_phoenix_js() -> None:
    core = SocketCore()
    connect(core, 0)
    assert core.next_deadline() == 30.0
    core.handle_timers(30)
    assert core.data_to_send() == ['[null,"1","phoenix","heartbeat",{}]']
    assert stats(core).heartbeats_sent == 1


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


def test_close_with_the_time_leaves_every_channel_without_waiting() -> None:
    core = SocketCore(timeout=None)
    connect(core)
    joined = join_ok(core)
    leaving = join_ok(core, "room:3")
    pending = core.push(joined, "a", {}, 0)
    joining = core.channel("room:2")
    core.join(joining, 0)
    core.leave(leaving, 0)
    assert [(f.event, f.topic) for f in sent(core)] == [
        ("a", TOPIC),
        ("phx_join", "room:2"),
        ("phx_leave", "room:3"),
    ]
    unsent = core.push(joined, "unsent", {}, 0)
    core.close(1.0)
    assert state(core) is SocketState.CLOSED
    # Each channel ends as left at once; what was queued goes out, then the leaves (the
    # channel already leaving sent its leave before).
    assert core.events() == [
        PushFailed(pending, "channel_closed", "left"),
        PushFailed(unsent, "channel_closed", "left"),
        ChannelEnded(joined.topic, "left", None, channel=joined),
        ChannelEnded(leaving.topic, "left", None, channel=leaving),
        ChannelEnded(joining.topic, "left", None, channel=joining),
    ]
    assert [(f.join_ref, f.event, f.topic) for f in sent(core)] == [
        ("1", "unsent", TOPIC),
        ("1", "phx_leave", TOPIC),
        ("4", "phx_leave", "room:2"),
    ]
    assert core.channels() == []
    assert core.next_deadline() is None
    assert stats(core).pending_replies == 0
    assert stats(core).disconnects == 1


def test_close_with_the_time_queues_the_leaves_without_pushes_or_timers() -> None:
    core = SocketCore(timeout=5.0)
    connect(core)
    joined = join_ok(core)
    core.close(1.0)
    assert core.next_deadline() is None  # no leave timer, nor any other
    assert joined.leave_push is None
    assert joined.pending == {}
    assert [(f.join_ref, f.ref, f.event) for f in sent(core)] == [("1", "2", "phx_leave")]


def test_close_with_the_time_sends_no_leave_for_a_join_not_sent() -> None:
    core = SocketCore(timeout=None)
    connect(core)
    waiting = core.channel(TOPIC, params_on_demand=True)
    core.join(waiting, 0)  # waits for its params: no join frame yet
    assert waiting.join_ref is None
    core.events()
    core.close(2.0)
    assert core.events() == [ChannelEnded(waiting.topic, "left", None, channel=waiting)]
    assert core.data_to_send() == []


def test_close_with_the_time_while_not_connected_ends_channels_as_socket_closed() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.events()
    core.close(2.0)
    assert core.events() == [ChannelEnded(channel.topic, "socket_closed", None, channel=channel)]
    assert core.data_to_send() == []


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
