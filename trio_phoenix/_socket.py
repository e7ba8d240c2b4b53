"""Socket: the public API of a nursery-scoped Phoenix connection.

The socket's running state, its event pump and its tasks live in ``SocketRuntime``
(``_runtime.py``), which this class extends with the constructor (every option checked), the
properties and the public calls. Every public call gives one command to the sans-IO core and
runs the pump.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import EllipsisType
from typing import Any, Final, final

import trio

from . import _lifecycle as life
from ._channel import Channel
from ._exceptions import ConnectError, ConnectTimeout, SocketClosed
from ._fallback import TransportChoice
from ._longpoll import require_httpx
from ._network import ProxyOption
from ._options import (
    Headers,
    ParamsSource,
    ReconnectAfter,
    TokenSource,
    UrlSource,
    check_options,
    check_trio_token,
)
from ._runtime import SocketRuntime
from ._subscription import Flow, OverflowPolicy, Subscription
from ._sync import Pulse, Waiter
from ._transport import Transport
from ._transports import AnyTransport, TransportName, opener
from .proto import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_TIMEOUT,
    Frame,
    Serializer,
    SocketCore,
    SocketState,
    SocketStatistics,
    phoenix_reconnect_after,
    phoenix_rejoin_after,
    redact_url,
)

__all__ = ["Socket", "SocketState", "SocketStatistics"]

#: Phoenix's own default ``max_frame_size`` (10 MB): larger frames close the connection.
DEFAULT_MAX_MESSAGE_SIZE: Final = 10_000_000

# Only open_socket() and connect_socket() build sockets: a socket nobody runs would hang.
_CONSTRUCTOR_TOKEN: Final = object()


@final
class Socket(SocketRuntime):
    """A Phoenix socket: one WebSocket connection at a time, reconnected as needed.

    Get one from ``open_socket()`` or ``connect_socket()``: ``Socket(...)`` raises
    ``TypeError``.
    """

    __slots__ = ("_headers", "_max_message_size", "_ssl_context", "_transport_name")

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
        self._transport_name = transport
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
            on_fallback=self._fell_back,
        )
        self._nursery: trio.Nursery | None = None
        self._proxy = proxy
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._cancel_scope: trio.CancelScope | None = None
        self._transport: AnyTransport | None = None
        self._connection_scope: trio.CancelScope | None = None
        self._attempt_scope: trio.CancelScope | None = None
        self._abort_reason: tuple[int, str, float] | None = None
        self._quiet = True
        self._writing = False
        self._writer_task: trio.lowlevel.Task | None = None
        self._timer_task: trio.lowlevel.Task | None = None
        self._timer_scope: trio.CancelScope | None = None
        self._state_changed = Pulse()
        self._lifecycle: tuple[Subscription[life.LifecycleEvent], ...] = ()
        self._closing: trio.Event | None = None
        self._reader_closes = False
        self._end_waiter: trio.lowlevel.Task | None = None
        self._flow = Flow()
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

    @property
    def transport(self) -> TransportName:
        """The transport of the socket's connections: the ``transport`` option, or
        ``"longpoll"`` once a ``longpoll_fallback`` happened (for the socket's life)."""
        return "longpoll" if self._choice.longpoll else self._transport_name

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
        self._lifecycle = (*self._lifecycle, subscription)
        try:
            yield subscription
        finally:
            self._lifecycle = tuple(s for s in self._lifecycle if s is not subscription)
            subscription.close()

    def statistics(self) -> SocketStatistics:
        """Counters of the socket: frames, pending replies, buffered pushes, drops, ..."""
        return self._core.statistics()

    async def aclose(self) -> None:
        """Leave every channel, close the connection with code 1000 (the closing handshake
        bounded by ``close_timeout``) and wait for the socket's tasks to end: when it returns,
        none of them runs. ``open_socket`` does this when its block ends.

        The leaves go out with the close, in one write, and do not wait for the server's
        replies: each channel ends at once (`ChannelEnded` with reason ``"left"``; its
        pushes fail with ``ChannelClosed``). Phoenix handles the leaves before the close.
        The tasks end on their own once the connection is closed; only when
        ``close_timeout`` passes first are they cancelled.

        Like trio's ``aclose`` methods, it closes the socket even when cancelled, and it is
        always a checkpoint."""
        check_trio_token(self._trio_token, "Socket.aclose()")
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = closing = trio.Event()
        self._flow.close()  # the reader must get to the server's close
        now = trio.current_time()
        transport = self._transport
        core = self._core
        core.close(now)
        self._pump()
        frames = core.data_to_send()  # what was queued, then the leaves
        self._state_changed.fire()
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()  # a connect attempt in flight
        if (
            isinstance(transport, Transport)
            and self._nursery is not None
            and not self._in_own_task()
            and transport.close_now(1000, "", frames)  # the leaves go out with the close
        ):
            # Handed over: the reader gets the server's close and the supervisor ends the
            # tasks, within close_timeout (the socket's scope's deadline). Waiting costs
            # this task nothing but the wait (closing thousands of sockets at once).
            self._reader_closes = True
            if transport.unsent:
                self._start_writer()
            assert self._cancel_scope is not None
            self._cancel_scope.deadline = now + self._close_timeout
            await self._until_tasks_ended()
        else:
            await self._close_here(now, transport, frames)
        closing.set()
        # Closed: now a checkpoint (a socket that was not connected had none so far).
        await trio.lowlevel.checkpoint()

    async def _close_here(
        self, now: float, transport: AnyTransport | None, frames: list[Frame]
    ) -> None:
        """Close the connection in this task (TLS, LongPoll, trio-websocket, or a
        connection already ending), then wait for the tasks to end, all within
        ``close_timeout``, even when cancelled."""
        try:
            with trio.CancelScope(deadline=now + self._close_timeout, shield=True):
                if transport is not None:
                    # The leaves go out with the close frame.
                    await transport.aclose(1000, "", frames)
                    await transport.abort()  # (nothing left to do, unless cut short)
                    self._transport = None
                    self._state_changed.fire()  # the supervisor waits for this
                await self._tasks_ended()
        finally:
            if self._nursery is not None:
                # close_timeout passed (or aclose() runs in one of the socket's tasks).
                with trio.CancelScope(shield=True):
                    if transport is not None:
                        await transport.abort()
                    if self._cancel_scope is not None:
                        self._cancel_scope.cancel()
                    await self._tasks_ended()

    async def _until_tasks_ended(self) -> None:
        """Wait, without a cancel point, until the socket's tasks ended (``_run`` wakes this
        task when they have); they end by the socket's deadline at the latest."""
        if self._nursery is None:
            return
        # (Only the first aclose() gets here; later calls wait for it to finish.)
        self._end_waiter = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(_no_abort)

    async def _tasks_ended(self) -> None:
        """Wait until the socket's tasks ended (unless this task is one of them)."""
        while self._nursery is not None and not self._in_own_task():
            await self._state_changed.wait()

    def _in_own_task(self) -> bool:
        """Whether the current task is the socket's, or runs under it (a ``params`` or
        ``url`` callable that closes the socket)."""
        nursery = self._nursery
        assert nursery is not None
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        while task is not None:
            if task is nursery.parent_task:
                return True
            parent = task.parent_nursery
            task = None if parent is None else parent.parent_task
        return False


def _no_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED  # (rescheduled by _run when the tasks ended)
