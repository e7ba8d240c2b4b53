"""The channel rules of the sans-IO core: pushes, joins, leaves, replies and rejoins.

``ChannelRules`` holds the channel commands and the rules that end pushes and channels; the
socket core (``_core.SocketCore``) extends it with the connection, the heartbeat and the
routing of incoming frames. Both share one outbox, one event list and one timer queue, so
frames and events keep the order in which the core decided them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._backoff import Backoff
from ._channel_core import (
    UNSET,
    ChannelCore,
    CloseReason,
    Counters,
    Push,
    PushFailure,
    PushKind,
    SocketState,
    Unset,
    check_timeout,
)
from ._channel_state import ChannelEvent, ChannelState, next_state
from ._errors import ChannelClosed, EncodeError, LocalProtocolError, SocketClosed
from ._events import (
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    Event,
    FrameDropped,
    JoinFailed,
    JoinParamsNeeded,
    PushFailed,
    PushReplied,
    PushTimedOut,
    RejoinScheduled,
)
from ._message import PHX_JOIN, PHX_LEAVE, RESERVED_EVENTS, Message
from ._serializer import Frame, Serializer
from ._timers import Timer, TimerQueue, no_timer

__all__ = ["ChannelRules"]


class ChannelRules:
    """The channel commands and rules of ``SocketCore`` (which sets up the state below)."""

    # The state both classes use lives here; SocketCore's own state in its slots.
    __slots__ = (
        "_channels",
        "_counters",
        "_events",
        "_left",
        "_outbox",
        "_ref",
        "_state",
        "_timers",
        "rejoin_after",
        "serializer",
        "timeout",
    )

    serializer: Serializer
    timeout: float | None
    rejoin_after: Callable[[int], float]
    _state: SocketState
    _ref: int
    _channels: dict[str, ChannelCore]
    _outbox: list[Frame]
    _events: list[Event]
    _timers: TimerQueue
    _counters: Counters
    # Topic -> join ref of a channel whose leave Phoenix acknowledged: the phx_close it
    # sends next is expected, not a dropped message.
    _left: dict[str, str | None]

    def make_ref(self) -> str:
        """Allocate the next ref: decimal strings from one counter, as phoenix.js does."""
        self._ref += 1
        return str(self._ref)

    # -- channel commands ----------------------------------------------------------------

    def channel(
        self,
        topic: str,
        params: Any = None,
        *,
        timeout: float | Unset | None = UNSET,
        params_on_demand: bool = False,
    ) -> ChannelCore:
        """Create a channel for ``topic``; it is registered with the socket when joined.

        With ``params_on_demand`` the I/O layer gives the params of the first join to
        ``join(params=...)`` and answers a ``JoinParamsNeeded`` event before every later join
        frame (phoenix.js accepts a function for the params)."""
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a string, got {type(topic).__name__}")
        channel_timeout = self.timeout if timeout is UNSET else check_timeout(timeout)
        channel = ChannelCore(
            topic=topic,
            params={} if params is None else params,
            timeout=channel_timeout,
            rejoin_backoff=Backoff(self.rejoin_after),
            rejoin_timer=Timer(_rejoin_fired),
            rules=self,
            params_on_demand=params_on_demand,
        )
        channel.rejoin_timer.owner = channel
        return channel

    def join(self, channel: ChannelCore, now: float, *, params: Any = UNSET) -> Push:
        """Join ``channel``: sent now if connected, else as soon as the connection opens.
        ``params`` replaces the channel's params (for the first join frame, with
        ``params_on_demand``).

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
        if self._state is SocketState.CLOSED:
            raise SocketClosed("the socket is closed")
        other = self._channels.get(topic)
        if other is not None and other.state is not ChannelState.LEAVING:
            raise LocalProtocolError(
                f"topic {topic!r} already has a {other.state.value} channel on this socket; "
                "leave it before joining the topic again"
            )
        if params is not UNSET:
            self._check_params(channel, params)
            channel.params = params
            channel.params_fresh = True
        else:
            self._check_params(channel, channel.params)
        if other is not None:  # still leaving: stop waiting for its leave reply
            self._end_channel(other, ChannelEvent.LEAVE_DONE, CloseReason.LEFT)
        channel.state = next_state(channel.state, ChannelEvent.JOIN)
        self._channels[topic] = channel
        push = self._new_push(channel, PushKind.JOIN, PHX_JOIN, channel.params)
        channel.join_push = push
        if channel.timeout is not None:
            self._timers.schedule(push.timer, now + channel.timeout)
        if self._state is SocketState.CONNECTED:
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
        if self._state is not SocketState.CONNECTED or channel.join_ref is None:
            self._end_channel(channel, ChannelEvent.LEAVE_DONE, CloseReason.LEFT)
            return None
        push = self._new_push(channel, PushKind.LEAVE, PHX_LEAVE, {})
        channel.leave_push = push
        ref = self._send_leave(channel, channel.join_ref)
        push.ref = ref
        channel.pending[ref] = push
        if channel.timeout is not None:
            self._timers.schedule(push.timer, now + channel.timeout)
        return push

    def _send_leave(self, channel: ChannelCore, join_ref: str) -> str:
        """Queue a ``phx_leave`` of ``channel`` for the join ``join_ref``; return its ref."""
        ref = self.make_ref()
        self._send(
            Message(join_ref=join_ref, ref=ref, topic=channel.topic, event=PHX_LEAVE, payload={})
        )
        return ref

    def push(
        self,
        channel: ChannelCore,
        event: str,
        payload: Any,
        now: float,
        *,
        timeout: float | Unset | None = UNSET,
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
        if self._state is SocketState.CLOSED:
            raise SocketClosed("the socket is closed")
        if channel.state is ChannelState.CLOSED or channel.state is ChannelState.LEAVING:
            raise ChannelClosed(topic, channel.close_reason or CloseReason.LEFT)
        if not isinstance(event, str):
            raise TypeError(f"event must be a string, got {type(event).__name__}")
        if event in RESERVED_EVENTS:
            raise LocalProtocolError(f"{event!r} is reserved by the Phoenix protocol")
        push_timeout = channel.timeout if timeout is UNSET else check_timeout(timeout)
        push = self._new_push(channel, PushKind.USER, event, payload)
        if self._state is SocketState.CONNECTED and channel.state is ChannelState.JOINED:
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

    def params_ready(self, channel: ChannelCore, ref: str, params: Any, now: float) -> None:
        """The I/O layer's answer to ``JoinParamsNeeded(channel, ref)``: send the join with
        ``params``. An answer the channel no longer waits for (it errored, left, closed or
        timed out meanwhile) is ignored; params that cannot be encoded fail the join as
        ``params_failed`` does."""
        if channel.params_ref != ref:
            return
        try:
            self._check_params(channel, params)
        except EncodeError as exc:
            self.params_failed(channel, ref, exc, now)
            return
        channel.params_ref = None
        channel.params = params
        channel.params_fresh = True
        self._write_join(channel)

    def params_failed(
        self, channel: ChannelCore, ref: str, error: BaseException, now: float
    ) -> None:
        """The params of ``JoinParamsNeeded(channel, ref)`` could not be had (the callable
        raised): a rejoin errors again (``ChannelErrored`` with ``{"source": "client",
        "reason": "params_error", "error": error}``) and is retried with the rejoin backoff; a
        first join (resent after a connection loss) ends the channel (``join_failed``)."""
        if channel.params_ref != ref:
            return
        channel.params_ref = None
        join_push = channel.join_push
        assert join_push is not None
        self._timers.cancel(join_push.timer)
        payload = {"source": "client", "reason": "params_error", "error": error}
        if not channel.joined_once:
            self._end_channel(
                channel, ChannelEvent.CLOSE, CloseReason.JOIN_FAILED, payload=payload
            )
            return
        channel.state = next_state(channel.state, ChannelEvent.JOIN_ERROR)
        self._events.append(ChannelErrored(channel.topic, payload, channel=channel))
        self._schedule_rejoin(channel, now)

    def _check_params(self, channel: ChannelCore, params: Any) -> None:
        self.serializer.encode(
            Message(join_ref="0", ref="0", topic=channel.topic, event=PHX_JOIN, payload=params)
        )

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
            self._end_channel(channel, ChannelEvent.LEAVE_DONE, CloseReason.LEFT)

    def _on_join_reply(self, channel: ChannelCore, status: str, response: Any, now: float) -> None:
        first = not channel.joined_once
        if status == "ok":
            channel.state = next_state(channel.state, ChannelEvent.JOIN_OK)
            channel.joined_once = True
            channel.rejoin_backoff.reset()
            self._events.append(ChannelJoined(channel.topic, response, not first, channel=channel))
            self._flush_buffer(channel)
            return
        channel.state = next_state(channel.state, ChannelEvent.JOIN_ERROR)
        self._events.append(JoinFailed(channel, status, response, first))
        if first:
            self._end_channel(
                channel, ChannelEvent.CLOSE, CloseReason.JOIN_FAILED, payload=response
            )
        else:
            self._schedule_rejoin(channel, now)

    def _on_server_error(self, channel: ChannelCore, message: Message, now: float) -> None:
        state = channel.state
        if state is ChannelState.LEAVING:
            self._end_channel(
                channel, ChannelEvent.ERROR, CloseReason.LEFT, payload=message.payload
            )
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
            timer=Timer(_push_fired),
        )
        push.timer.owner = push
        return push

    def _finish(self, push: Push) -> None:
        """A user push is done: stop its timer, and drop the timer's reference back to the
        push, so the push (with its payload) is freed as soon as its caller lets go."""
        push.done = True
        self._timers.cancel(push.timer)
        push.timer.callback = no_timer
        push.timer.owner = None

    def _send(self, message: Message) -> None:
        self._outbox.append(self.serializer.encode(message))
        self._counters.frames_sent += 1

    def _send_join(self, channel: ChannelCore, now: float) -> None:
        push = channel.join_push
        assert push is not None
        if channel.joined_once and channel.timeout is not None:
            self._timers.schedule(push.timer, now + channel.timeout)
        if channel.params_on_demand and not channel.params_fresh:
            # Ask the I/O layer for this join's params; the join is sent with its answer.
            channel.join_ref = None
            ref = channel.params_ref = self.make_ref()
            self._events.append(JoinParamsNeeded(channel, ref))
            return
        self._write_join(channel)

    def _write_join(self, channel: ChannelCore) -> None:
        push = channel.join_push
        assert push is not None
        channel.params_fresh = False
        ref = self.make_ref()
        push.ref = ref
        channel.join_ref = ref
        channel.pending[ref] = push
        self._send(
            Message(
                join_ref=ref, ref=ref, topic=channel.topic, event=PHX_JOIN, payload=channel.params
            )
        )

    def _reset_join_push(self, channel: ChannelCore, *, keep_deadline: bool) -> None:
        """Forget the join in flight: its reply, if it ever comes, will be ignored (and the
        answer to its params request, if it was waiting for one)."""
        push = channel.join_push
        assert push is not None
        channel.params_ref = None
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
                self._events.append(PushFailed(push, PushFailure.ENCODE_ERROR, exc))
                continue
            push.ref = ref
            channel.pending[ref] = push
            self._outbox.append(frame)
            self._counters.frames_sent += 1

    def _fail_pending(self, channel: ChannelCore, reason: PushFailure, detail: Any) -> None:
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
        self._fail_pending(channel, PushFailure.REPLY_LOST, payload)
        self._events.append(ChannelErrored(channel.topic, payload, channel=channel))
        if rejoin:
            self._schedule_rejoin(channel, now)

    def _schedule_rejoin(self, channel: ChannelCore, now: float) -> None:
        backoff = channel.rejoin_backoff
        delay = backoff.next_delay()
        self._timers.schedule(channel.rejoin_timer, now + delay)
        self._events.append(
            RejoinScheduled(channel.topic, delay, backoff.tries + 1, channel=channel)
        )

    def _rejoin_due(self, channel: ChannelCore, now: float) -> None:
        channel.rejoin_backoff.fired()
        if self._state is SocketState.CONNECTED and channel.state is ChannelState.ERRORED:
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
            self._end_channel(channel, ChannelEvent.LEAVE_DONE, CloseReason.LEFT)

    def _join_timed_out(self, channel: ChannelCore, now: float) -> None:
        channel.params_ref = None
        join_ref = channel.join_ref
        if join_ref is not None:
            # Tell the server to drop a join it may still be processing (phoenix.js does too);
            # its reply carries the old join ref and is dropped as stale.
            self._reset_join_push(channel, keep_deadline=False)
            self._send_leave(channel, join_ref)
        if not channel.joined_once:
            self._end_channel(channel, ChannelEvent.CLOSE, CloseReason.JOIN_TIMEOUT)
            return
        channel.state = next_state(channel.state, ChannelEvent.JOIN_TIMEOUT)
        self._events.append(
            ChannelErrored(
                channel.topic, {"source": "client", "reason": "join_timeout"}, channel=channel
            )
        )
        self._schedule_rejoin(channel, now)

    def _end_channel(
        self,
        channel: ChannelCore,
        event: ChannelEvent,
        reason: CloseReason,
        *,
        payload: Any = None,
        failure: PushFailure = PushFailure.CHANNEL_CLOSED,
    ) -> None:
        channel.state = next_state(channel.state, event)
        channel.close_reason = reason
        channel.params_ref = None
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
        self._events.append(ChannelEnded(channel.topic, reason, payload, channel=channel))


def _rejoin_fired(channel: ChannelCore, now: float) -> None:
    """A channel's rejoin timer passed (the timer's owner is the channel)."""
    rules = channel.rules
    assert isinstance(rules, ChannelRules)
    rules._rejoin_due(channel, now)


def _push_fired(push: Push, now: float) -> None:
    """A push's timeout passed (the timer's owner is the push)."""
    rules = push.channel.rules
    assert isinstance(rules, ChannelRules)
    rules._push_timed_out(push, now)
