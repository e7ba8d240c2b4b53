"""Socket: the nursery-scoped Phoenix connection, its tasks, and the event pump.

Rules this module keeps:

1. The sans-IO ``SocketCore`` decides; this module only moves bytes and time. After every call
   into the core, ``_pump()`` dispatches the core's events (wake waiters, feed subscribers) and
   wakes the writer and timer tasks. Nothing in ``_pump()`` blocks.
2. Three tasks per socket, all inside the socket's own nursery: the supervisor (opens each
   connection and reads it until it ends), the writer (sends the core's frames on the current
   connection, all queued frames in one write) and the timer task (feeds
   ``trio.current_time()`` to the core when its next deadline passes). Only the writer writes,
   so frames go out in the order the core produced them.
3. No task outlives ``open_socket``; the caller sees their own exception, never an internal
   ``ExceptionGroup``.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import EllipsisType
from typing import Any, Final, final

import trio

from . import _lifecycle as life
from ._channel import Channel, resolve_push
from ._exceptions import ConnectError, ConnectTimeout, ReplyLost, SocketClosed
from ._groups import raise_preferred
from ._options import (
    ConnectArgs,
    Headers,
    ParamsSource,
    ReconnectAfter,
    TokenSource,
    check_options,
    check_trio_token,
    connect_args,
    is_permanent,
)
from ._subscription import Flow, OverflowPolicy, Subscription
from ._sync import Pulse, Waiter
from ._transport import Transport, TransportClosed, open_transport
from .proto import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_TIMEOUT,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    CloseTransport,
    ConnectionState,
    CoreStatistics,
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
    Serializer,
    SocketCore,
    phoenix_reconnect_after,
    phoenix_rejoin_after,
    redact_url,
)

__all__ = ["Socket", "SocketState", "SocketStatistics"]

#: The socket's connection state (see ``Socket.state``).
SocketState = ConnectionState
#: Counters of a socket (see ``Socket.statistics()``).
SocketStatistics = CoreStatistics

logger: Final = logging.getLogger("trio_phoenix")

#: Phoenix's own default ``max_frame_size`` (10 MB): larger frames close the connection.
DEFAULT_MAX_MESSAGE_SIZE: Final = 10_000_000

# Only open_socket() and connect_socket() build sockets: a socket nobody runs would hang.
_CONSTRUCTOR_TOKEN: Final = object()


class _ShieldThenStarted:
    """The supervisor's ``task_status`` when it runs inline in ``Socket._run``: shields the
    socket's tasks (if asked) and reports ``_run`` started."""

    __slots__ = ("_shield", "_socket", "_status")

    def __init__(self, socket: Socket, shield: bool, status: trio.TaskStatus[None]) -> None:
        self._socket = socket
        self._shield = shield
        self._status = status

    def started(self, value: None = None) -> None:
        scope = self._socket._cancel_scope
        assert scope is not None
        scope.shield = self._shield
        self._status.started()


