"""SocketCore's channels joining: join replies and timeouts, ``phx_error`` and ``phx_close``,
rejoin after a lost connection.

The helpers and the conventions are in ``tests/proto/core_helpers.py``.
"""

from __future__ import annotations

import pytest

from tests.proto.core_helpers import (
    CLIENT_JOIN_TIMEOUT,
    TOPIC,
    TRANSPORT_CLOSED,
    connect,
    connected_core,
    done,
    frame,
    join_ok,
    msg,
    new_core,
    ok_reply,
    reply,
    sent,
    state,
    stats,
)
from trio_phoenix.proto import (
    ChannelClosed,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    EncodeError,
    FrameDropped,
    JoinFailed,
    LocalProtocolError,
    Push,
    PushFailed,
    PushKind,
    ReconnectScheduled,
    RejoinScheduled,
    SocketClosed,
    SocketState,
    SocketStatistics,
)

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
    assert join == msg("2", "2", TOPIC, "phx_join", {})
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
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {})]
    core.handle_timers(9.999)
    assert core.events() == []
    core.handle_timers(10)
    assert sent(core) == [msg("1", "2", TOPIC, "phx_leave", {})]
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
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {})]
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
    assert sent(core) == [msg("1", "2", TOPIC, "phx_leave", {})]
    assert core.events() == [ChannelEnded(channel.topic, "join_timeout", None, channel=channel)]


def test_rejoin_timeout_after_a_successful_join() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.events()
    core.connection_started(2)
    core.connection_opened(2)
    assert sent(core) == [msg("2", "2", TOPIC, "phx_join", {})]
    assert core.next_deadline() == 12  # a rejoin gets a fresh timeout
    core.handle_timers(12)
    assert sent(core) == [msg("2", "3", TOPIC, "phx_leave", {})]
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
    assert sent(core) == [msg("4", "4", TOPIC, "phx_join", {})]
    core.receive(reply("4", "4"), 13.5)
    assert core.events() == [ChannelJoined(channel.topic, {}, True, channel=channel)]


def test_join_timeout_none_waits_forever() -> None:
    core = connected_core(timeout=None)
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {})]
    assert core.next_deadline() is None
    core.connection_lost(1, 1006)
    core.events()
    core.connection_started(2)
    core.connection_opened(2)
    assert sent(core) == [msg("2", "2", TOPIC, "phx_join", {})]
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
    assert sent(core) == [msg("1", "2", TOPIC, "phx_leave", {})]
    new = core.channel(TOPIC)
    core.join(new, 1)
    assert core.events() == [ChannelEnded(old.topic, "left", None, channel=old)]
    assert sent(core) == [msg("3", "3", TOPIC, "phx_join", {})]
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
    assert sent(core) == [msg("2", "2", TOPIC, "phx_join", {})]
    core.receive(reply("2", "2"), 1)
    core.receive(frame("1", "1", TOPIC, "phx_close", {}), 1)
    assert core.events() == [
        ChannelJoined(channel.topic, {}, True, channel=channel),
        FrameDropped("stale_join_ref", msg("1", "1", TOPIC, "phx_close", {})),
    ]
    assert state(channel) is ChannelState.JOINED
    assert core.channels() == [channel]


# -- phx_error and phx_close -----------------------------------------------------------------


def test_phx_error_errors_fails_pending_and_rejoins() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "new_msg", {"body": "hi"}, 0)
    assert sent(core) == [msg("1", "2", TOPIC, "new_msg", {"body": "hi"})]
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
        FrameDropped("already_errored", msg(None, None, TOPIC, "phx_error", {}))
    ]
    core.handle_timers(2.999)
    assert core.data_to_send() == []
    core.handle_timers(3)
    assert sent(core) == [msg("3", "3", TOPIC, "phx_join", {})]
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
    assert sent(core) == [msg("2", "2", TOPIC, "phx_join", {})]
    core.handle_timers(10)
    assert sent(core) == [msg("2", "3", TOPIC, "phx_leave", {})]
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
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {})]


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
        msg("4", "4", "room:a", "phx_join", {}),
        msg("5", "5", "room:b", "phx_join", {}),
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
    assert sent(core) == [msg("2", "2", TOPIC, "phx_join", {})]


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
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {})]
