"""Socket: the nursery-scoped Phoenix connection, its tasks, and the event pump.

Rules this module keeps:

1. The sans-IO ``SocketCore`` decides; this module only moves bytes and time. After every call
   into the core, ``_pump()`` dispatches the core's events (wake waiters, feed subscribers) and
   wakes the writer and timer tasks. Nothing in ``_pump()`` blocks. It is the only dispatch of
   core events in the Trio layer: one ``match``, typed, reaching the Trio ``Channel`` through
   ``ChannelCore.owner`` and a caller's waiter through ``Push.waiter``.
2. Three tasks per socket, in the nursery of ``_run``: the supervisor (opens each
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
from typing import Any, Final, assert_never, final

import attrs
import trio

from . import _lifecycle as life
from ._channel import Channel
from ._exceptions import ConnectError, ConnectTimeout, ReplyLost, SocketClosed
from ._fallback import TransportChoice
from ._groups import raise_preferred
from ._longpoll import require_httpx
from ._network import ProxyOption, proxy_for
from ._options import (
    Headers,
    ParamsSource,
    ReconnectAfter,
    TokenSource,
    UrlSource,
    check_options,
    check_trio_token,
    connect_args,
    evaluate,
    is_permanent,
    resolve_url,
)
from ._outcomes import settle_push
from ._subscription import Flow, OverflowPolicy, Subscription
from ._sync import Pulse, Waiter
from ._transport import TransportClosed
from ._transports import AnyTransport, TransportName, opener
from .proto import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_TIMEOUT,
    ChannelCore,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelOwner,
    CloseTransport,
    DisconnectRequested,
    DropConnection,
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
    Serializer,
    SocketCore,
    SocketState,
    SocketStatistics,
    phoenix_reconnect_after,
    phoenix_rejoin_after,
    redact_url,
)

__all__ = ["Socket", "SocketState", "SocketStatistics"]

logger: Final = logging.getLogger("trio_phoenix")

#: Phoenix's own default ``max_frame_size`` (10 MB): larger frames close the connection.
DEFAULT_MAX_MESSAGE_SIZE: Final = 10_000_000

# Only open_socket() and connect_socket() build sockets: a socket nobody runs would hang.
_CONSTRUCTOR_TOKEN: Final = object()


@final
class Socket:
    """A Phoenix socket: one WebSocket connection at a time, reconnected as needed.

    Get one from ``open_socket()`` or ``connect_socket()``: ``Socket(...)`` raises
    ``TypeError``.
    """

    def __init__(
        self,
        url: UrlSource,
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
        transport: TransportName = "websocket",
        compress: bool = False,
        longpoll_fallback: float | None = None,
        longpoll_timeout: float = 20.0,
        proxy: ProxyOption = True,
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
            transport=transport,
            compress=compress,
            longpoll_fallback=longpoll_fallback,
            longpoll_timeout=longpoll_timeout,
            proxy=proxy,
        )
        if transport == "longpoll" or longpoll_fallback is not None:
            require_httpx()
        self._trio_token = trio.lowlevel.current_trio_token()
        self._core = SocketCore(
            serializer=serializer,
            timeout=timeout,
            heartbeat_interval=heartbeat_interval,
            reconnect_after=reconnect_after,
            rejoin_after=rejoin_after,
            reconnect_on_clean_close=reconnect_on_clean_close,
        )
        self._url_source = url
        # The mount URL of the latest connect attempt ("" until a url callable first ran).
        self._url = url if isinstance(url, str) else ""
        self._params = params
        self._auth_token = auth_token
        self._ssl_context = ssl_context
        self._max_message_size = max_message_size
        self._choice = TransportChoice(
            longpoll=transport == "longpoll",
            fallback=longpoll_fallback,
            longpoll_timeout=longpoll_timeout,
            websocket=opener(transport),
            compress=compress,
            headers=self._headers,
            ssl_context=ssl_context,
            max_message_size=max_message_size,
            connect_timeout=connect_timeout,
            on_fallback=lambda error: self._emit(
                life.TransportFallback(transport="longpoll", error=error)
            ),
        )
        self._nursery: trio.Nursery | None = None  # where a transport may run a task
        self._proxy = proxy
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._cancel_scope: trio.CancelScope | None = None
        self._transport: AnyTransport | None = None
        self._connection_scope: trio.CancelScope | None = None
        self._attempt_scope: trio.CancelScope | None = None  # a connect attempt in flight
        # Why the current connection is being closed by us: code, reason, and how long to
        # wait for the server's close.
        self._abort_reason: tuple[int, str, float] | None = None
        self._send_wakeup = trio.Event()
        self._timer_scope: trio.CancelScope | None = None
        # Fired on every change of the core's connection state, and when a reconnect is due.
        self._state_changed = Pulse()
        self._lifecycle: list[Subscription[life.LifecycleEvent]] = []
        self._closing: trio.Event | None = None  # set by aclose() once it has closed
        self._flow = Flow()  # the reader's pause between reads (see _subscription)
        self._last_error: ConnectError | None = None
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        source = self._url_source
        where = repr(redact_url(self._url)) if self._url else ""
        if callable(source):
            name = getattr(source, "__qualname__", type(source).__name__)
            where = f"{where} from {name}()" if where else f"url from {name}()"
        return f"<trio_phoenix.Socket {where} {self.state.value}>"

    # -- public surface ----------------------------------------------------------------------

    @property
    def state(self) -> SocketState:
        """``idle``, ``connecting``, ``connected``, ``waiting`` (to reconnect),
        ``disconnected`` (``disconnect()`` was called; ``connect()`` resumes) or ``closed``."""
        return self._core.state

    @property
    def last_error(self) -> ConnectError | None:
        """Why the most recent connect attempt failed, until a connection opens (then
        ``None``)."""
        return self._last_error

    @property
    def url(self) -> str:
        """The mount URL given to ``open_socket`` (params are added per connection); with a
        url callable, the URL it returned for the latest connect attempt (``""`` before
        the first)."""
        return self._url

    def channel(
        self, topic: str, params: Any = None, *, timeout: float | EllipsisType | None = ...
    ) -> Channel:
        """Create a channel for ``topic``; join it with ``async with`` or ``await join()``.

        ``params`` (sent with the join) may be a sync or async callable, evaluated before every
        join and rejoin, e.g. to ask for the messages since the last id seen. What it raises
        on the first join is raised by ``join()``; on a rejoin the channel errors again
        (`ChannelErrored` with ``{"source": "client", "reason": "params_error", "error":
        exception}``) and the rejoin is retried with the rejoin backoff.

        ``timeout`` overrides the socket's default for this channel's join, pushes and leave.
        """
        source = params if callable(params) else None
        options: dict[str, Any] = {} if timeout is ... else {"timeout": timeout}
        core = self._core.channel(
            topic, None if source else params, params_on_demand=source is not None, **options
        )
        return Channel(core, self, source)

    async def wait_connected(self) -> None:
        """Wait until the socket is connected (after ``disconnect()``: until ``connect()``).

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
                if self._closed_for_good() or self._gave_up():
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

    async def disconnect(self) -> None:
        """Close the connection with code 1000 and stay disconnected until ``connect()``
        (phoenix.js ``socket.disconnect()``); an attempt to connect or a reconnect backoff under
        way is abandoned.

        Channels stay: their state shows they are not joined (``errored``) and they rejoin on
        the next connection; pushes and joins made meanwhile wait in the buffer with their
        timeouts running, as during a reconnect, and pushes awaiting a reply fail with
        ``ReplyLost``. The lifecycle stream shows `DisconnectRequested`, then the channels'
        `ChannelErrored` and `Disconnected` (code 1000, reason ``"disconnect"``).

        Returns once the connection is closed (the closing handshake is bounded by
        ``close_timeout``). Like ``aclose``, it disconnects even when cancelled; calling it
        again does nothing.

        Raises:
            SocketClosed: the socket is closed.
        """
        check_trio_token(self._trio_token, "Socket.disconnect()")
        core = self._core
        core.disconnect(trio.current_time())
        self._pump()
        self._state_changed.fire()
        await trio.lowlevel.checkpoint()
        while self._transport is not None and self._closing is None and core.disconnect_requested:
            await self._state_changed.wait()

    async def connect(self) -> None:
        """Connect now (phoenix.js ``socket.connect()``) and wait for the connection: resumes
        a socket after ``disconnect()`` (its channels rejoin), or skips the rest of a
        reconnect backoff. The reconnect schedule starts over. While connecting or connected,
        it only waits for the connection.

        Failed attempts are retried with the reconnect backoff; bound the wait with
        ``trio.fail_after`` (``ConnectTimeout`` then says why the last attempt failed).
        Cancelling the wait does not stop the connecting (``disconnect()`` does).

        Raises:
            SocketClosed: the socket is closed (or closes while waiting).
        """
        check_trio_token(self._trio_token, "Socket.connect()")
        self._core.connect(trio.current_time())
        self._pump()
        await self.wait_connected()

    async def reconnect(self) -> None:
        """Drop the current connection now and connect again at once, without backoff (after
        a network change, say); wait for the new connection. An attempt to connect under way
        is abandoned and started afresh; channels rejoin on the new connection, pushes
        awaiting a reply fail with ``ReplyLost``. The lifecycle stream shows `Disconnected`
        (code 1000, reason ``"reconnect"``) then `Connected`.

        After ``disconnect()`` it does nothing and returns at once: only ``connect()``
        resumes a socket the application disconnected. Cancelling the wait does not stop the
        reconnect.

        Raises:
            SocketClosed: the socket is closed (or closes while waiting).
        """
        check_trio_token(self._trio_token, "Socket.reconnect()")
        core = self._core
        core.reconnect(trio.current_time())
        self._pump()
        if core.disconnect_requested:
            await trio.lowlevel.checkpoint()
            return
        await self.wait_connected()

    async def ping(self) -> float:
        """Send a heartbeat now and return the round trip in seconds (waits to be connected).

        Raises:
            ReplyLost: the connection dropped before the reply.
            SocketClosed: the socket is closed.
        """
        check_trio_token(self._trio_token, "Socket.ping()")
        await self.wait_connected()
        waiter = Waiter()
        ref = self._core.ping(trio.current_time(), waiter)
        self._pump()
        try:
            rtt: float = await waiter.wait()
            return rtt
        finally:
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

    def statistics(self) -> SocketStatistics:
        """Counters of the socket: frames, pending replies, buffered pushes, drops, ..."""
        return self._core.statistics()

    async def aclose(self) -> None:
        """Leave every channel (bounded by ``close_timeout``), close the connection with code
        1000 and stop the socket's tasks. ``open_socket`` does this when its block ends.

        Like trio's ``aclose`` methods, it closes the socket even when cancelled, and it is
        always a checkpoint."""
        check_trio_token(self._trio_token, "Socket.aclose()")
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = closing = trio.Event()
        self._flow.close()  # the replies to the leaves must get through
        # One deadline for every step: the leaves (also those already under way) and the
        # closing handshake.
        deadline = trio.current_time() + self._close_timeout
        try:
            with trio.move_on_at(deadline, shield=True):
                if self._core.connected:
                    async with trio.open_nursery() as nursery:
                        for channel in self._core.channels():
                            nursery.start_soon(_owner(channel).leave)
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
            closing.set()
        # Closed: now a checkpoint (a socket that was not connected had none so far).
        await trio.lowlevel.checkpoint()

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
                    self._flow.delivered = True  # the reader pauses: the pusher may push again
                case PushTimedOut() | PushFailed():
                    settle_push(event)
                case ChannelJoined():
                    _owner(event.channel)._joined(event.response, event.rejoin)
                    logger.debug("joined %r (rejoin=%s)", event.topic, event.rejoin)
                    self._emit_channel_event(event)
                case JoinFailed():
                    _owner(event.channel)._join_failed(event.status, event.response)
                    logger.info("join of %r refused: %r", event.channel.topic, event.response)
                case JoinParamsNeeded():
                    _owner(event.channel)._params_needed(event.ref)
                case ChannelErrored():
                    _owner(event.channel)._errored()
                    logger.info("channel %r errored: %r", event.topic, event.payload)
                    self._emit_channel_event(event)
                case ChannelEnded():
                    _owner(event.channel)._ended(event.reason, event.payload)
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
        if core.has_data_to_send:
            self._send_wakeup.set()
        scope = self._timer_scope
        if scope is not None:
            deadline = core.next_deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline

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
        with trio.CancelScope() as self._cancel_scope:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._run_timers)
                    nursery.start_soon(self._write)
                    if wait_connected:
                        # Started once the first connection is open.
                        await nursery.start(self._supervise)
                    else:
                        nursery.start_soon(self._supervise)
                    self._cancel_scope.shield = shield
                    task_status.started()
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

    async def _supervise(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open each connection and read it until it ends, then wait for the reconnect the
        core schedules; report started once the first connection is open."""
        core = self._core
        started = False
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
                logger.info("connected to %s", redact_url(self._url))
                self._emit(life.Connected(connects=core.statistics().connects))
                if not started:
                    started = True
                    task_status.started()
                code, reason = await self._run_connection(transport)
                if self._closing is not None:
                    # aclose() is finishing the closing handshake; it stops us after.
                    await trio.sleep_forever()
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
        if not started and task_status is not trio.TASK_STATUS_IGNORED:
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
        the application dropped the attempt: ``disconnect()``, ``reconnect()``)."""
        transport = None
        with trio.CancelScope() as self._attempt_scope:
            try:
                transport = await self._attempt(first=first)
            finally:
                self._attempt_scope = None
        if transport is not None and self._core.state is not SocketState.CONNECTING:
            with trio.CancelScope(shield=True):  # dropped just as it opened
                await transport.abort()
            return None
        return transport

    async def _attempt(self, *, first: bool) -> AnyTransport | None:
        try:
            token = await evaluate(self._auth_token)  # once per attempt, for either transport
            self._url = await resolve_url(self._url_source)
            url, subprotocols = await connect_args(
                self._url, self._params, token, self._core.serializer.vsn
            )
            with trio.fail_after(
                math.inf if self._connect_timeout is None else self._connect_timeout
            ):
                assert self._nursery is not None
                return await self._choice.open(
                    url, subprotocols, token, self._nursery, proxy_for(url, self._proxy)
                )
        except (ConnectError, trio.TooSlowError) as exc:
            error = (
                exc
                if isinstance(exc, ConnectError)
                else ConnectError(f"connecting to {redact_url(self._url)} timed out")
            )
            if self._core.state is not SocketState.CONNECTING:
                return None  # the application dropped the attempt as it failed
            if first and is_permanent(error):
                raise error from error.__cause__
            logger.warning("%s", error)
            self._last_error = error
            self._core.connection_failed(trio.current_time())
            self._emit(life.ConnectFailed(error=error))
            self._pump()
            self._state_changed.fire()
            return None

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
                    await self._read(transport)
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
            if self._closing is None:  # else aclose() finishes the close and closes the stream
                self._transport = None
                with trio.CancelScope(shield=True):
                    await transport.abort()

    async def _read(self, transport: AnyTransport) -> None:
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


def _owner(channel: ChannelCore | None) -> ChannelOwner:
    """The Trio ``Channel`` of a core channel (every channel of a socket has one)."""
    assert channel is not None
    assert channel.owner is not None
    return channel.owner
