"""SocketCore's connection control: ``disconnect()``, ``connect()`` and ``reconnect()`` in every
socket state, driven synchronously with explicit ``now`` values."""

from __future__ import annotations

import pytest

from tests.proto.core_helpers import TOPIC, connected_core, reply, sent
from trio_phoenix.proto import (
    ChannelCore,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    DisconnectRequested,
    DropConnection,
    PushFailed,
    PushTimedOut,
    ReconnectDue,
    ReconnectScheduled,
    SocketClosed,
    SocketCore,
    SocketState,
)

DISCONNECT = {"source": "client", "reason": "disconnect"}
RECONNECT = {"source": "client", "reason": "reconnect"}


def due(core: SocketCore) -> bool:
    """``due(core)`` (a call, so that mypy does not narrow it across commands)."""
    return core.connect_due


def requested(core: SocketCore) -> bool:
    return core.disconnect_requested


def joined(core: SocketCore, now: float = 0.0) -> ChannelCore:
    channel = core.channel(TOPIC)
    push = core.join(channel, now)
    core.receive(reply(push.ref, push.ref), now)
    core.data_to_send()
    core.events()
    return channel


def waiting_core() -> SocketCore:
    core = SocketCore(heartbeat_interval=None)
    core.connection_started(0)
    core.connection_failed(0)
    assert core.events() == [ReconnectScheduled(0.01, 1)]
    return core


# -- disconnect ------------------------------------------------------------------------------


def test_disconnect_while_connected_keeps_channels_waiting() -> None:
    core = connected_core()
    channel = joined(core)
    pending = core.push(channel, "sent", {}, 1)
    core.data_to_send()
    core.disconnect(2)
    assert core.state is SocketState.DISCONNECTED
    assert requested(core)
    assert not due(core)
    assert not core.reconnect_due
    assert core.events() == [
        DisconnectRequested(),
        DropConnection(1000, "disconnect", graceful=True),
        PushFailed(pending, "reply_lost", DISCONNECT),
        ChannelErrored(TOPIC, DISCONNECT, channel=channel),
    ]
    assert channel.state is ChannelState.ERRORED
    assert core.next_deadline() is None  # no reconnect, no rejoin timer
    assert core.statistics().disconnects == 1
    # A push made meanwhile waits with its timeout running; nothing is written.
    buffered = core.push(channel, "later", {}, 3)
    assert core.data_to_send() == []
    assert core.next_deadline() == 13
    # The server's late frames and the transport's loss change nothing.
    core.connection_lost(4, 1000)
    assert core.state is SocketState.DISCONNECTED
    assert core.events() == []
    # connect(): due at once, the channel rejoins and the buffered push follows.
    core.connect(5)
    assert core.events() == [ReconnectDue()]
    assert due(core)
    assert not requested(core)
    core.connection_started(5)
    core.connection_opened(5)
    [join] = sent(core)
    assert (join.event, join.payload) == ("phx_join", {})
    core.receive(reply(join.ref, join.ref), 6)
    assert core.events() == [ChannelJoined(TOPIC, {}, True, channel=channel)]
    [push] = sent(core)
    assert push.event == "later"
    assert buffered.ref == push.ref


def test_buffered_pushes_time_out_while_disconnected() -> None:
    core = connected_core()
    channel = joined(core)
    core.disconnect(0)
    core.events()
    push = core.push(channel, "later", {}, 1, timeout=2)
    core.handle_timers(3)
    assert core.events() == [PushTimedOut(push)]


def test_disconnect_twice_does_nothing() -> None:
    core = connected_core()
    core.disconnect(1)
    core.events()
    core.disconnect(2)
    assert core.events() == []
    assert core.state is SocketState.DISCONNECTED


def test_disconnect_while_connecting_abandons_the_attempt() -> None:
    core = SocketCore(heartbeat_interval=None)
    core.connection_started(0)
    core.disconnect(1)
    assert core.events() == [
        DisconnectRequested(),
        DropConnection(1000, "disconnect", graceful=True),
    ]
    assert core.state is SocketState.DISCONNECTED
    assert core.statistics().disconnects == 0


