"""The sans-IO Phoenix socket: channels, pushes, replies, heartbeats, reconnect and rejoin.

``SocketCore`` is everything a Phoenix client decides, with nothing it does. The I/O layer
feeds it frames (``receive``), transport changes (``connection_started`` / ``connection_opened``
/ ``connection_failed`` / ``connection_lost``), commands (``join``, ``push``, ``leave``,
``ping``) and the time (``handle_timers(now)`` whenever ``next_deadline()`` passes); it takes
back frames to write (``data_to_send``) and events to act on (``events``).

The core spans three modules: ``_timers`` (the deadline heap), ``_channel_core`` (channels and
pushes: the commands and the rules that end them) and this one (the connection, heartbeats,
pings and the routing of incoming frames). The rules below hold for all three.

Rules this module keeps:

1. Time only comes in as ``now``; randomness only through the schedules given to us.
2. Every push ends exactly once: a reply, a timeout, or a failure event; ``cancel_push`` ends
   it silently. No pending entry outlives its push, no timer outlives its owner.
3. A command that cannot be carried out raises before anything is sent or registered
   (payloads are encoded, or test-encoded when buffered, up front).
4. Remote input never raises: a frame that makes no sense becomes a ``FrameDropped`` event
   and a counter, and the socket keeps working.
5. phoenix.js's behaviour is the reference (timers, refs, buffering, stale join refs), with
   these documented differences: a buffered push keeps its original deadline instead of
   restarting it when sent; a push whose reply can no longer arrive (the connection dropped,
   the server channel crashed) fails at once instead of waiting for its timeout; joins are
   not queued while disconnected but sent when the connection opens (so a stale join is never
   replayed); ``leave`` waits for the server's reply; a first join that fails or times out
   closes the channel instead of retrying forever; a clean close (1000) from the server
   reconnects unless ``reconnect_on_clean_close`` is false; the reconnect backoff restarts
   only after a connection that lived ``STABLE_CONNECTION`` seconds, not on every open; a
   second live channel on a topic is refused instead of leaving the first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from ._backoff import phoenix_reconnect_after, phoenix_rejoin_after
from ._channel_core import (
    DEFAULT_TIMEOUT,
    ChannelCore,
    CloseReason,
    Counters,
    Push,
    PushFailure,
    PushKind,
    SocketState,
    Waiter,
    check_timeout,
)
from ._channel_rules import ChannelRules
from ._channel_state import ChannelEvent, ChannelState, next_state
from ._errors import LocalProtocolError, RemoteProtocolError, SocketClosed
from ._events import (
    CloseTransport,
    DisconnectRequested,
    DropConnection,
    Event,
    FrameDropped,
    MessageReceived,
    PingLost,
    PingReplied,
    ReconnectDue,
    ReconnectScheduled,
)
from ._message import (
    HEARTBEAT,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_REPLY,
    Message,
)
from ._serializer import Frame, Serializer, V2JSONSerializer
from ._timers import Timer, TimerQueue

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "ChannelCore",
    "Push",
    "PushKind",
    "SocketCore",
    "SocketState",
    "SocketStatistics",
]

#: phoenix.js ``heartbeatIntervalMs``, in seconds.
DEFAULT_HEARTBEAT_INTERVAL: Final = 30.0

#: How long a connection must have lived for its loss to restart the reconnect backoff.
STABLE_CONNECTION: Final = 10.0

ReconnectSchedule = Callable[[int], float | None]


@attrs.frozen(kw_only=True)
class SocketStatistics:
    """Counters and sizes of a socket (``Socket.statistics()``, ``SocketCore.statistics()``)."""

    state: SocketState
    channels: int
    pending_replies: int
    buffered_pushes: int
    frames_received: int
    frames_sent: int
    malformed_frames: int
    dropped_messages: int
    heartbeats_sent: int
    heartbeat_timeouts: int
    connects: int
    disconnects: int


class SocketCore(ChannelRules):
    """The protocol state of one Phoenix socket, across all its connections.

    Args:
        serializer: encodes and decodes frames (V2 JSON by default).
        timeout: default join/push/leave timeout in seconds; ``None`` waits forever.
        heartbeat_interval: seconds between heartbeats, and how long one may stay unanswered;
            ``None`` disables heartbeats.
        reconnect_after: delay before reconnect attempt n (1, 2, ...); returning ``None``
            gives up. Defaults to phoenix.js's schedule.
        rejoin_after: delay before rejoin attempt n of an errored channel.
        reconnect_on_clean_close: whether a close with code 1000 from the server reconnects
            (phoenix.js does not; users rarely want that).
    """

    __slots__ = (
        "_disconnect_requested",
        "_heartbeat_ref",
        "_heartbeat_timer",
        "_opened_at",
        "_pings",
        "_reconnect_after",
        "_reconnect_timer",
        "_reconnect_tries",
        "heartbeat_interval",
        "reconnect_on_clean_close",
    )

    def __init__(
        self,
        *,
        serializer: Serializer | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat_interval: float | None = DEFAULT_HEARTBEAT_INTERVAL,
        reconnect_after: ReconnectSchedule = phoenix_reconnect_after,
        rejoin_after: Callable[[int], float] = phoenix_rejoin_after,
        reconnect_on_clean_close: bool = True,
    ) -> None:
        if heartbeat_interval is not None and not heartbeat_interval > 0:
            raise ValueError(
                f"heartbeat_interval must be positive or None, got {heartbeat_interval!r}"
            )
        self.serializer: Serializer = serializer if serializer is not None else V2JSONSerializer()
        self.timeout = check_timeout(timeout)
        self.heartbeat_interval = heartbeat_interval
        self.rejoin_after = rejoin_after
        self.reconnect_on_clean_close = reconnect_on_clean_close
        self._state = SocketState.IDLE
        self._ref = 0
        self._channels: dict[str, ChannelCore] = {}
        self._outbox: list[Frame] = []
        self._events: list[Event] = []
        self._timers = TimerQueue()
        self._reconnect_after = reconnect_after
        self._reconnect_tries = 0
        self._disconnect_requested = False
        self._opened_at: float | None = None
        self._reconnect_timer = Timer(SocketCore._reconnect_due, self)
        self._heartbeat_timer = Timer(SocketCore._heartbeat_tick, self)
        self._heartbeat_ref: str | None = None
        self._pings: dict[str, tuple[float, Waiter | None]] = {}  # ref -> (sent at, waiter)
        # Topic -> join ref of a channel whose leave Phoenix acknowledged: the phx_close it
        # sends next is expected, not a dropped message.
        self._left: dict[str, str | None] = {}
        self._counters = Counters()

    # -- introspection -------------------------------------------------------------------

    @property
    def state(self) -> SocketState:
        return self._state

    @property
    def reconnect_due(self) -> bool:
        """Whether a reconnect was scheduled and its time has come (``ReconnectDue`` was
        emitted and no connection was started since)."""
        return self._state is SocketState.WAITING and self._reconnect_timer.deadline is None

    @property
    def connect_due(self) -> bool:
        """Whether the I/O layer should start a connection now: the first one (``idle``), or a
        reconnect whose time has come (``reconnect_due``)."""
        return self._state is SocketState.IDLE or self.reconnect_due

    @property
    def disconnect_requested(self) -> bool:
        """Whether the socket is ``disconnected`` because the application asked
        (``disconnect()``), rather than because the reconnect policy gave up."""
        return self._disconnect_requested

    @property
    def connected(self) -> bool:
        return self._state is SocketState.CONNECTED

    def channels(self) -> list[ChannelCore]:
        """The channels the socket routes messages to (joining, joined, errored, leaving)."""
        return list(self._channels.values())

    def statistics(self) -> SocketStatistics:
        channels = self._channels.values()
        c = self._counters
        return SocketStatistics(
            state=self._state,
            channels=len(self._channels),
            pending_replies=sum(len(ch.pending) for ch in channels) + len(self._pings),
            buffered_pushes=sum(len(ch.buffer) for ch in channels),
            frames_received=c.frames_received,
            frames_sent=c.frames_sent,
            malformed_frames=c.malformed_frames,
            dropped_messages=c.dropped_messages,
            heartbeats_sent=c.heartbeats_sent,
            heartbeat_timeouts=c.heartbeat_timeouts,
            connects=c.connects,
            disconnects=c.disconnects,
        )

    # -- output --------------------------------------------------------------------------

    @property
    def has_data_to_send(self) -> bool:
        """Whether ``data_to_send()`` would return frames."""
        return bool(self._outbox)

    def data_to_send(self) -> list[Frame]:
        """Take the frames to write to the transport, in order."""
        frames = self._outbox
        if frames:
            self._outbox = []
        return frames

    def events(self) -> list[Event]:
        """Take the events produced since the last call, in order."""
        events = self._events
        if events:
            self._events = []
        return events

    def next_deadline(self) -> float | None:
        """When ``handle_timers`` must next be called, or ``None`` if no timer is running."""
        return self._timers.next_deadline()

    def handle_timers(self, now: float) -> None:
        """Run every timer whose deadline is at or before ``now``."""
        self._timers.fire(now)

    # -- connection lifecycle ------------------------------------------------------------

    def connection_started(self, now: float) -> None:
        """The I/O layer starts opening a transport."""
        if self._state is SocketState.CLOSED:
            raise SocketClosed("the socket is closed")
        if self._state is SocketState.CONNECTING or self._state is SocketState.CONNECTED:
            raise LocalProtocolError(f"cannot start connecting while {self._state.value}")
        self._timers.cancel(self._reconnect_timer)
        self._disconnect_requested = False
        self._state = SocketState.CONNECTING

    def connection_opened(self, now: float) -> None:
        """The transport is open: start heartbeats, send waiting joins, rejoin errored channels."""
        if self._state is not SocketState.CONNECTING:
            raise LocalProtocolError(f"a connection cannot open while {self._state.value}")
        self._state = SocketState.CONNECTED
        self._counters.connects += 1
        self._opened_at = now
        self._heartbeat_ref = None
        if self.heartbeat_interval is not None:
            self._timers.schedule(self._heartbeat_timer, now + self.heartbeat_interval)
        for channel in list(self._channels.values()):
            channel.rejoin_backoff.reset()
            self._timers.cancel(channel.rejoin_timer)
            # A lost connection errored every joining or joined channel and ended every
            # leaving one, so each channel here is errored or still waiting for its first join.
            if channel.state is ChannelState.ERRORED:
                channel.state = next_state(channel.state, ChannelEvent.REJOIN)
            else:
                assert channel.state is ChannelState.JOINING
                assert channel.join_ref is None
            self._send_join(channel, now)

    def connection_failed(self, now: float) -> None:
        """Opening the transport failed (refused, rejected, timed out): schedule a retry."""
        if self._state is not SocketState.CONNECTING:
            raise LocalProtocolError(f"a connection cannot fail while {self._state.value}")
        self._schedule_reconnect(now)

    def connection_lost(self, now: float, code: int | None = None) -> None:
        """The open transport closed (``code`` is the WebSocket close code, if any).

        Ignored unless connected, so the I/O layer may report a loss the core already acted on
        (after a heartbeat timeout).
        """
        if self._state is not SocketState.CONNECTED:
            return
        self._disconnect(now, "transport", "connection_closed")
        if code == 1000 and not self.reconnect_on_clean_close:
            self._state = SocketState.DISCONNECTED
        else:
            self._schedule_reconnect(now)

    def close(self, now: float | None = None) -> None:
        """The application closes the socket for good: every channel and push ends.

        With ``now`` (the time), on an open connection every channel leaves first without
        waiting for the server's reply: its ``phx_leave`` is queued in the outbox (after the
        frames queued before it; no push, no timer: nothing waits for the reply), to be
        written before the transport's close, and the channel ends as ``"left"`` at once.
        The server handles the leaves before the close (and ends the channels of a closed
        connection anyway). Otherwise the channels end as ``"socket_closed"``.
        """
        if self._state is SocketState.CLOSED:
            return
        was_connected = self._state is SocketState.CONNECTED
        outbox: list[Frame] = []
        if now is not None and was_connected:
            for channel in list(self._channels.values()):
                if channel.state is not ChannelState.LEAVING:  # (else its leave is sent)
                    channel.state = next_state(channel.state, ChannelEvent.LEAVE)
                    if channel.join_ref is not None:  # else no join reached the server
                        self._send_leave(channel, channel.join_ref)
                self._end_channel(channel, ChannelEvent.LEAVE_DONE, CloseReason.LEFT)
            outbox = self._outbox  # what was queued, then the leaves
        self._state = SocketState.CLOSED
        if was_connected:
            self._counters.disconnects += 1
        self._timers.cancel(self._reconnect_timer)
        self._timers.cancel(self._heartbeat_timer)
        self._heartbeat_ref = None
        self._lose_pings()
        self._outbox = outbox
        for channel in list(self._channels.values()):
            self._end_channel(
                channel,
                ChannelEvent.CLOSE,
                CloseReason.SOCKET_CLOSED,
                failure=PushFailure.SOCKET_CLOSED,
            )

    # -- connection control by the application -------------------------------------------

    def disconnect(self, now: float) -> None:
        """The application disconnects (phoenix.js ``socket.disconnect()``): the connection is
        dropped (``DropConnection(1000, "disconnect")``) or the attempt in flight abandoned,
        and no reconnect follows until ``connect()``. Channels stay: joined ones error (payload
        ``{"source": "client", "reason": "disconnect"}``) and rejoin on the next connection;
        buffered pushes and joins wait with their timeouts running; pushes awaiting a reply
        fail (their reply cannot come). Does nothing if already disconnected on request.

        Raises:
            SocketClosed: the socket is closed.
        """
        state = self._check_open("disconnect")
        if self._disconnect_requested:
            return
        self._events.append(DisconnectRequested())
        if state is SocketState.CONNECTING or state is SocketState.CONNECTED:
            self._events.append(DropConnection(1000, "disconnect", graceful=True))
        if state is SocketState.CONNECTED:
            self._disconnect(now, "client", "disconnect")
        self._timers.cancel(self._reconnect_timer)
        self._reconnect_tries = 0
        self._disconnect_requested = True
        self._state = SocketState.DISCONNECTED

    def connect(self, now: float) -> None:
        """The application asks for a connection now (phoenix.js ``socket.connect()``): after
        ``disconnect()``, or to skip the rest of a reconnect backoff. ``ReconnectDue`` follows
        at once and the reconnect schedule starts over. Does nothing while connecting or
        connected (or ``idle``: the first connection is about to start).

        Raises:
            SocketClosed: the socket is closed.
        """
        state = self._check_open("connect")
        if state is SocketState.WAITING or state is SocketState.DISCONNECTED:
            self._connect_now()

    def reconnect(self, now: float) -> None:
        """The application drops the current connection and reconnects at once (after a
        network change): the connection is dropped (``DropConnection(1000, "reconnect")``) or
        the attempt in flight abandoned, and ``ReconnectDue`` follows at once; channels rejoin
        on the new connection. Does nothing after ``disconnect()`` (``connect()`` resumes) or
        while ``idle``.

        Raises:
            SocketClosed: the socket is closed.
        """
        state = self._check_open("reconnect")
        if self._disconnect_requested or state is SocketState.IDLE:
            return
        if state is SocketState.CONNECTING or state is SocketState.CONNECTED:
            self._events.append(DropConnection(1000, "reconnect", graceful=False))
        if state is SocketState.CONNECTED:
            self._disconnect(now, "client", "reconnect")
        self._connect_now()

    def _check_open(self, command: str) -> SocketState:
        if self._state is SocketState.CLOSED:
            raise SocketClosed(f"cannot {command}: the socket is closed")
        return self._state

    def _connect_now(self) -> None:
        self._timers.cancel(self._reconnect_timer)
        self._disconnect_requested = False
        self._reconnect_tries = 0
        self._state = SocketState.WAITING  # with no timer: the reconnect is due
        self._events.append(ReconnectDue())

    def _disconnect(self, now: float, source: str, reason: str) -> None:
        self._counters.disconnects += 1
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and now - opened_at >= STABLE_CONNECTION:
            # Only a connection that lived a while resets the backoff: a server that accepts
            # and at once closes every connection must not get a reconnect every 10 ms.
            self._reconnect_tries = 0
        self._timers.cancel(self._heartbeat_timer)
        self._heartbeat_ref = None
        self._lose_pings()
        self._left.clear()
        self._outbox = []
        payload = {"source": source, "reason": reason}
        for channel in list(self._channels.values()):
            state = channel.state
            if state is ChannelState.JOINING or state is ChannelState.JOINED:
                self._error_channel(channel, payload, now, rejoin=False)
            elif state is ChannelState.LEAVING:
                self._end_channel(channel, ChannelEvent.LEAVE_DONE, CloseReason.LEFT)
            else:
                self._timers.cancel(channel.rejoin_timer)

    def _lose_pings(self) -> None:
        for ref, (_, waiter) in self._pings.items():
            self._events.append(PingLost(ref, waiter=waiter))
        self._pings.clear()

    def _schedule_reconnect(self, now: float) -> None:
        attempt = self._reconnect_tries + 1
        delay = self._reconnect_after(attempt)
        if delay is None:
            self._state = SocketState.DISCONNECTED
            return
        self._state = SocketState.WAITING
        self._timers.schedule(self._reconnect_timer, now + delay)
        self._events.append(ReconnectScheduled(delay, attempt))

    def _reconnect_due(self, now: float) -> None:
        self._reconnect_tries += 1
        self._events.append(ReconnectDue())

    # -- heartbeat and ping --------------------------------------------------------------

    def _heartbeat_tick(self, now: float) -> None:
        assert self.heartbeat_interval is not None
        if self._heartbeat_ref is not None:
            # The previous heartbeat was never answered: the connection is dead or stalled.
            self._counters.heartbeat_timeouts += 1
            self._events.append(CloseTransport(1000, "heartbeat timeout"))
            self._disconnect(now, "transport", "heartbeat_timeout")
            self._schedule_reconnect(now)
            return
        ref = self.make_ref()
        self._heartbeat_ref = ref
        self._counters.heartbeats_sent += 1
        self._send(
            Message(join_ref=None, ref=ref, topic=PHOENIX_TOPIC, event=HEARTBEAT, payload={})
        )
        self._timers.schedule(self._heartbeat_timer, now + self.heartbeat_interval)

    def ping(self, now: float, waiter: Waiter | None = None) -> str:
        """Send a heartbeat outside the schedule; a ``PingReplied`` event reports its round trip
        (or ``PingLost`` its loss), carrying ``waiter``.

        Raises:
            SocketClosed: the socket is not connected.
        """
        if self._state is not SocketState.CONNECTED:
            raise SocketClosed(f"cannot ping: the socket is {self._state.value}")
        ref = self.make_ref()
        self._send(
            Message(join_ref=None, ref=ref, topic=PHOENIX_TOPIC, event=HEARTBEAT, payload={})
        )
        self._pings[ref] = (now, waiter)
        return ref

    def cancel_ping(self, ref: str) -> None:
        """Forget a ping whose caller gave up: its reply, if any, is ignored."""
        self._pings.pop(ref, None)

    # -- incoming frames -----------------------------------------------------------------

    def receive(self, frame: Frame, now: float) -> None:
        """Handle one frame from the server."""
        self._counters.frames_received += 1
        try:
            message = self.serializer.decode(frame)
        except RemoteProtocolError as exc:
            self._counters.malformed_frames += 1
            self._events.append(FrameDropped("malformed", None, exc))
            return
        ref = message.ref
        if ref is not None:
            if ref == self._heartbeat_ref:
                self._heartbeat_ref = None
                assert self.heartbeat_interval is not None
                self._timers.schedule(self._heartbeat_timer, now + self.heartbeat_interval)
                if message.topic == PHOENIX_TOPIC:
                    return
            elif ref in self._pings:
                sent_at, waiter = self._pings.pop(ref)
                self._events.append(PingReplied(ref, now - sent_at, waiter=waiter))
                if message.topic == PHOENIX_TOPIC:
                    return
        channel = self._channels.get(message.topic)
        if message.event == PHX_CLOSE and self._closes_left_channel(channel, message):
            return
        if channel is None:
            self._drop("unknown_topic", message)
            return
        join_ref = message.join_ref
        if join_ref and join_ref != channel.join_ref:
            self._drop("stale_join_ref", message)
            return
        event = message.event
        if event == PHX_REPLY:
            self._on_reply(channel, message, now)
        elif event == PHX_ERROR:
            self._on_server_error(channel, message, now)
        elif event == PHX_CLOSE:
            self._end_channel(
                channel, ChannelEvent.CLOSE, CloseReason.SERVER_CLOSED, payload=message.payload
            )
        else:
            self._events.append(MessageReceived(channel, message, len(frame)))

    def _closes_left_channel(self, channel: ChannelCore | None, message: Message) -> bool:
        """Whether ``message`` is the phx_close Phoenix sends after acknowledging a leave.

        It names the left channel's join ref (``null`` when the server kept none, as for V1
        joins; that one is only taken while no new channel holds the topic).
        """
        topic = message.topic
        if topic not in self._left:
            return False
        join_ref = message.join_ref
        if join_ref == self._left[topic] or (join_ref is None and channel is None):
            del self._left[topic]
            return True
        return False
