"""SocketCore's channels leaving: ``leave``, its reply or timeout, and what is still pending.

The helpers and the conventions are in ``tests/proto/core_helpers.py``.
"""

from __future__ import annotations

from tests.proto.core_helpers import (
    TOPIC,
    connect,
    connected_core,
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
    ChannelEnded,
    ChannelState,
    FrameDropped,
    PushFailed,
    PushKind,
    PushReplied,
    ReconnectScheduled,
    SocketCore,
)

# -- leave -----------------------------------------------------------------------------------


def test_leave_waits_for_the_reply() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.leave(channel, 1)
    assert push is not None
    assert push.kind is PushKind.LEAVE
    assert sent(core) == [msg("1", "2", TOPIC, "phx_leave", {})]
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
    assert sent(core) == [msg("1", "2", TOPIC, "phx_leave", {})]
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
    assert sent(core) == [msg("1", "2", TOPIC, "phx_leave", {})]
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