@final
class Socket:
    """A Phoenix socket: one WebSocket connection at a time, reconnected as needed.

    Get one from ``open_socket()`` or ``connect_socket()``: ``Socket(...)`` raises
    ``TypeError``.
    """

    def __init__(
        self,
        url: str,
        *,
        _token: object = None,
        params: ParamsSource = None,
        auth_token: TokenSource = None,
        headers: Headers | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat_interval: float | None = DEFAULT_HEARTBEAT_INTERVAL,
        reconnect_after: ReconnectAfter = phoenix_reconnect_after,
        rejoin_after: Callable[[int], float] = phoenix_rejoin_after,
        reconnect_on_clean_close: bool = True,
        serializer: Serializer | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        connect_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        if _token is not _CONSTRUCTOR_TOKEN:
            raise TypeError(
                "Socket has no public constructor: use open_socket() or connect_socket()"
            )
        self._headers = check_options(
            url=url,
            params=params,
            auth_token=auth_token,
            headers=headers,
            ssl_context=ssl_context,
            timeout=timeout,
            heartbeat_interval=heartbeat_interval,
            reconnect_after=reconnect_after,
            rejoin_after=rejoin_after,
            reconnect_on_clean_close=reconnect_on_clean_close,
            serializer=serializer,
            connect_timeout=connect_timeout,
            close_timeout=close_timeout,
            max_message_size=max_message_size,
        )
        self._trio_token = trio.lowlevel.current_trio_token()
        self._core = SocketCore(
            serializer=serializer,
            timeout=timeout,
            heartbeat_interval=heartbeat_interval,
            reconnect_after=reconnect_after,
            rejoin_after=rejoin_after,
            reconnect_on_clean_close=reconnect_on_clean_close,
        )
        self._url = url
        self._params = params
        self._auth_token = auth_token
        self._ssl_context = ssl_context
        self._max_message_size = max_message_size
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._cancel_scope: trio.CancelScope | None = None
        self._transport: Transport | None = None
        self._connection_scope: trio.CancelScope | None = None
        self._abort_reason: tuple[int, str] | None = None
        self._send_wakeup = trio.Event()
        self._timer_scope: trio.CancelScope | None = None
        self._reconnect_due = Waiter()
        self._state_changed = Pulse()
        self._pings: dict[str, Waiter] = {}
        self._lifecycle: list[Subscription[life.LifecycleEvent]] = []
        self._flow = Flow()  # the reader's pause between reads (see _subscription)
        self._closing = False
        self._closed = Waiter()
        self._last_error: ConnectError | None = None
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"<trio_phoenix.Socket {redact_url(self._url)!r} {self.state.value}>"

    # -- public surface ----------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """``idle``, ``connecting``, ``connected``, ``waiting`` (to reconnect), ``disconnected``
        (the reconnect policy gave up) or ``closed``."""
        return self._core.state

    @property
    def last_error(self) -> ConnectError | None:
        """Why the most recent connect attempt failed, until a connection opens (then
        ``None``)."""
        return self._last_error

    @property
    def url(self) -> str:
        """The mount URL given to ``open_socket`` (params are added per connection)."""
        return self._url

    def channel(
        self, topic: str, params: Any = None, *, timeout: float | EllipsisType | None = ...
    ) -> Channel:
        """Create a channel for ``topic``; join it with ``async with`` or ``await join()``.

        ``timeout`` overrides the socket's default for this channel's join, pushes and leave.
        """
        if timeout is ...:
            core = self._core.channel(topic, params)
        else:
            core = self._core.channel(topic, params, timeout=timeout)
        return Channel(self, core)

    async def wait_connected(self) -> None:
        """Wait until the socket is connected.

        Raises:
            SocketClosed: the socket is closed, or the reconnect policy gave up.
        """
        check_trio_token(self._trio_token, "Socket.wait_connected()")
        deadline = trio.current_effective_deadline()
        # Checkpoint first: when this returns, the socket is connected (no schedule point
        # lies between the last check and the return).
        with self._timeout_tells_why(deadline):
            await trio.lowlevel.checkpoint()
            while not self._core.connected:
                if self._core.state in (ConnectionState.CLOSED, ConnectionState.DISCONNECTED):
                    raise SocketClosed(f"the socket is {self._core.state.value}") from (
                        self._failure
                    )
                await self._state_changed.wait()

    @contextmanager
    def _timeout_tells_why(self, deadline: float) -> Iterator[None]:
        """Turn the cancellation of a wait for a connection, once the caller's ``deadline``
        has passed, into ``ConnectTimeout`` from the last connect failure (if any)."""
        try:
            yield
        except trio.Cancelled:
            error = self._last_error
            if error is None or trio.current_time() < deadline:
                raise
            raise ConnectTimeout(
                f"no connection to {redact_url(self._url)} before the deadline; "
                f"last attempt: {error}",
                error,
            ) from error

    async def ping(self) -> float:
        """Send a heartbeat now and return the round trip in seconds (waits to be connected).

        Raises:
            ReplyLost: the connection dropped before the reply.
            SocketClosed: the socket is closed.
        """
        check_trio_token(self._trio_token, "Socket.ping()")
        await self.wait_connected()
        ref = self._core.ping(trio.current_time())
        waiter = Waiter()
        self._pings[ref] = waiter
        self._pump()
        try:
            rtt: float = await waiter.wait()
            return rtt
        finally:
            self._pings.pop(ref, None)
            self._core.cancel_ping(ref)

    @asynccontextmanager
    async def lifecycle(
        self, *, max_buffer: int = 100, overflow: OverflowPolicy = "raise"
    ) -> AsyncIterator[Subscription[life.LifecycleEvent]]:
        """Receive lifecycle events (connected, disconnected, reconnect scheduled, channel
        errored/joined/ended, ...) in a bounded buffer, like ``Channel.subscribe``."""
        subscription: Subscription[life.LifecycleEvent] = Subscription(max_buffer, overflow)
        self._lifecycle.append(subscription)
        try:
            yield subscription
        finally:
            self._lifecycle.remove(subscription)
            subscription.close()

    def statistics(self) -> CoreStatistics:
        """Counters of the socket: frames, pending replies, buffered pushes, drops, ..."""
        return self._core.statistics()

    async def aclose(self) -> None:
        """Leave every channel (bounded by ``close_timeout``), close the connection with code
        1000 and stop the socket's tasks. ``open_socket`` does this when its block ends."""
        check_trio_token(self._trio_token, "Socket.aclose()")
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._flow.close()  # the replies to the leaves must get through
        # One deadline for every step: the leaves (also those already under way) and the
        # closing handshake.
        deadline = trio.current_time() + self._close_timeout
        try:
            with trio.move_on_at(deadline, shield=True):
                if self._core.connected:
                    async with trio.open_nursery() as nursery:
                        for core in self._core.channels():
                            nursery.start_soon(core.context.leave)
            self._core.close()
            self._pump()
            self._state_changed.fire()
            transport = self._transport
            if transport is not None:
                with trio.move_on_at(deadline, shield=True):
                    await transport.aclose(1000, "")
                with trio.CancelScope(shield=True):
                    await transport.abort()
        finally:
            if self._cancel_scope is not None:
                self._cancel_scope.cancel()
            self._closed.set_value(None)

    # -- the event pump ----------------------------------------------------------------------

    def _pump(self) -> None:
        core = self._core
        for event in core.events():
            if type(event) is MessageReceived:
                event.channel.context._deliver(event.message, event.size)
            else:
                self._dispatch(event)
        if core.has_data_to_send:
            self._send_wakeup.set()
        scope = self._timer_scope
        if scope is not None:
            deadline = core.next_deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline

    def _dispatch(self, event: object) -> None:
        if type(event) is PushReplied:
            resolve_push(event.push, "replied", event.status, event.response)
            self._flow.delivered = True  # the reader pauses: the pusher may push again
        elif type(event) is PushTimedOut:
            resolve_push(event.push, "timeout", None, None)
        elif type(event) is PushFailed:
            resolve_push(event.push, event.reason, None, event.detail)
        elif type(event) is ChannelJoined:
            event.channel.context._joined(event.response, event.first)
            logger.debug("joined %r (rejoin=%s)", event.channel.topic, not event.first)
            self._emit(
                life.ChannelJoined(
                    topic=event.channel.topic, response=event.response, rejoin=not event.first
                )
            )
        elif type(event) is JoinFailed:
            event.channel.context._join_failed(event.status, event.response)
            logger.info("join of %r refused: %r", event.channel.topic, event.response)
        elif type(event) is ChannelErrored:
            event.channel.context._errored()
            logger.info("channel %r errored: %r", event.channel.topic, event.payload)
            self._emit(life.ChannelErrored(topic=event.channel.topic, payload=event.payload))
        elif type(event) is ChannelEnded:
            event.channel.context._ended(event.reason, event.payload)
            logger.debug("channel %r closed (%s)", event.channel.topic, event.reason)
            self._emit(
                life.ChannelEnded(
                    topic=event.channel.topic, reason=event.reason, payload=event.payload
                )
            )
        elif type(event) is RejoinScheduled:
            self._emit(
                life.RejoinScheduled(
                    topic=event.channel.topic, delay=event.delay, attempt=event.attempt
                )
            )
        elif type(event) is ReconnectScheduled:
            # A fresh event per schedule: after a heartbeat timeout the reconnect can come due
            # while the dead connection is still being closed.
            self._reconnect_due = Waiter()
            logger.info("reconnecting in %.3f s (attempt %d)", event.delay, event.attempt)
            self._emit(life.ReconnectScheduled(delay=event.delay, attempt=event.attempt))
        elif type(event) is ReconnectDue:
            self._reconnect_due.set_value(None)
        elif type(event) is CloseTransport:
            logger.warning("heartbeat timeout; closing the connection and reconnecting")
            self._emit(life.HeartbeatTimeout())
            self._abort_connection(event.code, event.reason)
        elif type(event) is PingReplied:
            waiter = self._pings.get(event.ref)
            if waiter is not None:
                waiter.set_value(event.rtt)
        elif type(event) is PingLost:
            waiter = self._pings.get(event.ref)
            if waiter is not None:
                waiter.set_error(ReplyLost("heartbeat", "connection_closed"))
        elif type(event) is FrameDropped:
            if event.reason == "malformed":
                logger.warning("ignored a malformed frame from the server: %s", event.error)
            else:
                message = event.message
                logger.debug(
                    "dropped a message (%s): topic=%r event=%r",
                    event.reason,
                    message.topic if message else None,
                    message.event if message else None,
                )

    def _emit(self, event: life.LifecycleEvent) -> None:
        for subscription in self._lifecycle:
            subscription.offer(event)

    def _abort_connection(self, code: int, reason: str) -> None:
        self._abort_reason = (code, reason)
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
        with trio.CancelScope() as self._cancel_scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._run_timers)
                    nursery.start_soon(self._write)
                    if wait_connected:
                        # The supervisor runs in this task (one task fewer per socket) and
                        # reports started itself, once the first connection is open.
                        await self._supervise(
                            task_status=_ShieldThenStarted(self, shield, task_status)
                        )
                    else:
                        self._cancel_scope.shield = shield
                        task_status.started()
                        await self._supervise()
            except BaseExceptionGroup as group:
                try:
                    raise_preferred(group, None)
                except BaseException as exc:
                    if not isinstance(exc, trio.Cancelled):
                        self._failure = exc  # what the callers' SocketClosed comes from
                    raise
            finally:
                self._core.close()
                self._pump()
                self._state_changed.fire()

    async def _run_timers(self) -> None:
        """Feed the time to the core whenever its next deadline passes; ``_pump`` moves the
        sleeping scope's deadline earlier when a command adds an earlier timer."""
        core = self._core
        while True:
            deadline = core.next_deadline()
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            core.handle_timers(trio.current_time())
            self._pump()

    async def _connect_args(self) -> ConnectArgs:
        return await connect_args(
            self._url, self._params, self._auth_token, self._core.serializer.vsn
        )

    async def _supervise(self, *, task_status: _ShieldThenStarted | None = None) -> None:
        core = self._core
        started = False
        while not self._closed_for_good():
            core.connection_started(trio.current_time())
            self._state_changed.fire()
            transport = await self._open(first=not started)
            if transport is not None:
                self._transport = transport  # where the writer sends from now on
                self._last_error = None
                core.connection_opened(trio.current_time())
                self._pump()
                self._state_changed.fire()
                logger.info("connected to %s", redact_url(self._url))
                self._emit(life.Connected(connects=core.statistics().connects))
                if not started:
                    started = True
                    if task_status is not None:
                        task_status.started()
                code, reason = await self._run_connection(transport)
                if self._closing:
                    # aclose() is finishing the closing handshake; it stops us after.
                    await trio.sleep_forever()
                # Disconnected first: errored channels and the reconnect follow from it.
                logger.info("disconnected (code %s, %r)", code, reason)
                self._emit(life.Disconnected(code=code, reason=reason))
                core.connection_lost(trio.current_time(), code)
                self._pump()
                self._state_changed.fire()
            if core.state is ConnectionState.DISCONNECTED:
                logger.warning("the reconnect policy gave up; the socket is closed")
                core.close()
                self._pump()
                self._state_changed.fire()
            if not self._closed_for_good():
                await self._reconnect_due.wait()
        if not started and task_status is not None:
            # open_socket is still waiting for the first connection: tell it why none came.
            raise self._last_error or SocketClosed("the socket was closed before it connected")

    def _closed_for_good(self) -> bool:
        return self._core.state is ConnectionState.CLOSED

    async def _open(self, *, first: bool) -> Transport | None:
        """Open a transport, or report the failure to the core and return ``None``."""
        try:
            url, subprotocols = await self._connect_args()
            with trio.fail_after(
                math.inf if self._connect_timeout is None else self._connect_timeout
            ):
                return await open_transport(
                    url,
                    subprotocols=subprotocols,
                    headers=self._headers,
                    ssl_context=self._ssl_context,
                    max_message_size=self._max_message_size,
                )
        except (ConnectError, trio.TooSlowError) as exc:
            error = (
                exc
                if isinstance(exc, ConnectError)
                else ConnectError(f"connecting to {redact_url(self._url)} timed out")
            )
            if first and is_permanent(error):
                raise error from error.__cause__
            logger.warning("%s", error)
            self._last_error = error
            self._reconnect_due = Waiter()
            self._core.connection_failed(trio.current_time())
            self._emit(life.ConnectFailed(error=error))
            self._pump()
            self._state_changed.fire()
            return None

    async def _run_connection(self, transport: Transport) -> tuple[int | None, str | None]:
        """Read one connection until it ends (the writer task sends on ``self._transport``);
        return the close code."""
        self._abort_reason = None
        try:
            with trio.CancelScope() as self._connection_scope:
                try:
                    await self._read(transport)
                except TransportClosed as closed:
                    return closed.code, closed.reason
            # Aborted by the core (heartbeat timeout): close without waiting on a dead peer.
            code, reason = self._aborted_with()
            with trio.move_on_after(0.1):  # a dead peer will not answer the close
                await transport.aclose(code, reason)
            return code, reason
        finally:
            self._connection_scope = None
            if not self._closing:  # else aclose() finishes the close and closes the stream
                self._transport = None
                with trio.CancelScope(shield=True):
                    await transport.abort()

    def _aborted_with(self) -> tuple[int, str]:
        return self._abort_reason or (1000, "")

    async def _read(self, transport: Transport) -> None:
        core = self._core
        receive_batch = transport.receive_batch
        flow = self._flow
        step = flow.SLICE
        while True:
            frames = await receive_batch()
            for start in range(0, len(frames), step):
                now = trio.current_time()
                for frame in frames[start : start + step]:
                    core.receive(frame, now)
                self._pump()
                if flow.delivered or flow.full:
                    # Let the consumers run before routing more; wait while an
                    # overflow="wait" subscription is full.
                    await flow.pause()

    async def _write(self) -> None:
        """Send the core's frames on the current connection, all queued frames in one write.

        One writer for the socket's whole life: frames go out in the order the core produced
        them, and a connection loss only costs the frames of that connection (the core fails
        their pushes)."""
        core = self._core
        while True:
            transport = self._transport
            frames = core.data_to_send() if transport is not None else None
            if not frames:
                self._send_wakeup = trio.Event()
                await self._send_wakeup.wait()
                continue
            assert transport is not None
            try:
                await transport.send_many(frames)
            except TransportClosed:
                pass  # the reader sees the loss and reports it
