"""SocketCore's heartbeat and ``ping``: intervals, timeouts, replies that come late or never.

The helpers and the conventions are in ``tests/proto/core_helpers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.proto.core_helpers import (
    TOPIC,
    TRANSPORT_HEARTBEAT,
    connect,
    connected,
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
    ChannelErrored,
    ChannelState,
    CloseTransport,
    FrameDropped,
    MessageReceived,
    PingLost,
    PingReplied,
    PushFailed,
    ReconnectDue,
    ReconnectScheduled,
    SocketClosed,
    SocketCore,
    SocketState,
)

# -- heartbeat -------------------------------------------------------------------------------


def test_heartbeat_schedule_follows_replies() -> None:
    core = SocketCore()
    connect(core, 100)
    core.handle_timers(129.999)
    assert core.data_to_send() == []
    core.handle_timers(130)
    assert sent(core) == [msg(None, "1", "phoenix", "heartbeat", {})]
    assert core.next_deadline() == 160
    # The reply restarts the interval from its arrival (interval + round trip).
    core.receive(reply(None, "1", "phoenix"), 131)
    assert core.events() == []
    assert core.next_deadline() == 161
    core.handle_timers(160.5)
    assert core.data_to_send() == []
    core.handle_timers(161)
    assert sent(core) == [msg(None, "2", "phoenix", "heartbeat", {})]
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
    assert sent(core) == [msg(None, "4", "phoenix", "heartbeat", {})]
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
    assert sent(core) == [msg(None, "1", "phoenix", "heartbeat", {})]
    core.connection_lost(31, 1006)
    core.handle_timers(31.01)
    core.connection_started(31.01)
    core.connection_opened(32)
    core.events()
    assert core.next_deadline() == 62
    core.handle_timers(62)
    # A new heartbeat, not a timeout for the one lost with the old connection.
    assert sent(core) == [msg(None, "2", "phoenix", "heartbeat", {})]
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
    assert sent(core) == [msg(None, "2", "phoenix", "heartbeat", {})]
    core.receive(frame(None, "2", TOPIC, "odd", {}), 31)
    assert core.events() == [MessageReceived(channel, msg(None, "2", TOPIC, "odd", {}))]
    assert core.next_deadline() == 61


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
        MessageReceived(channel, msg(None, ref, TOPIC, "odd", {})),
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
