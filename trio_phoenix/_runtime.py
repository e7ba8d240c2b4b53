"""The running half of a ``Socket``: its state, the event pump and its tasks.

``Socket`` (``_socket.py``) is the public API and its option checking; this base class holds
what runs. Rules it keeps:

1. The sans-IO ``SocketCore`` decides; this module only moves bytes and time. After every call
   into the core, ``_pump()`` dispatches the core's events (wake waiters, feed subscribers),
   sends the frames the core queued and moves the timer task's deadline. Nothing in
   ``_pump()`` blocks. It is the only dispatch of core events in the Trio layer: one
   ``match``, typed, reaching the Trio ``Channel`` through ``ChannelCore.owner`` and a
   caller's waiter through ``Push.waiter``.
2. Two tasks per idle socket: ``_run`` itself is the supervisor (opens each connection and
   reads it until it ends); in its nursery runs the timer task (feeds ``trio.current_time()``
   to the core when its next deadline passes, apart from any write, so that a write blocked
   on a dead peer does not hold back the heartbeat timeout). A writer task runs only while
   frames wait: the pump starts one, which sends all queued frames in one write until none
   are left. No caller's push waits in a write (a server that stops reading cannot hold a
   push past its deadline): on a quiet connection (``_quiet``: nothing written since the
   last read or write) of the WebSocket transport on plain TCP, ``_pump()`` writes the
   frames with the non-blocking ``Transport.write_now`` (no writer task per push); the
   writer sends what the kernel did not take before anything else, so frames go out in the
   order the core produced them. ``aclose()`` writes through its transport only.
3. No task outlives ``open_socket`` or ``aclose()``; the caller sees their own exception,
   never an internal ``ExceptionGroup``. Once the core is closed the tasks return on their
   own (cancelling thousands of sockets costs far more); the socket's cancel scope is only
   cancelled when ``close_timeout`` passes first.
"""

from __future__ import annotations

import logging
import math
from typing import Final, assert_never

import attrs
import trio

from . import _lifecycle as life
from ._exceptions import ConnectError, ReplyLost, SocketClosed
from ._fallback import TransportChoice
from ._groups import raise_preferred
from ._network import ProxyOption, proxy_for
from ._options import (
    ParamsSource,
    RedactedURL,
    TokenSource,
    UrlSource,
    connect_args,
    evaluate,
    is_permanent,
    resolve_url,
)
from ._outcomes import settle_push
from ._subscription import Flow, Subscription
from ._sync import Pulse
from ._transport import Transport, TransportClosed
from ._transports import AnyTransport
from .proto import (
    ChannelCore,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelOwner,
    CloseTransport,
    DisconnectRequested,
    DropConnection,
    Frame,
    FrameDropped,
    JoinFailed,
    JoinParamsNeeded,
    MessageReceived,
    PingLost,
    PingReplied,
    PushFailed,
    PushReplied,
    PushTimedOut,
    ReconnectDue,
    ReconnectScheduled,
    RejoinScheduled,
    SocketCore,
    SocketState,
    redact_url,
)

logger: Final = logging.getLogger("trio_phoenix")


