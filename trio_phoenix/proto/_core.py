"""The sans-IO Phoenix socket: channels, pushes, replies, heartbeats, reconnect and rejoin.

``SocketCore`` is everything a Phoenix client decides, with nothing it does. The I/O layer
feeds it frames (``receive``), transport changes (``connection_started`` / ``connection_opened``
/ ``connection_failed`` / ``connection_lost``), commands (``join``, ``push``, ``leave``,
``ping``) and the time (``handle_timers(now)`` whenever ``next_deadline()`` passes); it takes
back frames to write (``data_to_send``) and events to act on (``events``).

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

import enum
import heapq
import itertools
from collections.abc import Callable
from typing import Any, Final

import attrs

from ._backoff import Backoff, phoenix_reconnect_after, phoenix_rejoin_after
from ._channel_state import ChannelEvent, ChannelState, next_state
from ._errors import (
    ChannelClosed,
    EncodeError,
    LocalProtocolError,
    RemoteProtocolError,
    SocketClosed,
)
from ._events import (
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    CloseTransport,
    Event,
    FrameDropped,
    JoinFailed,
    MessageReceived,
    PingLost,
    PingReplied,
    PushFailed,
    PushReplied,
    PushTimedOut,
    ReconnectDue,
    ReconnectScheduled,
    RejoinScheduled,
)
from ._message import (
    HEARTBEAT,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    RESERVED_EVENTS,
    Message,
)
from ._serializer import Frame, Serializer, V2JSONSerializer

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "ChannelCore",
    "ConnectionState",
    "CoreStatistics",
    "Push",
    "PushKind",
    "SocketCore",
]

#: phoenix.js ``timeout``: default join/push/leave timeout, in seconds.
DEFAULT_TIMEOUT: Final = 10.0
#: phoenix.js ``heartbeatIntervalMs``, in seconds.
DEFAULT_HEARTBEAT_INTERVAL: Final = 30.0

#: How long a connection must have lived for its loss to restart the reconnect backoff.
STABLE_CONNECTION: Final = 10.0

ReconnectSchedule = Callable[[int], float | None]


class ConnectionState(enum.Enum):
    """The socket's transport, as the core sees it."""

    IDLE = "idle"  # not connected yet, and not trying
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"  # disconnected; a reconnect is scheduled
    DISCONNECTED = "disconnected"  # disconnected; the reconnect policy gave up
    CLOSED = "closed"  # closed by the application, for good


class PushKind(enum.Enum):
    USER = "push"
    JOIN = "join"
    LEAVE = "leave"


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET


@attrs.define(eq=False)
class _Timer:
    callback: Callable[[float], None]
    deadline: float | None = None
    entry: _Entry | None = None  # its place in the heap while it is scheduled


@attrs.define(eq=False)
class _Entry:
    """A heap slot; a cancelled timer lets go of it, so the heap never keeps its owner (a push
    and its payload) alive."""

    timer: _Timer | None


def _no_timer(now: float) -> None:
    """The callback of a finished push's timer, which never runs again."""


