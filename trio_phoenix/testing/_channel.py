"""One joined channel at run time: the handler's socket, its task, and how it ends.

Phoenix runs each channel in its own process: the socket process forwards client messages to
it and moves on, the channel handles them one at a time, and its exit is reported back to the
socket. Here a channel is one Trio task (plus any background tasks the handler starts) with an
unbounded inbox, living in its connection's nursery. Rules:

1. Only ``join`` blocks the connection; ``handle_in`` runs in the channel task, so a slow
   handler delays its own channel, never heartbeats or other channels.
2. A channel ends exactly once, through `ChannelProcess.finish`, which updates the connection
   (registry, pubsub, presence) and queues the exit frame *synchronously*: the reply a
   ``Stop`` carries is always followed directly by its ``phx_close``.
3. Frames the handler sends after the end (pushes from background tasks that catch the
   cancellation, say) still go out while the connection lives, as in Phoenix.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, final

import attrs
import trio

from trio_phoenix.proto._message import PHX_CLOSE, PHX_ERROR, PHX_LEAVE, PHX_REPLY, Message

from ._handlers import ChannelHandler, Reply, Stop, check_payload

if TYPE_CHECKING:
    from ._connection import ServerConnection
    from ._server import TestServer

__all__ = ["ChannelProcess", "ChannelSocket", "SocketRef", "reply_message"]

logger: Final = logging.getLogger("trio_phoenix.testing")

#: How a channel ended: it left, stopped normally, exited abnormally (``phx_error``), or was
#: shut down by its socket (duplicate join, connection closed), which sends nothing.
Ending = Literal["left", "stopped", "errored", "killed"]


def reply_message(topic: str, join_ref: str | None, ref: str | None, reply: Reply) -> Message:
    """The ``phx_reply`` message for ``reply``.

    Raises:
        TypeError: ``reply`` is not a `Reply` (a bad ``handle_in`` return crashes the channel).
    """
    if not isinstance(reply, Reply):
        raise TypeError(f"expected a Reply, got {reply!r}")
    return Message(
        join_ref=join_ref,
        ref=ref,
        topic=topic,
        event=PHX_REPLY,
        payload={"response": reply.payload, "status": reply.status},
    )


@final
@attrs.frozen(kw_only=True)
class SocketRef:
    """Where to send a later reply to one client push (Phoenix's ``socket_ref/1``)."""

    connection: ServerConnection
    topic: str
    join_ref: str | None
    ref: str | None

    def reply(self, reply: Reply) -> None:
        """Send ``reply`` now; dropped silently if the connection has closed.

        Raises:
            ValueError: the payload cannot be encoded (``EncodeError``).
        """
        self.connection._send(reply_message(self.topic, self.join_ref, self.ref, reply))


@final
@attrs.define(eq=False, repr=False)
class ChannelSocket:
    """The channel's view of its socket, passed to every handler callback.

    Attributes:
        topic: the channel's topic.
        join_ref: the ref of the join that created the channel (pushes carry it).
        assigns: per-channel state, initialised from the connect hook's ``Accept.assigns``.
    """

    _connection: ServerConnection
    topic: str
    join_ref: str | None
    assigns: dict[str, Any] = attrs.field(init=False)
    _process: ChannelProcess | None = attrs.field(default=None, init=False)
    _ref: str | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.assigns = dict(self._connection.assigns)

    def __repr__(self) -> str:
        return (
            f"<trio_phoenix.testing.ChannelSocket topic={self.topic!r} join_ref={self.join_ref!r}>"
        )

    @property
    def connection(self) -> ServerConnection:
        """The WebSocket connection this channel belongs to."""
        return self._connection

    @property
    def server(self) -> TestServer:
        """The server (for ``server.presence``, ``server.broadcast``...)."""
        return self._connection.server

    @property
    def socket_id(self) -> str | None:
        """The id the connect hook gave the socket."""
        return self._connection.id

    @property
    def params(self) -> dict[str, Any]:
        """The connect params (the WebSocket URL's query)."""
        return self._connection.params

    @property
    def joined(self) -> bool:
        """Whether the join succeeded (pushes and broadcasts are allowed from then on)."""
        return self._process is not None

    @property
    def ref(self) -> str | None:
        """The ref of the client push being handled, ``None`` outside ``handle_in``."""
        return self._ref

    def push(self, event: str, payload: dict[str, Any] | bytes) -> None:
        """Send ``[join_ref, null, topic, event, payload]`` to this channel's client.

        Raises:
            RuntimeError: called before the join completed (Phoenix raises too).
            ValueError: the payload is not a dict or bytes, or cannot be encoded.
        """
        self._require_joined("push")
        check_payload(payload, "push")
        self._connection._send(
            Message(
                join_ref=self.join_ref, ref=None, topic=self.topic, event=event, payload=payload
            )
        )

    def broadcast(self, event: str, payload: dict[str, Any] | bytes) -> None:
        """Send ``[null, null, topic, event, payload]`` to every subscriber, this one included.

        Raises:
            RuntimeError: called before the join completed.
            ValueError: the payload is not a dict or bytes, or cannot be encoded.
        """
        self._require_joined("broadcast")
        self.server.broadcast(self.topic, event, payload)

    def broadcast_from(self, event: str, payload: dict[str, Any] | bytes) -> None:
        """Like `broadcast`, but not to this channel's own client.

        Raises:
            RuntimeError: called before the join completed.
            ValueError: the payload is not a dict or bytes, or cannot be encoded.
        """
        process = self._require_joined("broadcast_from")
        self.server._broadcast(self.topic, event, payload, exclude=process)

    def socket_ref(self) -> SocketRef:
        """Capture the push being handled, to `SocketRef.reply` to it later.

        Raises:
            RuntimeError: called outside ``handle_in``.
        """
        if self._ref is None:
            raise RuntimeError("socket_ref() can only be called while handling a client push")
        return SocketRef(
            connection=self._connection, topic=self.topic, join_ref=self.join_ref, ref=self._ref
        )

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run a task for as long as the channel lives; if it raises, the channel crashes.

        Raises:
            RuntimeError: called before the join completed.
        """
        self._require_joined("start_soon").start_soon(async_fn, *args)

    def _require_joined(self, what: str) -> ChannelProcess:
        if self._process is None:
            raise RuntimeError(f"{what}() can only be called after the channel has joined")
        return self._process


_Task: TypeAlias = tuple[Callable[..., Awaitable[object]], tuple[object, ...]]


@final
@attrs.define(eq=False, repr=False)
class ChannelProcess:
    """The running side of one channel: inbox, task, background tasks and ending."""

    handler: ChannelHandler
    socket: ChannelSocket
    #: The join_ref the *socket* keeps for stale checks and phx_close/phx_error frames.
    stored_join_ref: str | None
    status: Literal["joined", "leaving"] = attrs.field(default="joined", init=False)
    ended: Ending | None = attrs.field(default=None, init=False)
    done: trio.Event = attrs.field(factory=trio.Event, init=False)
    _inbox_send: trio.MemorySendChannel[Message] = attrs.field(init=False)
    _inbox: trio.MemoryReceiveChannel[Message] = attrs.field(init=False)
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _pending: list[_Task] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        self._inbox_send, self._inbox = trio.open_memory_channel[Message](math.inf)
        self.socket._process = self

    def __repr__(self) -> str:
        return f"<ChannelProcess topic={self.topic!r} ended={self.ended!r}>"

    @property
    def topic(self) -> str:
        """The channel's topic."""
        return self.socket.topic

    @property
    def connection(self) -> ServerConnection:
        """The connection the channel belongs to."""
        return self.socket.connection

    def deliver(self, message: Message) -> None:
        """Queue a client message for the handler (never blocks)."""
        if message.event == PHX_LEAVE:
            self.status = "leaving"
        if self.ended is None:
            self._inbox_send.send_nowait(message)

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start a background task tied to this channel (see `ChannelSocket.start_soon`)."""
        if self.ended is not None:
            return
        if self._nursery is None:
            self._pending.append((async_fn, args))
        else:
            self._nursery.start_soon(self._guarded, async_fn, *args)

    async def run(self) -> None:
        """The channel's task: ``after_join``, then one ``handle_in`` at a time."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    for async_fn, args in self._pending:
                        nursery.start_soon(self._guarded, async_fn, *args)
                    self._pending.clear()
                    nursery.start_soon(self._guarded, self._main)
        finally:
            self._inbox.close()
            self.done.set()

    def kill(self) -> None:
        """End the channel without telling the client (duplicate join, socket closing)."""
        self.finish("killed")

    def finish(self, how: Ending) -> None:
        """End the channel once: unregister it, queue its exit frame, cancel its tasks."""
        if self.ended is not None:
            return
        self.ended = how
        self.connection._channel_ended(self)
        frame_event = {"stopped": PHX_CLOSE, "left": PHX_CLOSE, "errored": PHX_ERROR}.get(how)
        if frame_event is not None:
            payload: dict[str, Any] = (
                self.connection.server._rules.error_payload() if frame_event == PHX_ERROR else {}
            )
            self.connection._send(
                Message(
                    join_ref=self.stored_join_ref,
                    ref=self.stored_join_ref,
                    topic=self.topic,
                    event=frame_event,
                    payload=payload,
                )
            )
        self._scope.cancel()

    async def _guarded(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        try:
            await async_fn(*args)
        except Exception as exc:
            self.connection.server._record_crash(exc, f"channel {self.topic!r}")
            self.finish("errored")  # a no-op if the channel had already ended

    async def _main(self) -> None:
        socket = self.socket
        await self.handler.after_join(socket)
        async for message in self._inbox:
            if message.event == PHX_LEAVE:
                self._reply(message.ref, Reply.ok())
                self.finish("left")
                return
            socket._ref = message.ref
            try:
                result = await self.handler.handle_in(message.event, message.payload, socket)
            finally:
                socket._ref = None
            if result is None:
                continue
            if isinstance(result, Stop):
                if result.reply is not None:
                    self._reply(message.ref, result.reply)
                self.finish("stopped" if result.normal else "errored")
                return
            self._reply(message.ref, result)

    def _reply(self, ref: str | None, reply: Reply) -> None:
        self.connection._send(reply_message(self.topic, self.socket.join_ref, ref, reply))