def test_disconnect_while_waiting_cancels_the_reconnect() -> None:
    core = waiting_core()
    core.disconnect(0.005)
    assert core.events() == [DisconnectRequested()]
    assert core.next_deadline() is None
    core.handle_timers(1)
    assert core.events() == []


def test_disconnect_before_the_first_connection() -> None:
    core = SocketCore()
    assert due(core)  # idle: the first connection is due
    core.disconnect(0)
    assert core.events() == [DisconnectRequested()]
    assert not due(core)
    core.connect(1)
    assert core.events() == [ReconnectDue()]
    assert due(core)


def test_disconnect_after_the_policy_gave_up_marks_it_requested() -> None:
    core = SocketCore(reconnect_after=lambda attempt: None)
    core.connection_started(0)
    core.connection_failed(0)
    assert core.state is SocketState.DISCONNECTED
    assert not requested(core)
    core.disconnect(1)
    assert core.events() == [DisconnectRequested()]
    assert requested(core)


def test_connecting_by_hand_clears_the_request() -> None:
    core = connected_core()
    core.disconnect(1)
    core.connection_started(2)
    assert not requested(core)


# -- connect -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["idle", "connecting", "connected"])
def test_connect_does_nothing_while_connecting_or_connected(state: str) -> None:
    core = SocketCore(heartbeat_interval=None)
    if state != "idle":
        core.connection_started(0)
    if state == "connected":
        core.connection_opened(0)
    core.connect(1)
    assert core.events() == []
    assert core.state.value == state


def test_connect_while_waiting_skips_the_backoff_and_restarts_it() -> None:
    core = waiting_core()
    core.handle_timers(0.01)  # a second failure: the backoff moves on
    core.connection_started(0.01)
    core.connection_failed(0.01)
    assert core.events() == [ReconnectDue(), ReconnectScheduled(0.05, 2)]
    core.connect(0.02)
    assert core.events() == [ReconnectDue()]
    assert core.reconnect_due
    assert core.next_deadline() is None
    core.connection_started(0.02)
    core.connection_failed(0.02)
    assert core.events() == [ReconnectScheduled(0.01, 1)]  # started over


def test_connect_after_the_policy_gave_up() -> None:
    core = SocketCore(reconnect_after=lambda attempt: None)
    core.connection_started(0)
    core.connection_failed(0)
    core.connect(1)
    assert core.events() == [ReconnectDue()]


# -- reconnect ---------------------------------------------------------------------------------


def test_reconnect_while_connected_drops_and_connects_at_once() -> None:
    core = connected_core()
    channel = joined(core)
    core.reconnect(1)
    assert core.events() == [
        DropConnection(1000, "reconnect", graceful=False),
        ChannelErrored(TOPIC, RECONNECT, channel=channel),
        ReconnectDue(),
    ]
    assert core.state is SocketState.WAITING
    assert due(core)
    assert not requested(core)
    core.connection_started(1)
    core.connection_opened(1)
    [join] = sent(core)
    assert join.event == "phx_join"


def test_reconnect_while_connecting_starts_over() -> None:
    core = SocketCore()
    core.connection_started(0)
    core.reconnect(1)
    assert core.events() == [DropConnection(1000, "reconnect", graceful=False), ReconnectDue()]
    assert due(core)


def test_reconnect_while_waiting_connects_at_once() -> None:
    core = waiting_core()
    core.reconnect(0.001)
    assert core.events() == [ReconnectDue()]
    assert core.next_deadline() is None


@pytest.mark.parametrize("disconnected", [True, False], ids=["disconnected", "idle"])
def test_reconnect_does_nothing_after_disconnect_or_before_the_first_connection(
    disconnected: bool,
) -> None:
    core = SocketCore()
    if disconnected:
        core.disconnect(0)
        core.events()
    core.reconnect(1)
    assert core.events() == []
    assert core.state is (SocketState.DISCONNECTED if disconnected else SocketState.IDLE)


@pytest.mark.parametrize("command", ["disconnect", "connect", "reconnect"])
def test_commands_on_a_closed_socket_raise(command: str) -> None:
    core = connected_core()
    core.close()
    with pytest.raises(SocketClosed, match=f"cannot {command}"):
        getattr(core, command)(1)