class SocketRuntime:
    """A socket's running state, its event pump and its tasks (``Socket`` sets the state up
    in its constructor and adds the public API)."""

    __slots__ = (
        "_abort_reason",
        "_attempt_scope",
        "_auth_token",
        "_cancel_scope",
        "_choice",
        "_close_timeout",
        "_closing",
        "_connect_timeout",
        "_connection_scope",
        "_core",
        "_end_waiter",
        "_failure",
        "_flow",
        "_last_error",
        "_lifecycle",
        "_nursery",
        "_params",
        "_proxy",
        "_quiet",
        "_reader_closes",
        "_state_changed",
        "_timer_scope",
        "_timer_task",
        "_transport",
        "_trio_token",
        "_url",
        "_url_source",
        "_writer_task",
        "_writing",
    )

    _trio_token: trio.lowlevel.TrioToken
    _core: SocketCore
    _url_source: UrlSource
    _url: str  # the mount URL of the latest connect attempt
    _params: ParamsSource
    _auth_token: TokenSource
    _choice: TransportChoice
    _proxy: ProxyOption
    _connect_timeout: float | None
    _close_timeout: float
    # Where a transport or a channel may run a task; None once the socket's tasks ended.
    _nursery: trio.Nursery | None
    _cancel_scope: trio.CancelScope | None
    _transport: AnyTransport | None
    _connection_scope: trio.CancelScope | None
    _attempt_scope: trio.CancelScope | None  # a connect attempt in flight
    # Why the current connection is being closed by us: code, reason, and how long to wait
    # for the server's close.
    _abort_reason: tuple[int, str, float] | None
    # No frame was written since the last read or write cycle: the pump may write directly.
    _quiet: bool
    _writing: bool  # a writer task was started and has not ended
    _writer_task: trio.lowlevel.Task | None
    _timer_task: trio.lowlevel.Task | None
    _timer_scope: trio.CancelScope | None
    # Fired on every change of the core's connection state, and when a reconnect is due.
    _state_changed: Pulse
    _lifecycle: tuple[Subscription[life.LifecycleEvent], ...]  # replaced, never mutated
    _closing: trio.Event | None  # set by aclose() once it has closed
    # aclose() started the close handshake and left the rest to the reader and supervisor.
    _reader_closes: bool
    _end_waiter: trio.lowlevel.Task | None  # the aclose() that handed the close over
    _flow: Flow  # the reader's pause between reads (see _subscription)
    _last_error: ConnectError | None
    _failure: BaseException | None

    # -- the event pump ----------------------------------------------------------------------

    def _pump(self) -> None:
        """Act on the core's events, then wake the writer and move the timer task's deadline.

        The one dispatch of the core's events: each goes to the object it concerns (the
        Trio ``Channel`` that owns a core channel, the task waiting on a push or a ping),
        found through the core's own objects rather than a lookup table."""
        core = self._core
        for event in core.events():
            match event:
                case MessageReceived():  # the hot path: no helper call
                    owner = event.channel.owner
                    assert owner is not None
                    owner._deliver(event.message, event.size)
                case PushReplied():
                    settle_push(event)
                    self._flow.replied = True  # the reader pauses: the pusher may push again
                case PushTimedOut() | PushFailed():
                    settle_push(event)
                case ChannelJoined():
                    owner_of(event.channel)._joined(event.response, event.rejoin)
                    logger.debug("joined %r (rejoin=%s)", event.topic, event.rejoin)
                    self._emit_channel_event(event)
                case JoinFailed():
                    owner_of(event.channel)._join_failed(event.status, event.response)
                    logger.info("join of %r refused: %r", event.channel.topic, event.response)
                case JoinParamsNeeded():
                    owner_of(event.channel)._params_needed(event.ref)
                case ChannelErrored():
                    owner_of(event.channel)._errored()
                    logger.info("channel %r errored: %r", event.topic, event.payload)
                    self._emit_channel_event(event)
                case ChannelEnded():
                    owner_of(event.channel)._ended(event.reason, event.payload)
                    logger.debug("channel %r closed (%s)", event.topic, event.reason)
                    self._emit_channel_event(event)
                case RejoinScheduled():
                    self._emit_channel_event(event)
                case ReconnectScheduled():
                    logger.info("reconnecting in %.3f s (attempt %d)", event.delay, event.attempt)
                    self._emit(event)
                case ReconnectDue():
                    self._state_changed.fire()  # the supervisor waits for core.reconnect_due
                case CloseTransport():
                    logger.warning("heartbeat timeout; closing the connection and reconnecting")
                    self._emit(life.HeartbeatTimeout())
                    self._abort_connection(event.code, event.reason, 0.1)
                case DropConnection():
                    logger.info("dropping the connection on request (%s)", event.reason)
                    if self._attempt_scope is not None:
                        self._attempt_scope.cancel()
                    grace = self._close_timeout if event.graceful else 0.1
                    self._abort_connection(event.code, event.reason, grace)
                case DisconnectRequested():
                    self._emit(event)
                case PingReplied():
                    if self._choice.ping_answered(event.ref) and self._connection_scope:
                        self._connection_scope.deadline = math.inf  # the WebSocket passed
                    if event.waiter is not None:
                        event.waiter.set_value(event.rtt)
                case PingLost():
                    self._choice.ping_lost(event.ref)
                    if event.waiter is not None:
                        event.waiter.set_error(ReplyLost("heartbeat", "connection_closed"))
                case FrameDropped(reason="malformed"):
                    logger.warning("ignored a malformed frame from the server: %s", event.error)
                case FrameDropped():
                    message = event.message
                    logger.debug(
                        "dropped a message (%s): topic=%r event=%r",
                        event.reason,
                        message.topic if message else None,
                        message.event if message else None,
                    )
                case _ as unreachable:  # pragma: no cover
                    assert_never(unreachable)
        if core.has_data_to_send and not self._writing and self._closing is None:
            # (A writer at work takes them when done; aclose() takes the last ones.)
            transport = self._transport
            if transport is None:
                pass  # they wait for the connection (its pump sends them)
            elif (
                self._quiet
                and isinstance(transport, Transport)
                and transport.write_now(core.data_to_send) is not None
            ):
                # Written at once, without a task switch to a writer: the first frames
                # since the last read or write (a burst is batched by the writer).
                self._quiet = False
                if transport.unsent:
                    self._start_writer()  # it sends the rest, first
            else:
                self._start_writer()
        scope = self._timer_scope
        if scope is not None:
            deadline = core.next_deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline
            elif core.state is SocketState.CLOSED:
                self._stop_timer()  # (before a stale deadline cancels its wait)

    def _emit_channel_event(
        self,
        event: life.ChannelJoined | life.ChannelErrored | life.ChannelEnded | life.RejoinScheduled,
    ) -> None:
        """Hand a core channel event to the lifecycle subscribers, without the core channel."""
        if self._lifecycle:
            self._emit(attrs.evolve(event, channel=None))

    def _emit(self, event: life.LifecycleEvent) -> None:
        for subscription in self._lifecycle:
            subscription.offer(event)

    def _fell_back(self, error: ConnectError | None) -> None:
        """The transport choice moved to LongPoll for the socket's life."""
        self._emit(life.TransportFallback(transport="longpoll", error=error))

    def _abort_connection(self, code: int, reason: str, grace: float) -> None:
        """Close the current connection with ``code``, waiting ``grace`` seconds at most for
        the server's close (a dead peer will not answer)."""
        self._abort_reason = (code, reason, grace)
        if self._connection_scope is not None:
            self._connection_scope.cancel()

    # -- tasks -------------------------------------------------------------------------------

    async def _run(
        self,
        *,
        wait_connected: bool = True,
        shield: bool = False,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the socket's tasks until ``aclose()``; report started once connected (or at
        once, without ``wait_connected``).

        With ``shield``, once connected only ``aclose()`` stops the tasks: ``open_socket``
        always calls it, and its shielded leaves and closing handshake need the reader and
        writer alive even when the caller's block is being cancelled.
        """
        try:
            async with trio.open_nursery() as nursery:
                # The nursery's own scope is the socket's (aclose() cancels it as a fallback).
                self._cancel_scope = nursery.cancel_scope
                self._nursery = nursery
                nursery.start_soon(self._run_timers)
                if not wait_connected:
                    nursery.cancel_scope.shield = shield
                    task_status.started()
                # The supervisor runs in this task; it reports started once connected.
                # (No reference to the task status stays: it holds the start's nursery.)
                starting = [task_status] if wait_connected else []
                del task_status
                await self._supervise(starting, shield)
                self._end_tasks(nursery)
        except BaseExceptionGroup as group:
            try:
                raise_preferred(group, None)
            except BaseException as exc:
                if not isinstance(exc, trio.Cancelled):
                    self._failure = exc  # what the callers' SocketClosed comes from
                raise
        finally:
            self._nursery = None  # aclose() waits for this
            self._core.close()
            self._pump()
            self._state_changed.fire()
            waiter, self._end_waiter = self._end_waiter, None
            if waiter is not None:
                trio.lowlevel.reschedule(waiter)

    def _end_tasks(self, nursery: trio.Nursery) -> None:
        """The core is closed and the supervisor done: wake the timer task, which returns (no
        cancellation: it costs much more at scale), as a writer does on its own; cancel any
        other task (a channel's params callable, a transport's task)."""
        self._stop_timer()
        timer = self._timer_task
        for task in nursery.child_tasks:
            if task is not timer and task is not self._writer_task:
                nursery.cancel_scope.cancel()
                break

    def _stop_timer(self) -> None:
        """Wake the timer task if it waits for a deadline (it returns once the core is
        closed)."""
        timer = self._timer_task
        if timer is not None and timer.custom_sleep_data is _TIMER_WAIT:
            trio.lowlevel.reschedule(timer)

    async def _run_timers(self) -> None:
        """Feed the time to the core whenever its next deadline passes; ``_pump`` moves the
        sleeping scope's deadline earlier when a command adds an earlier timer. Returns once
        the core is closed (``_end_tasks`` wakes it)."""
        core = self._core
        task = self._timer_task = trio.lowlevel.current_task()
        while core.state is not SocketState.CLOSED:
            deadline = core.next_deadline()
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                # (trio clears it when the task is rescheduled, by _end_tasks or the deadline)
                task.custom_sleep_data = _TIMER_WAIT
                await trio.lowlevel.wait_task_rescheduled(_abort)  # until the deadline
            self._timer_scope = None
            core.handle_timers(trio.current_time())
            self._pump()

    async def _supervise(self, starting: list[trio.TaskStatus[None]], shield: bool) -> None:
        """Open each connection and read it until it ends, then wait for the reconnect the
        core schedules; report started (to the status in ``starting``, if any) once the first
        connection is open, and shield the socket's scope from then on with ``shield``."""
        core = self._core
        started = False
        waiting = bool(starting)
        while True:
            while not (self._closed_for_good() or core.connect_due):
                await self._state_changed.wait()
            if self._closed_for_good():
                break
            core.connection_started(trio.current_time())
            self._state_changed.fire()
            transport = await self._open(first=not started)
            if transport is not None:
                self._transport = transport  # where the writer sends from now on
                self._last_error = None
                core.connection_opened(trio.current_time())
                self._pump()
                self._state_changed.fire()
                logger.info("connected to %s", RedactedURL(self._url))
                if self._lifecycle:
                    self._emit(life.Connected(connects=core.statistics().connects))
                if not started:
                    started = True
                    if starting:
                        assert self._cancel_scope is not None
                        self._cancel_scope.shield = shield
                        starting.pop().started()
                code, reason = await self._run_connection(transport)
                if self._closing is not None:
                    # Unless aclose() handed the close over (then it is done: the stream is
                    # closed), aclose() finishes the closing handshake: wait until it has, so
                    # that a transport's own task (trio-websocket's reader) is not
                    # cancelled first.
                    while self._transport is transport and not self._reader_closes:
                        await self._state_changed.wait()  # (aclose() sets it to None)
                    self._transport = None
                    return
                # Disconnected first: errored channels and the reconnect follow from it.
                logger.info("disconnected (code %s, %r)", code, reason)
                self._emit(life.Disconnected(code=code, reason=reason))
                core.connection_lost(trio.current_time(), code)
                self._pump()
                self._state_changed.fire()
            if self._gave_up():
                logger.warning("the reconnect policy gave up; the socket is closed")
                core.close()
                self._pump()
                self._state_changed.fire()
        if not started and waiting:
            # open_socket is still waiting for the first connection: tell it why none came.
            raise self._last_error or SocketClosed("the socket was closed before it connected")

    def _closed_for_good(self) -> bool:
        return self._core.state is SocketState.CLOSED

    def _gave_up(self) -> bool:
        """Whether the core stopped reconnecting on its own (not on ``disconnect()``): the
        socket is then closed at once."""
        core = self._core
        return core.state is SocketState.DISCONNECTED and not core.disconnect_requested

    async def _open(self, *, first: bool) -> AnyTransport | None:
        """Open a transport, or report the failure to the core and return ``None`` (also when
        the application dropped the attempt: ``disconnect()``, ``reconnect()``).

        One cancel scope per attempt: ``DropConnection`` cancels it, and ``connect_timeout``
        is its deadline once the opening itself starts."""
        transport = None
        with trio.CancelScope() as scope:
            self._attempt_scope = scope
            try:
                transport = await self._attempt(scope, first=first)
            finally:
                self._attempt_scope = None
        if scope.cancelled_caught and trio.current_time() >= scope.deadline:
            message = f"connecting to {redact_url(self._url)} timed out"
            self._attempt_failed(ConnectError(message), first=first)
            return None
        if transport is not None and self._core.state is not SocketState.CONNECTING:
            with trio.CancelScope(shield=True):  # dropped just as it opened
                await transport.abort()
            return None
        return transport

    async def _attempt(self, scope: trio.CancelScope, *, first: bool) -> AnyTransport | None:
        try:
            token = await evaluate(self._auth_token)  # once per attempt, for either transport
            source = self._url_source
            # A str URL was checked once, by the constructor.
            self._url = source if isinstance(source, str) else await resolve_url(source)
            url, subprotocols = await connect_args(
                self._url, self._params, token, self._core.serializer.vsn
            )
            if self._connect_timeout is not None:
                scope.deadline = trio.current_time() + self._connect_timeout
            assert self._nursery is not None
            return await self._choice.open(
                url, subprotocols, token, self._nursery, proxy_for(url, self._proxy)
            )
        except ConnectError as error:
            self._attempt_failed(error, first=first)
            return None

    def _attempt_failed(self, error: ConnectError, *, first: bool) -> None:
        """Report a failed connect attempt to the core (and the lifecycle stream); raise it
        when retrying cannot help the first connection."""
        if self._core.state is not SocketState.CONNECTING:
            return  # the application dropped the attempt as it failed
        if first and is_permanent(error):
            raise error from error.__cause__
        logger.warning("%s", error)
        self._last_error = error
        self._core.connection_failed(trio.current_time())
        if self._lifecycle:
            self._emit(life.ConnectFailed(error=error))
        self._pump()
        self._state_changed.fire()

    async def _run_connection(self, transport: AnyTransport) -> tuple[int | None, str | None]:
        """Read one connection until it ends (the writer task sends on ``self._transport``);
        return the close code."""
        self._abort_reason = None
        try:
            with trio.CancelScope() as self._connection_scope:
                if self._choice.on_probation:
                    # phoenix.js's health check of a fresh WebSocket in fallback mode.
                    now = trio.current_time()
                    probe = self._core.ping(now)
                    self._pump()
                    self._connection_scope.deadline = self._choice.start_probation(probe, now)
                try:
                    while True:
                        frames = await transport.receive_batch()
                        self._quiet = True
                        await self._deliver(frames)
                        del frames  # (not kept while waiting for the next read)
                except TransportClosed as closed:
                    return closed.code, closed.reason
            unanswered = self._choice.probation_ref
            if unanswered is not None and self._abort_reason is None:
                # The fresh WebSocket did not answer its ping in time.
                self._core.cancel_ping(unanswered)
                self._choice.fall_back(None)
                self._abort_reason = (1001, "falling back to LongPoll", 0.1)
            # Aborted by the core (heartbeat timeout: without waiting on a dead peer) or on
            # request (disconnect(), reconnect()).
            code, reason, grace = self._abort_reason or (1000, "", 0.1)
            with trio.move_on_after(grace):
                await transport.aclose(code, reason)
            return code, reason
        finally:
            self._connection_scope = None
            # (Else aclose() finishes the close and closes the stream.)
            if self._closing is None or self._reader_closes:
                if self._closing is None:
                    self._transport = None
                with trio.CancelScope(shield=True):
                    await transport.abort()

    async def _deliver(self, frames: list[Frame]) -> None:
        """Feed ``frames`` to the core, a slice at a time; let the consumers run between
        slices when they were handed messages (a coroutine only while it runs: an idle
        connection's stack holds none)."""
        core = self._core
        flow = self._flow
        step = flow.SLICE
        for start in range(0, len(frames), step):
            now = trio.current_time()
            for frame in frames[start : start + step]:
                core.receive(frame, now)
            self._pump()
            if flow.delivered or flow.replied or flow.full:
                # Let the consumers run before routing more; wait while an
                # overflow="wait" subscription is full.
                await flow.pause()

    def _start_writer(self) -> None:
        """Start a writer task for the frames the pump cannot write itself (none while the
        socket's tasks are not running)."""
        nursery = self._nursery
        if nursery is not None:
            self._writing = True
            nursery.start_soon(self._write)

    async def _write(self) -> None:
        """Send the core's frames on the current connection, all queued frames in one write,
        until none are left; then return (an idle socket keeps no writer task).

        At most one writer at a time (``_writing``), and the pump writes nothing itself while
        one runs: frames go out in the order the core produced them, and a connection loss
        only costs the frames of that connection (the core fails their pushes). Frames
        queued without a connection wait for the next (its pump starts a writer); once the
        socket is closing, ``aclose()`` writes the last frames, with the close frame."""
        core = self._core
        self._writer_task = trio.lowlevel.current_task()
        try:
            while (transport := self._transport) is not None:
                if self._closing is not None:
                    # The rest of what aclose() wrote (the close frame) only.
                    if isinstance(transport, Transport):
                        await transport.send_unsent()
                    break
                frames = core.data_to_send()
                if not frames and not (isinstance(transport, Transport) and transport.unsent):
                    break
                try:
                    await transport.send_many(frames)
                except TransportClosed:
                    pass  # the reader sees the loss and reports it
        finally:
            self._writer_task = None
            self._writing = False
            self._quiet = True  # idle: the next frames may be written by the pump


#: The timer task's ``custom_sleep_data`` while it sleeps until the core's next deadline.
_TIMER_WAIT: Final = object()


def _abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


def owner_of(channel: ChannelCore | None) -> ChannelOwner:
    """The Trio ``Channel`` of a core channel (every channel of a socket has one)."""
    assert channel is not None
    assert channel.owner is not None
    return channel.owner