class _TimerQueue:
    """A heap of deadlines with lazy cancellation: a cancelled entry is emptied at once and
    removed when it reaches the top, or when empty entries are half the heap."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._empty = 0

    def schedule(self, timer: _Timer, deadline: float) -> None:
        self.cancel(timer)
        timer.deadline = deadline
        timer.entry = entry = _Entry(timer)
        heapq.heappush(self._heap, (deadline, next(self._seq), entry))

    def cancel(self, timer: _Timer) -> None:
        timer.deadline = None
        entry = timer.entry
        if entry is not None:
            timer.entry = entry.timer = None
            self._empty += 1
            if self._empty > 64 and self._empty * 2 > len(self._heap):
                self._heap = [item for item in self._heap if item[2].timer is not None]
                heapq.heapify(self._heap)
                self._empty = 0

    def _pop_empty(self) -> None:
        heap = self._heap
        while heap and heap[0][2].timer is None:
            heapq.heappop(heap)
            self._empty -= 1

    def next_deadline(self) -> float | None:
        self._pop_empty()
        heap = self._heap
        return heap[0][0] if heap else None

    def fire(self, now: float) -> None:
        while True:
            self._pop_empty()
            heap = self._heap  # a callback's cancel() may have compacted it
            if not heap or heap[0][0] > now:
                return
            timer = heapq.heappop(heap)[2].timer
            assert timer is not None
            timer.deadline = None
            timer.entry = None
            timer.callback(now)

    def __len__(self) -> int:
        """Entries in the heap, the emptied ones included (for tests of the bound)."""
        return len(self._heap)


@attrs.define(eq=False, repr=False)
class Push:
    """One request that expects a reply: a user push, a join or a leave.

    ``ref`` is the ref of the frame currently awaiting a reply (``None`` while buffered);
    a push gets a fresh ref each time it is sent. ``context`` belongs to the I/O layer.
    """

    channel: ChannelCore
    kind: PushKind
    event: str
    payload: Any
    timer: _Timer
    ref: str | None = None
    done: bool = False
    context: Any = None

    def __repr__(self) -> str:
        return f"<Push {self.kind.value} {self.event!r} on {self.channel.topic!r} ref={self.ref}>"


@attrs.define(eq=False, repr=False)
class ChannelCore:
    """The protocol state of one channel (one topic, one join at a time)."""

    topic: str
    params: Any
    timeout: float | None
    rejoin_backoff: Backoff
    rejoin_timer: _Timer
    state: ChannelState = ChannelState.CLOSED
    join_ref: str | None = None
    join_push: Push | None = None
    leave_push: Push | None = None
    join_called: bool = False
    joined_once: bool = False
    close_reason: str | None = None
    buffer: list[Push] = attrs.Factory(list)
    pending: dict[str, Push] = attrs.Factory(dict)
    context: Any = None

    def __repr__(self) -> str:
        return f"<ChannelCore {self.topic!r} {self.state.value} join_ref={self.join_ref}>"


@attrs.frozen(kw_only=True)
class CoreStatistics:
    """Counters and sizes of a ``SocketCore``."""

    state: ConnectionState
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


@attrs.define(eq=False)
class _Counters:
    frames_received: int = 0
    frames_sent: int = 0
    malformed_frames: int = 0
    dropped_messages: int = 0
    heartbeats_sent: int = 0
    heartbeat_timeouts: int = 0
    connects: int = 0
    disconnects: int = 0


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not timeout >= 0:
        raise LocalProtocolError(
            f"timeout must be a non-negative number of seconds or None, got {timeout!r}"
        )
    return timeout


class SocketCore:
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
            raise LocalProtocolError(
                f"heartbeat_interval must be positive or None, got {heartbeat_interval!r}"
            )
        self.serializer: Serializer = serializer if serializer is not None else V2JSONSerializer()
        self.timeout = _check_timeout(timeout)
        self.heartbeat_interval = heartbeat_interval
        self.rejoin_after = rejoin_after
        self.reconnect_on_clean_close = reconnect_on_clean_close
        self._state = ConnectionState.IDLE
        self._ref = 0
        self._channels: dict[str, ChannelCore] = {}
        self._outbox: list[Frame] = []
        self._events: list[Event] = []
        self._timers = _TimerQueue()
        self._reconnect_after = reconnect_after
        self._reconnect_tries = 0
        self._opened_at: float | None = None
        self._reconnect_timer = _Timer(self._reconnect_due)
        self._heartbeat_timer = _Timer(self._heartbeat_tick)
        self._heartbeat_ref: str | None = None
        self._pings: dict[str, float] = {}
        # Topic -> join ref of a channel whose leave Phoenix acknowledged: the phx_close it
        # sends next is expected, not a dropped message.
        self._left: dict[str, str | None] = {}
        self._counters = _Counters()

    # -- introspection -------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def channels(self) -> list[ChannelCore]:
        """The channels the socket routes messages to (joining, joined, errored, leaving)."""
        return list(self._channels.values())

    def statistics(self) -> CoreStatistics:
        channels = self._channels.values()
        c = self._counters
        return CoreStatistics(
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

    def make_ref(self) -> str:
        """Allocate the next ref: decimal strings from one counter, as phoenix.js does."""
        self._ref += 1
        return str(self._ref)

    # -- connection lifecycle ------------------------------------------------------------

    def connection_started(self, now: float) -> None:
        """The I/O layer starts opening a transport."""
        if self._state is ConnectionState.CLOSED:
            raise SocketClosed("the socket is closed")
        if self._state is ConnectionState.CONNECTING or self._state is ConnectionState.CONNECTED:
            raise LocalProtocolError(f"cannot start connecting while {self._state.value}")
        self._timers.cancel(self._reconnect_timer)
        self._state = ConnectionState.CONNECTING

    def connection_opened(self, now: float) -> None:
        """The transport is open: start heartbeats, send waiting joins, rejoin errored channels."""
        if self._state is not ConnectionState.CONNECTING:
            raise LocalProtocolError(f"a connection cannot open while {self._state.value}")
        self._state = ConnectionState.CONNECTED
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
        if self._state is not ConnectionState.CONNECTING:
            raise LocalProtocolError(f"a connection cannot fail while {self._state.value}")
        self._schedule_reconnect(now)

    def connection_lost(self, now: float, code: int | None = None) -> None:
        """The open transport closed (``code`` is the WebSocket close code, if any).

        Ignored unless connected, so the I/O layer may report a loss the core already acted on
        (after a heartbeat timeout).
        """
        if self._state is not ConnectionState.CONNECTED:
            return
        self._disconnect(now, "connection_closed")
        if code == 1000 and not self.reconnect_on_clean_close:
            self._state = ConnectionState.DISCONNECTED
        else:
            self._schedule_reconnect(now)

    def close(self) -> None:
        """The application closes the socket for good: every channel and push ends."""
        if self._state is ConnectionState.CLOSED:
            return
        was_connected = self._state is ConnectionState.CONNECTED
        self._state = ConnectionState.CLOSED
        if was_connected:
            self._counters.disconnects += 1
        self._timers.cancel(self._reconnect_timer)
        self._timers.cancel(self._heartbeat_timer)
        self._heartbeat_ref = None
        self._lose_pings()
        self._outbox = []
        for channel in list(self._channels.values()):
            self._end_channel(
                channel, ChannelEvent.CLOSE, "socket_closed", failure="socket_closed"
            )

    def _disconnect(self, now: float, reason: str) -> None:
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
        payload = {"source": "transport", "reason": reason}
        for channel in list(self._channels.values()):
            state = channel.state
            if state is ChannelState.JOINING or state is ChannelState.JOINED:
                self._error_channel(channel, payload, now, rejoin=False)
            elif state is ChannelState.LEAVING:
                self._end_channel(channel, ChannelEvent.LEAVE_DONE, "left")
            else:
                self._timers.cancel(channel.rejoin_timer)

    def _lose_pings(self) -> None:
        for ref in self._pings:
            self._events.append(PingLost(ref))
        self._pings.clear()

    def _schedule_reconnect(self, now: float) -> None:
        attempt = self._reconnect_tries + 1
        delay = self._reconnect_after(attempt)
        if delay is None:
            self._state = ConnectionState.DISCONNECTED
            return
        self._state = ConnectionState.WAITING
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
            self._disconnect(now, "heartbeat_timeout")
            self._schedule_reconnect(now)
            return
        ref = self.make_ref()
        self._heartbeat_ref = ref
        self._counters.heartbeats_sent += 1
        self._send(
            Message(join_ref=None, ref=ref, topic=PHOENIX_TOPIC, event=HEARTBEAT, payload={})
        )
        self._timers.schedule(self._heartbeat_timer, now + self.heartbeat_interval)

    def ping(self, now: float) -> str:
        """Send a heartbeat outside the schedule; a ``PingReplied`` event reports its round trip.

        Raises:
            SocketClosed: the socket is not connected.
        """
        if self._state is not ConnectionState.CONNECTED:
            raise SocketClosed(f"cannot ping: the socket is {self._state.value}")
        ref = self.make_ref()
        self._send(
            Message(join_ref=None, ref=ref, topic=PHOENIX_TOPIC, event=HEARTBEAT, payload={})
        )
        self._pings[ref] = now
        return ref

    def cancel_ping(self, ref: str) -> None:
        """Forget a ping whose caller gave up: its reply, if any, is ignored."""
        self._pings.pop(ref, None)

    # -- channel commands ----------------------------------------------------------------

    def channel(
        self, topic: str, params: Any = None, *, timeout: float | _Unset | None = _UNSET
    ) -> ChannelCore:
        """Create a channel for ``topic``; it is registered with the socket when joined."""
        if not isinstance(topic, str):
            raise LocalProtocolError(f"topic must be a string, got {type(topic).__name__}")
        channel_timeout = self.timeout if timeout is _UNSET else _check_timeout(timeout)
        channel = ChannelCore(
            topic=topic,
            params={} if params is None else params,
            timeout=channel_timeout,
            rejoin_backoff=Backoff(self.rejoin_after),
            rejoin_timer=_Timer(lambda now: None),
        )
        channel.rejoin_timer.callback = lambda now: self._rejoin_due(channel, now)
        return channel

    def join(self, channel: ChannelCore, now: float) -> Push:
        """Join ``channel``: sent now if connected, else as soon as the connection opens.

        Raises:
            LocalProtocolError: the channel was already joined once, or another channel
                holds the topic.
            EncodeError: the join params cannot be encoded.
            SocketClosed: the socket is closed.
        """
        topic = channel.topic
        if channel.join_called:
            raise LocalProtocolError(
                f"tried to join {topic!r} multiple times; a channel can be joined once, "
                "create a new one with socket.channel()"
            )
        if self._state is ConnectionState.CLOSED:
            raise SocketClosed("the socket is closed")
        other = self._channels.get(topic)
        if other is not None and other.state is not ChannelState.LEAVING:
            raise LocalProtocolError(
                f"topic {topic!r} already has a {other.state.value} channel on this socket; "
                "leave it before joining the topic again"
            )
        self.serializer.encode(
            Message(join_ref="0", ref="0", topic=topic, event=PHX_JOIN, payload=channel.params)
        )
        if other is not None:  # still leaving: stop waiting for its leave reply
            self._end_channel(other, ChannelEvent.LEAVE_DONE, "left")
        channel.state = next_state(channel.state, ChannelEvent.JOIN)
        channel.join_called = True
        self._channels[topic] = channel
        push = self._new_push(channel, PushKind.JOIN, PHX_JOIN, channel.params)
        channel.join_push = push
        if channel.timeout is not None:
            self._timers.schedule(push.timer, now + channel.timeout)
        if self._state is ConnectionState.CONNECTED:
            self._send_join(channel, now)
        return push

    def leave(self, channel: ChannelCore, now: float) -> Push | None:
        """Leave ``channel``. Returns the leave push whose reply closes the channel, or
        ``None`` when nothing had to be sent and the channel closed at once."""
        state = channel.state
        if state is ChannelState.CLOSED:
            return None
        if state is ChannelState.LEAVING:
            return channel.leave_push
        self._timers.cancel(channel.rejoin_timer)
        join_push = channel.join_push
        assert join_push is not None  # a channel that is not closed was joined
        # A join still in flight is abandoned (its reply will be ignored), but its join ref
        # stays: the server may have processed it, and the leave must name it.
        self._timers.cancel(join_push.timer)
        if join_push.ref is not None:
            channel.pending.pop(join_push.ref, None)
        channel.state = next_state(state, ChannelEvent.LEAVE)
        if self._state is not ConnectionState.CONNECTED or channel.join_ref is None:
            self._end_channel(channel, ChannelEvent.LEAVE_DONE, "left")
            return None
        push = self._new_push(channel, PushKind.LEAVE, PHX_LEAVE, {})
        channel.leave_push = push
        ref = self.make_ref()
        push.ref = ref
        channel.pending[ref] = push
        if channel.timeout is not None:
            self._timers.schedule(push.timer, now + channel.timeout)
        self._send(
            Message(
                join_ref=channel.join_ref,
                ref=ref,
                topic=channel.topic,
                event=PHX_LEAVE,
                payload={},
            )
        )
        return push

    def push(
        self,
        channel: ChannelCore,
        event: str,
        payload: Any,
        now: float,
        *,
        timeout: float | _Unset | None = _UNSET,
    ) -> Push:
        """Push ``event`` on ``channel``: sent now if joined and connected, else buffered with
        its timeout running, and sent with a fresh ref after the (re)join.

        Raises:
            LocalProtocolError: the channel was never joined, or ``event`` is reserved.
            ChannelClosed: the channel was left or closed.
            SocketClosed: the socket is closed.
            EncodeError: the payload cannot be encoded.
        """
        topic = channel.topic
        if not channel.join_called:
            raise LocalProtocolError(
                f"tried to push {event!r} to {topic!r} before joining; "
                "join the channel first (await channel.join() or async with channel)"
            )
        if self._state is ConnectionState.CLOSED:
            raise SocketClosed("the socket is closed")
        if channel.state is ChannelState.CLOSED or channel.state is ChannelState.LEAVING:
            raise ChannelClosed(topic, channel.close_reason or "left")
        if not isinstance(event, str):
            raise LocalProtocolError(f"event must be a string, got {type(event).__name__}")
        if event in RESERVED_EVENTS:
            raise LocalProtocolError(f"{event!r} is reserved by the Phoenix protocol")
        push_timeout = channel.timeout if timeout is _UNSET else _check_timeout(timeout)
        push = self._new_push(channel, PushKind.USER, event, payload)
        if self._state is ConnectionState.CONNECTED and channel.state is ChannelState.JOINED:
            ref = self.make_ref()
            self._outbox.append(
                self.serializer.encode(
                    Message(
                        join_ref=channel.join_ref,
                        ref=ref,
                        topic=topic,
                        event=event,
                        payload=payload,
                    )
                )
            )
            self._counters.frames_sent += 1
            push.ref = ref
            channel.pending[ref] = push
        else:
            self.serializer.encode(
                Message(join_ref="0", ref="0", topic=topic, event=event, payload=payload)
            )
            channel.buffer.append(push)
        if push_timeout is not None:
            self._timers.schedule(push.timer, now + push_timeout)
        return push

    def cancel_push(self, push: Push) -> None:
        """Forget a user push whose caller gave up (cancelled): no event will follow.

        A push already written stays written; its reply, if any, is ignored.
        """
        if push.done or push.kind is not PushKind.USER:
            return
        self._finish(push)
        channel = push.channel
        if push.ref is None:
            channel.buffer.remove(push)
        else:
            del channel.pending[push.ref]

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
                sent_at = self._pings.pop(ref)
                self._events.append(PingReplied(ref, now - sent_at))
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
                channel, ChannelEvent.CLOSE, "server_closed", payload=message.payload
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

    def _drop(self, reason: str, message: Message) -> None:
        self._counters.dropped_messages += 1
        self._events.append(FrameDropped(reason, message))

    def _on_reply(self, channel: ChannelCore, message: Message, now: float) -> None:
        payload = message.payload
        status = payload.get("status") if type(payload) is dict else None
        if type(status) is not str:
            self._drop("bad_reply", message)
            return
        push = channel.pending.pop(message.ref, None) if message.ref is not None else None
        if push is None:
            self._drop("unknown_ref", message)
            return
        self._timers.cancel(push.timer)
        response = payload.get("response")
        if push.kind is PushKind.USER:
            self._finish(push)
            self._events.append(PushReplied(push, status, response))
        elif push.kind is PushKind.JOIN:
            self._on_join_reply(channel, status, response, now)
        else:
            self._left[channel.topic] = channel.join_ref
            self._end_channel(channel, ChannelEvent.LEAVE_DONE, "left")

    def _on_join_reply(self, channel: ChannelCore, status: str, response: Any, now: float) -> None:
        first = not channel.joined_once
        if status == "ok":
            channel.state = next_state(channel.state, ChannelEvent.JOIN_OK)
            channel.joined_once = True
            channel.rejoin_backoff.reset()
            self._events.append(ChannelJoined(channel, response, first))
            self._flush_buffer(channel)
            return
        channel.state = next_state(channel.state, ChannelEvent.JOIN_ERROR)
        self._events.append(JoinFailed(channel, status, response, first))
        if first:
            self._end_channel(channel, ChannelEvent.CLOSE, "join_failed", payload=response)
        else:
            self._schedule_rejoin(channel, now)

    def _on_server_error(self, channel: ChannelCore, message: Message, now: float) -> None:
        state = channel.state
        if state is ChannelState.LEAVING:
            self._end_channel(channel, ChannelEvent.ERROR, "left", payload=message.payload)
        elif state is ChannelState.ERRORED:
            self._drop("already_errored", message)
        else:
            self._error_channel(channel, message.payload, now, rejoin=True)

    # -- channel internals ---------------------------------------------------------------

    def _new_push(self, channel: ChannelCore, kind: PushKind, event: str, payload: Any) -> Push:
        push = Push(
            channel=channel,
            kind=kind,
            event=event,
            payload=payload,
            timer=_Timer(lambda now: None),
        )
        push.timer.callback = lambda now: self._push_timed_out(push, now)
        return push

    def _finish(self, push: Push) -> None:
        """A user push is done: stop its timer, and drop the timer's reference back to the
        push, so the push (with its payload) is freed as soon as its caller lets go."""
        push.done = True
        self._timers.cancel(push.timer)
        push.timer.callback = _no_timer

    def _send(self, message: Message) -> None:
        self._outbox.append(self.serializer.encode(message))
        self._counters.frames_sent += 1

    def _send_join(self, channel: ChannelCore, now: float) -> None:
        push = channel.join_push
        assert push is not None
        ref = self.make_ref()
        push.ref = ref
        channel.join_ref = ref
        channel.pending[ref] = push
        if channel.joined_once and channel.timeout is not None:
            self._timers.schedule(push.timer, now + channel.timeout)
        self._send(
            Message(
                join_ref=ref, ref=ref, topic=channel.topic, event=PHX_JOIN, payload=channel.params
            )
        )

    def _reset_join_push(self, channel: ChannelCore, *, keep_deadline: bool) -> None:
        """Forget the join in flight: its reply, if it ever comes, will be ignored."""
        push = channel.join_push
        assert push is not None
        if push.ref is not None:
            channel.pending.pop(push.ref, None)
            push.ref = None
        channel.join_ref = None
        if not keep_deadline:
            self._timers.cancel(push.timer)

    def _flush_buffer(self, channel: ChannelCore) -> None:
        buffer, channel.buffer = channel.buffer, []
        for push in buffer:
            ref = self.make_ref()
            try:
                frame = self.serializer.encode(
                    Message(
                        join_ref=channel.join_ref,
                        ref=ref,
                        topic=channel.topic,
                        event=push.event,
                        payload=push.payload,
                    )
                )
            except EncodeError as exc:  # the payload was changed after it was accepted
                self._finish(push)
                self._events.append(PushFailed(push, "encode_error", exc))
                continue
            push.ref = ref
            channel.pending[ref] = push
            self._outbox.append(frame)
            self._counters.frames_sent += 1

    def _fail_pending(self, channel: ChannelCore, reason: str, detail: Any) -> None:
        pending = channel.pending
        for push in list(pending.values()):
            if push.kind is PushKind.USER:
                del pending[push.ref]  # type: ignore[arg-type]
                self._finish(push)
                self._events.append(PushFailed(push, reason, detail))

    def _error_channel(
        self, channel: ChannelCore, payload: Any, now: float, *, rejoin: bool
    ) -> None:
        if channel.state is ChannelState.JOINING:
            self._reset_join_push(channel, keep_deadline=not channel.joined_once)
        channel.state = next_state(channel.state, ChannelEvent.ERROR)
        self._fail_pending(channel, "reply_lost", payload)
        self._events.append(ChannelErrored(channel, payload))
        if rejoin:
            self._schedule_rejoin(channel, now)

    def _schedule_rejoin(self, channel: ChannelCore, now: float) -> None:
        backoff = channel.rejoin_backoff
        delay = backoff.next_delay()
        self._timers.schedule(channel.rejoin_timer, now + delay)
        self._events.append(RejoinScheduled(channel, delay, backoff.tries + 1))

    def _rejoin_due(self, channel: ChannelCore, now: float) -> None:
        channel.rejoin_backoff.fired()
        if self._state is ConnectionState.CONNECTED and channel.state is ChannelState.ERRORED:
            channel.state = next_state(channel.state, ChannelEvent.REJOIN)
            self._send_join(channel, now)

    def _push_timed_out(self, push: Push, now: float) -> None:
        channel = push.channel
        if push.kind is PushKind.USER:
            self._finish(push)
            if push.ref is None:
                channel.buffer.remove(push)
            else:
                del channel.pending[push.ref]
            self._events.append(PushTimedOut(push))
        elif push.kind is PushKind.JOIN:
            self._join_timed_out(channel, now)
        else:
            channel.pending.pop(push.ref, None)  # type: ignore[arg-type]
            self._end_channel(channel, ChannelEvent.LEAVE_DONE, "left")

    def _join_timed_out(self, channel: ChannelCore, now: float) -> None:
        join_ref = channel.join_ref
        if join_ref is not None:
            # Tell the server to drop a join it may still be processing (phoenix.js does too);
            # its reply carries the old join ref and is dropped as stale.
            self._reset_join_push(channel, keep_deadline=False)
            self._send(
                Message(
                    join_ref=join_ref,
                    ref=self.make_ref(),
                    topic=channel.topic,
                    event=PHX_LEAVE,
                    payload={},
                )
            )
        if not channel.joined_once:
            self._end_channel(channel, ChannelEvent.CLOSE, "join_timeout")
            return
        channel.state = next_state(channel.state, ChannelEvent.JOIN_TIMEOUT)
        self._events.append(
            ChannelErrored(channel, {"source": "client", "reason": "join_timeout"})
        )
        self._schedule_rejoin(channel, now)

    def _end_channel(
        self,
        channel: ChannelCore,
        event: ChannelEvent,
        reason: str,
        *,
        payload: Any = None,
        failure: str = "channel_closed",
    ) -> None:
        channel.state = next_state(channel.state, event)
        channel.close_reason = reason
        # next_state() let only a live channel through, and a live channel is the one
        # registered for its topic.
        removed = self._channels.pop(channel.topic)
        assert removed is channel
        self._timers.cancel(channel.rejoin_timer)
        for push in (channel.join_push, channel.leave_push):
            if push is not None:
                self._timers.cancel(push.timer)
        self._fail_pending(channel, failure, reason)
        channel.pending.clear()
        buffer, channel.buffer = channel.buffer, []
        for push in buffer:
            self._finish(push)
            self._events.append(PushFailed(push, failure, reason))
        self._events.append(ChannelEnded(channel, reason, payload))
