"""The in-process Phoenix endpoint: options, listener, routing of requests, pubsub, lifecycle.

A new TCP connection is routed by its request line: LongPoll requests to ``_longpoll``,
anything else to ``_upgrade`` (the WebSocket upgrade and the connect hook), whose accepted
connections the server then serves and keeps in `TestServer.connections`.

Rules this module keeps:

1. Nothing outlives the server. `TestServer.run` owns every task; when it is cancelled it stops
   accepting, closes every connection with 1001 ("going away", what Phoenix sends on
   shutdown) within ``close_timeout``, then cancels whatever is left. The connections live
   in a shielded scope so that this goodbye happens even when the caller is cancelled.
2. Handler exceptions are *behaviour* (a crashed channel, a 500 on connect), recorded in
   `TestServer.crashes` and logged; exceptions in the server's own code propagate.
3. Users of `open_test_server` see their own exception, never an internal ExceptionGroup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypedDict, Unpack, final

import attrs
import trio

from trio_phoenix.proto._message import Message
from trio_phoenix.proto._serializer import Frame, Serializer

from .._groups import owning_nursery
from ._connection import ServerConnection
from ._faults import GatedStream
from ._handlers import ChannelFactory, Router, check_payload
from ._handshake import Accept, ConnectHook, ConnectInfo, OriginCheck
from ._longpoll import MAX_HEAD, LongPollSession, is_longpoll_request, serve_http
from ._presence import PresenceOrder, PresenceTracker
from ._upgrade import upgrade
from ._versions import PhoenixVersion, VersionRules, rules_for

if TYPE_CHECKING:
    from ._channel import ChannelProcess

__all__ = [
    "ServerStatistics",
    "TestServer",
    "TestServerOptions",
    "open_test_server",
    "serve_test_server",
]

logger: Final = logging.getLogger("trio_phoenix.testing")

CLOSE_GOING_AWAY: Final = 1001
CLOSE_SERVICE_RESTART: Final = 1012
DISCONNECT_EVENT: Final = "disconnect"


class TestServerOptions(TypedDict, total=False):
    """Keyword options of `TestServer` (for ``open_test_server(**options)``)."""

    connect: ConnectHook | None
    path: str
    host: str
    port: int
    auth_token: bool
    subprotocols: Sequence[str]
    check_origin: OriginCheck
    max_channels_per_transport: int
    max_frame_size: int
    idle_timeout: float | None
    idle_close_code: int
    close_timeout: float
    handshake_timeout: float
    phoenix_version: PhoenixVersion
    presence_order: PresenceOrder
    presence_seed: int | None
    longpoll: bool
    longpoll_window: float


@attrs.frozen(kw_only=True)
class ServerStatistics:
    """Counters of a `TestServer` (see `TestServer.statistics`)."""

    connections_open: int
    connections_accepted: int
    upgrades_rejected: int
    channels_joined: int
    messages_received: int


def _mount_path(path: str) -> str:
    return "/" + path.strip("/")


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@final
@attrs.define(eq=False, repr=False)
class TestServer:
    """A Phoenix endpoint with one socket, serving WebSockets on ``127.0.0.1``.

    Args:
        channels: topic patterns (``"room:*"`` or exact) to handler factories.
        connect: ``connect(params, connect_info)``, sync or async; returns the socket id (or
            `Accept`), or raises/returns `Reject`. Accepts everyone when ``None``.
        path: the socket's mount path; the WebSocket endpoint is ``path + "/websocket"``.
        auth_token: read a token from ``Sec-WebSocket-Protocol`` (Phoenix ``auth_token: true``)
            and answer with the ``phoenix`` subprotocol.
        subprotocols: further subprotocols to accept.
        check_origin: see `~trio_phoenix.testing.OriginCheck`; only applied when the request has
            an ``Origin`` header.
        max_channels_per_transport: joins beyond this are refused.
        max_frame_size: a client frame whose header plus payload is bigger closes the
            connection with a code-only 1009 as soon as its header arrives (Bandit's rule).
        idle_timeout: seconds without received data before the server closes the connection
            (``None``: never); the code is ``idle_close_code`` (Cowboy: 1000, Bandit: 1002).
        close_timeout: how long a closing handshake may take before the TCP stream is cut.
        handshake_timeout: how long a new TCP connection may take to send its upgrade request.
        phoenix_version: ``"1.8"`` (default) or ``"1.7"``, for what changed between them: the
            close code of `disconnect` (1001 / 1000), the ``phx_error`` payload
            (``{"reason": "channel_crash"}`` / ``{}``) and which join refs are checked (1.8:
            every message's, a null-ref channel ignoring any with a join ref; 1.7: only
            ``phx_leave``'s). See ``trio_phoenix.testing._versions``.
        presence_order: ``"diff_first"`` (default; a join's own ``presence_diff`` goes out
            before the ``presence_state`` pushed after it, as on a real Phoenix),
            ``"state_first"`` (diffs are broadcast by a server task, after the current step)
            or ``"random"`` (each diff picks one, from ``random.Random(presence_seed)``).
        presence_seed: the seed of ``presence_order="random"``.
        longpoll: serve LongPoll at ``path + "/longpoll"`` (Phoenix's ``longpoll: true``; off
            by default, as in Phoenix); see ``trio_phoenix.testing._longpoll``.
        longpoll_window: how long a poll waits for messages, in seconds (Phoenix's
            ``window_ms``: 10 s); a session not polled for 1.5 times as long stops.

    The WebSocket layer follows Bandit 1.11 (see ``trio_phoenix.testing._websocket``):
    close frames are code-only, a client's close is answered with 1000 (1002 for codes that
    may not be sent), TCP is half-closed right after each close frame, text that is not UTF-8
    closes with 1007, and an unmasked client frame is swallowed with all that follows.

    Example:
        >>> async def main():
        ...     async with open_test_server(demo_channels()) as server:
        ...         print(server.url)   # ws://127.0.0.1:PORT/socket
    """

    __test__ = False  # not a pytest test class, despite the name

    _channels: Mapping[str, ChannelFactory] | None = attrs.field(default=None, alias="channels")
    _connect: ConnectHook | None = attrs.field(default=None, kw_only=True, alias="connect")
    path: str = attrs.field(default="/socket", kw_only=True, converter=_mount_path)
    host: str = attrs.field(default="127.0.0.1", kw_only=True)
    _requested_port: int = attrs.field(default=0, kw_only=True, alias="port")
    _auth_token: bool = attrs.field(default=False, kw_only=True, alias="auth_token")
    _subprotocols: tuple[str, ...] = attrs.field(
        default=(), kw_only=True, converter=_strings, alias="subprotocols"
    )
    _check_origin: OriginCheck = attrs.field(default=False, kw_only=True, alias="check_origin")
    max_channels_per_transport: int = attrs.field(default=100, kw_only=True)
    max_frame_size: int = attrs.field(default=10_000_000, kw_only=True)
    idle_timeout: float | None = attrs.field(default=60.0, kw_only=True)
    idle_close_code: int = attrs.field(default=1000, kw_only=True)
    close_timeout: float = attrs.field(default=5.0, kw_only=True)
    handshake_timeout: float = attrs.field(default=60.0, kw_only=True)
    phoenix_version: PhoenixVersion = attrs.field(default="1.8", kw_only=True)
    presence_order: PresenceOrder = attrs.field(default="diff_first", kw_only=True)
    presence_seed: int | None = attrs.field(default=None, kw_only=True)
    longpoll: bool = attrs.field(default=False, kw_only=True)
    longpoll_window: float = attrs.field(default=10.0, kw_only=True)
    #: The channel routes.
    router: Router = attrs.field(init=False)
    #: The presence tracker.
    presence: PresenceTracker = attrs.field(init=False)
    #: The connections that are open now.
    connections: list[ServerConnection] = attrs.field(factory=list, init=False)
    #: Every connection ever accepted, in order.
    accepted_connections: list[ServerConnection] = attrs.field(factory=list, init=False)
    #: Exceptions raised by handlers and the connect hook (each also logged).
    crashes: list[BaseException] = attrs.field(factory=list, init=False)
    _port: int | None = attrs.field(default=None, init=False)
    _reject_status: int | None = attrs.field(default=None, init=False)
    _upgrades_rejected: int = attrs.field(default=0, init=False)
    _messages_received: int = attrs.field(default=0, init=False)
    _subscribers: dict[str, list[ChannelProcess]] = attrs.field(factory=dict, init=False)
    _changed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot, init=False)
    _running: bool = attrs.field(default=False, init=False)
    _rules: VersionRules = attrs.field(init=False)
    _longpoll_sessions: dict[str, LongPollSession] = attrs.field(factory=dict, init=False)
    _connection_nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._rules = rules_for(self.phoenix_version)
        self.router = Router(self._channels)
        self.presence = PresenceTracker(
            self.broadcast, order=self.presence_order, seed=self.presence_seed
        )

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<trio_phoenix.testing.TestServer {where}>"

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: the server has not started.
        """
        if self._port is None:
            raise RuntimeError("the server has not started yet")
        return self._port

    @property
    def url(self) -> str:
        """The socket's mount URL, e.g. ``ws://127.0.0.1:PORT/socket`` (give it to a client)."""
        return f"ws://{self.host}:{self.port}{self.path}"

    # -- endpoint API -----------------------------------------------------------------------

    def channel(self, pattern: str, factory: ChannelFactory) -> None:
        """Add a route, like ``channel "room:*", RoomChannel`` in a Phoenix socket."""
        self.router.add(pattern, factory)

    def broadcast(self, topic: str, event: str, payload: dict[str, Any] | bytes) -> None:
        """Send ``[null, null, topic, event, payload]`` to every channel joined to ``topic``.

        A ``"disconnect"`` broadcast to a socket id also closes that id's connections, as
        ``Endpoint.broadcast(id, "disconnect", %{})`` does (see `disconnect`).

        Raises:
            ValueError: the payload is not a dict or bytes, or a subscriber's serializer
                cannot encode it (nothing is sent then).
        """
        self._broadcast(topic, event, payload)

    def disconnect(self, socket_id: str) -> None:
        """Close every connection whose socket id is ``socket_id``: 1001 (Phoenix 1.8) or 1000
        (``phoenix_version="1.7"``)."""
        for connection in list(self.connections):
            if connection.id == socket_id:
                connection._request_close(self._rules.disconnect_code)

    def drain(self) -> None:
        """Close every open connection with 1012, as Phoenix's socket drainer does."""
        for connection in list(self.connections):
            connection._request_close(CLOSE_SERVICE_RESTART)

    def reject_upgrades(self, status_code: int | None) -> None:
        """Answer new WebSocket upgrade requests with HTTP ``status_code``; ``None`` accepts them
        again. LongPoll keeps serving: ``reject_upgrades(404)`` is a mount with Phoenix's
        ``websocket: false``, where the upgrade falls through to the router's 404."""
        self._reject_status = status_code

    async def wait_connections(self, count: int) -> ServerConnection:
        """Wait until ``count`` connections have been accepted in all; return the last of them."""
        await trio.lowlevel.checkpoint()
        while len(self.accepted_connections) < count:
            await self._changed.park()
        return self.accepted_connections[count - 1]

    def statistics(self) -> ServerStatistics:
        """Counters for tests and debugging."""
        return ServerStatistics(
            connections_open=len(self.connections),
            connections_accepted=len(self.accepted_connections),
            upgrades_rejected=self._upgrades_rejected,
            channels_joined=sum(len(c.topics) for c in self.connections),
            messages_received=self._messages_received,
        )

    # -- running ----------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[TestServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; supports ``server = await nursery.start(server.run)``."""
        if self._running:
            raise RuntimeError("this TestServer is already running")
        self._running = True
        listeners = await trio.open_tcp_listeners(self._requested_port, host=self.host)
        self._port = listeners[0].socket.getsockname()[1]
        connection_scope = trio.CancelScope(shield=True)
        try:
            async with trio.open_nursery() as nursery:
                handler_nursery = await nursery.start(self._host_connections, connection_scope)
                await nursery.start(
                    partial(
                        trio.serve_listeners,
                        self._handle_tcp,
                        listeners,
                        handler_nursery=handler_nursery,
                    )
                )
                nursery.start_soon(self.presence.dispatch)
                task_status.started(self)
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._say_goodbye()
                    connection_scope.cancel()
        finally:
            self._running = False
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    async def _host_connections(
        self, scope: trio.CancelScope, *, task_status: trio.TaskStatus[trio.Nursery]
    ) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                self._connection_nursery = nursery
                task_status.started(nursery)
                await trio.sleep_forever()

    async def _say_goodbye(self) -> None:
        for connection in list(self.connections):
            if connection.stalled:
                connection.drop()  # a black hole cannot carry a close frame
            else:
                connection._request_close(CLOSE_GOING_AWAY)
        with trio.move_on_after(self.close_timeout):
            while self.connections:
                await self._changed.park()

    # -- one TCP connection -------------------------------------------------------------------

    async def _handle_tcp(self, tcp: trio.SocketStream) -> None:
        stream = GatedStream(tcp)
        try:
            head = b""
            with trio.move_on_after(self.handshake_timeout):
                head = await _read_request_line(stream)
            if not head:
                return
            if is_longpoll_request(head, self.path):
                if self.longpoll:
                    await serve_http(self, stream, head)
                else:  # no such route
                    await stream.send_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            else:
                connection = await upgrade(self, stream, head)
                if connection is not None:
                    await self._serve_connection(connection)
            if not stream.dropped:
                await self._linger(stream)
        finally:
            await trio.aclose_forcefully(stream)

    async def _linger(self, stream: GatedStream) -> None:
        # Half-close and read until the client closes too, so that unread client data does
        # not turn our close into a TCP reset that could destroy the close frame or response.
        with trio.move_on_after(self.close_timeout):
            try:
                await stream.send_eof()
                while await stream.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _serve_connection(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        self.accepted_connections.append(connection)
        self._changed.unpark_all()
        try:
            await connection._serve()
        finally:
            self.connections.remove(connection)
            self._changed.unpark_all()

    def _start_longpoll_session(
        self,
        session: LongPollSession,
        accept: Accept,
        params: dict[str, Any],
        info: ConnectInfo,
        serializer: Serializer,
    ) -> None:
        connection = ServerConnection(
            self,
            session.wire,
            session.link,
            id=accept.id,
            params=params,
            connect_info=info,
            serializer=serializer,
            assigns=dict(accept.assigns),
            transport="longpoll",
            idle_timeout=1.5 * self.longpoll_window,
        )
        session.connection = connection
        self._longpoll_sessions[session.token] = session
        assert self._connection_nursery is not None
        self._connection_nursery.start_soon(self._run_longpoll_session, session, connection)

    async def _run_longpoll_session(
        self, session: LongPollSession, connection: ServerConnection
    ) -> None:
        try:
            await self._serve_connection(connection)
        finally:
            session.end(connection.close_code or 1000)

    # -- pubsub and bookkeeping used by connections and channels ---------------------------------

    def _broadcast(
        self,
        topic: str,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        exclude: ChannelProcess | None = None,
    ) -> None:
        check_payload(payload, "broadcast")
        message = Message(join_ref=None, ref=None, topic=topic, event=event, payload=payload)
        targets = [p for p in self._subscribers.get(topic, ()) if p is not exclude]
        # Encode once per serializer before sending anything: an encoding error raises in the
        # broadcaster, as Phoenix's fastlane does.
        frames: dict[type, Frame] = {}
        for process in targets:
            kind = type(process.connection.serializer)
            if kind not in frames:
                frames[kind] = process.connection.serializer.encode(message)
        for process in targets:
            process.connection._send_frame(frames[type(process.connection.serializer)])
        if event == DISCONNECT_EVENT:
            self.disconnect(topic)

    def _subscribe(self, process: ChannelProcess) -> None:
        self._subscribers.setdefault(process.topic, []).append(process)

    def _unsubscribe(self, process: ChannelProcess) -> None:
        subscribers = self._subscribers.get(process.topic, [])
        if process in subscribers:
            subscribers.remove(process)
            if not subscribers:
                del self._subscribers[process.topic]

    def _record_crash(self, exc: BaseException, where: str) -> None:
        self.crashes.append(exc)
        logger.warning("%s crashed: %r", where, exc, exc_info=exc)

    def _message_received(self) -> None:
        self._messages_received += 1


async def _read_request_line(stream: GatedStream) -> bytes:
    """The first bytes of a request, up to its first line at least (``b""``: none came)."""
    head = b""
    while b"\r\n" not in head and len(head) < MAX_HEAD:
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""
        if not data:
            return head
        head += data
    return head


async def serve_test_server(
    channels: Mapping[str, ChannelFactory] | None = None,
    *,
    task_status: trio.TaskStatus[TestServer] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[TestServerOptions],
) -> None:
    """Run a `TestServer` until cancelled: ``server = await nursery.start(serve_test_server)``.

    Pass options with ``functools.partial``; they are `TestServer`'s.
    """
    await TestServer(channels, **options).run(task_status=task_status)


@asynccontextmanager
async def open_test_server(
    channels: Mapping[str, ChannelFactory] | None = None,
    **options: Unpack[TestServerOptions],
) -> AsyncIterator[TestServer]:
    """Run a `TestServer` for the duration of an ``async with`` block.

    Leaving the block closes every connection (1001) and stops every task. An exception from
    the block propagates as itself, not wrapped in an ExceptionGroup.

    Example:
        >>> async with open_test_server(demo_channels()) as server:
        ...     ...  # connect a client to server.url
    """
    server = TestServer(channels, **options)
    async with owning_nursery() as nursery:
        await nursery.start(server.run)
        yield server
