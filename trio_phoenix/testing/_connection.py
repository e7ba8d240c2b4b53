"""One accepted WebSocket connection: Phoenix's socket process, plus fault injection.

Three tasks per connection, in one nursery with the connection's channels:

* the **reader** decodes client frames and routes them one at a time, in order, through the
  table of protocol reference §3 (heartbeat, join, duplicate join, leave, stale join refs,
  unmatched topics). Only a join blocks it, as ``join/3`` blocks Phoenix's socket process;
* the **writer** is the only task that writes: every outgoing frame, and finally the close
  frame, goes through one unbounded queue, so frames leave in the order they were produced
  (a ``Stop`` reply before its ``phx_close``; a join reply before the ``phx_close`` of the
  join it replaced) and producers never block, as sending to a process never does;
* the **idle watchdog** closes the connection when no data has arrived for ``idle_timeout``
  seconds of ``trio.current_time()`` (Cowboy's ``timeout``), so ``MockClock`` drives it.

A malformed frame ends the connection with 1011 (the socket process crashes in Phoenix);
well-shaped JSON whose topic, event or refs are not strings is routed, as Phoenix does.
Once a close is requested nothing more is queued or routed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import attrs
import trio

from trio_phoenix.proto._errors import EncodeError, RemoteProtocolError
from trio_phoenix.proto._message import (
    HEARTBEAT,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    Message,
)
from trio_phoenix.proto._serializer import Frame, Serializer, V1JSONSerializer, V2JSONSerializer

from ._channel import ChannelProcess, ChannelSocket, reply_message
from ._faults import Gate
from ._handlers import Reply
from ._handshake import ConnectInfo
from ._websocket import CLOSE_ABNORMAL, WebSocketEnded

if TYPE_CHECKING:
    from ._server import TestServer

__all__ = ["ServerConnection"]

logger: Final = logging.getLogger("trio_phoenix.testing")

#: How long a duplicate join waits for the old channel to finish (Phoenix: 5 s, then kill).
_DUPLICATE_JOIN_GRACE: Final = 5.0
CLOSE_INTERNAL_ERROR: Final = 1011


class _Wire(Protocol):
    """Messages in and out: a ``ServerWebSocket``, or a LongPoll session's."""

    async def get_message(self) -> Frame: ...
    async def send_message(self, data: str | bytes) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


class _Link(Protocol):
    """What lies under the messages: a ``GatedStream``, or a LongPoll session's."""

    gate: Gate
    last_received: float

    def drop(self) -> None: ...


@attrs.frozen(kw_only=True)
class _Outgoing:
    queued_at: float
    frame: Frame | None = None
    close: tuple[int, str] | None = None


@final
@attrs.define(eq=False, repr=False)
class ServerConnection:
    """One client connection as the test server sees it; also the handle for faults.

    Attributes:
        id: the socket id the connect hook returned (``None`` for anonymous sockets).
        params: the connect params (the URL query, parsed as Plug does).
        connect_info: the rest of the upgrade request.
        serializer: the serializer ``vsn`` selected (server role).
        assigns: the connect hook's ``Accept.assigns``, copied into every channel.
        received: every message the client sent, decoded, in order.
        transport: ``"websocket"`` or ``"longpoll"`` (a LongPoll session).
    """

    server: TestServer
    _ws: _Wire
    _stream: _Link
    id: str | None = attrs.field(kw_only=True)
    params: dict[str, Any] = attrs.field(kw_only=True)
    connect_info: ConnectInfo = attrs.field(kw_only=True)
    serializer: Serializer = attrs.field(kw_only=True)
    assigns: dict[str, Any] = attrs.field(kw_only=True)
    transport: str = attrs.field(default="websocket", kw_only=True)
    _idle_timeout: float | None = attrs.field(default=None, kw_only=True, alias="idle_timeout")
    received: list[Message] = attrs.field(factory=list, init=False)
    _channels: dict[str, ChannelProcess] = attrs.field(factory=dict, init=False)
    _outbox_send: trio.MemorySendChannel[_Outgoing] = attrs.field(init=False)
    _outbox: trio.MemoryReceiveChannel[_Outgoing] = attrs.field(init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _close_code: int | None = attrs.field(default=None, init=False)
    _close_reason: str | None = attrs.field(default=None, init=False)
    _closed: trio.Event = attrs.field(factory=trio.Event, init=False)
    _read_done: trio.Event = attrs.field(factory=trio.Event, init=False)
    _send_delay: float = attrs.field(default=0.0, init=False)
    _received_lot: trio.lowlevel.ParkingLot = attrs.field(
        factory=trio.lowlevel.ParkingLot, init=False
    )
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._outbox_send, self._outbox = trio.open_memory_channel[_Outgoing](math.inf)

    def __repr__(self) -> str:
        peer = self.connect_info.peer
        return f"<trio_phoenix.testing.ServerConnection id={self.id!r} peer={peer!r}>"

    # -- observation ----------------------------------------------------------------------

    @property
    def topics(self) -> dict[str, str | None]:
        """The joined topics and the join_ref each was joined with."""
        return {topic: proc.stored_join_ref for topic, proc in self._channels.items()}

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed.is_set()

    @property
    def close_code(self) -> int | None:
        """The close code sent or received (1006 after a drop); ``None`` while open."""
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason that went with `close_code`."""
        return self._close_reason

    async def wait_closed(self) -> None:
        """Wait until the connection has ended."""
        await self._closed.wait()

    async def wait_message(self, predicate: Callable[[Message], bool]) -> Message:
        """The first message in `received` matching ``predicate``, waiting for it if needed.

        Raises:
            trio.ClosedResourceError: the connection ended without such a message.
        """
        await trio.lowlevel.checkpoint()
        seen = 0
        while True:
            for message in self.received[seen:]:
                if predicate(message):
                    return message
            seen = len(self.received)
            if self.closed:
                raise trio.ClosedResourceError("the connection closed before the message arrived")
            await self._received_lot.park()

    # -- fault injection ------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason`` after the frames already queued."""
        self._request_close(code, reason)

    def drop(self) -> None:
        """Close the TCP connection at once: no close frame (the client sees 1006)."""
        if self._close_code is None:
            self._close_code = CLOSE_ABNORMAL
        self._closing = True
        self._stream.drop()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def stall(self) -> None:
        """Stop reading and writing, like a half-open connection (idle timeout paused)."""
        self._stream.gate.stall()

    def resume(self) -> None:
        """Undo `stall`: everything held back flows again, in order."""
        self._stream.gate.resume()

    @property
    def stalled(self) -> bool:
        """Whether the connection is stalled."""
        return self._stream.gate.stalled

    @property
    def send_delay(self) -> float:
        """Seconds every outgoing frame is held back (0 = none); settable at any time."""
        return self._send_delay

    @send_delay.setter
    def send_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("send_delay must be >= 0")
        self._send_delay = seconds

    # -- internals used by channels and the server ----------------------------------------

    def _send(self, message: Message) -> None:
        """Encode ``message`` (raising ``EncodeError``) and queue it, unless closing."""
        frame = self.serializer.encode(message)
        if not self._closing:
            self._outbox_send.send_nowait(_Outgoing(queued_at=trio.current_time(), frame=frame))

    def _send_frame(self, frame: Frame) -> None:
        if not self._closing:
            self._outbox_send.send_nowait(_Outgoing(queued_at=trio.current_time(), frame=frame))

    def _request_close(self, code: int, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        self._outbox_send.send_nowait(
            _Outgoing(queued_at=trio.current_time(), close=(code, reason))
        )

    def _channel_ended(self, process: ChannelProcess) -> None:
        if self._channels.get(process.topic) is process:
            del self._channels[process.topic]
        self.server._unsubscribe(process)
        self.server.presence.owner_down(process.socket)

    async def _serve(self) -> None:
        """Run the connection until it ends; channels and presences are gone afterwards."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._idle_loop)
                nursery.start_soon(self._read_loop)
        finally:
            self._closing = True
            for process in list(self._channels.values()):
                process.kill()
            self.server.presence.owner_down(self)
            self._closed.set()
            self._received_lot.unpark_all()

    def _end(self) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    # -- the three tasks --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            try:
                frame = await self._ws.get_message()
            except WebSocketEnded as exc:
                self._read_done.set()
                if not self._closing:
                    # The client closed, broke the protocol (the WebSocket layer has closed
                    # with 1002, 1007, 1008 or 1009 then), or the TCP stream ended.
                    self._closing = True
                    self._close_code, self._close_reason = exc.code, exc.reason
                    self._end()
                return
            if self._closing:
                continue
            try:
                message = self.serializer.decode(frame)
            except RemoteProtocolError as exc:
                loose = _decode_loosely(self.serializer, frame)
                if loose is None:
                    logger.warning("closing %r with 1011 after a malformed frame: %s", self, exc)
                    self._request_close(CLOSE_INTERNAL_ERROR)
                    continue
                message = loose
            self.received.append(message)
            self.server._message_received()
            self._received_lot.unpark_all()
            await self._route(message)

    async def _write_loop(self) -> None:
        async for item in self._outbox:
            if self._send_delay > 0:
                await trio.sleep_until(item.queued_at + self._send_delay)
            if item.close is not None:
                code, reason = item.close
                self._close_code, self._close_reason = code, reason
                with trio.move_on_after(self.server.close_timeout):
                    # Bandit half-closes at once, then reads until the client's close frame.
                    await self._ws.close(code, reason)
                    await self._read_done.wait()
                self._end()
                return
            assert item.frame is not None
            try:
                await self._ws.send_message(item.frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the reader sees the stream end and ends the connection

    async def _idle_loop(self) -> None:
        timeout = self._idle_timeout
        if timeout is None:
            return
        stream = self._stream
        while True:
            if stream.gate.stalled:
                try:
                    await stream.gate.wait_open()
                except trio.ClosedResourceError:
                    return
                stream.last_received = trio.current_time()
                continue
            deadline = stream.last_received + timeout
            if trio.current_time() >= deadline:
                self._request_close(self.server.idle_close_code)
                return
            await trio.sleep_until(deadline)

    # -- routing (protocol reference §3) ----------------------------------------------------

    async def _route(self, message: Message) -> None:
        topic, event = message.topic, message.event
        if topic == PHOENIX_TOPIC and event == HEARTBEAT:
            self._send(reply_message(PHOENIX_TOPIC, None, message.ref, Reply.ok()))
            return
        process = self._channel_for(topic)
        if event == PHX_JOIN:
            replaced = None
            if process is not None:
                replaced = process.stored_join_ref
                process.kill()
                with trio.move_on_after(_DUPLICATE_JOIN_GRACE):
                    await process.done.wait()
            await self._join(message)
            if process is not None:
                self._send(
                    Message(
                        join_ref=replaced, ref=replaced, topic=topic, event=PHX_CLOSE, payload={}
                    )
                )
            return
        if process is None:
            if event == PHX_LEAVE:
                self._send(reply_message(topic, message.join_ref, message.ref, Reply.ok()))
            else:
                self._send(_unmatched(message))
            return
        if not self.server._rules.delivers(event, message.join_ref, process.stored_join_ref):
            return  # ignored without a reply (see ``_versions``)
        process.deliver(message)

    def _channel_for(self, topic: object) -> ChannelProcess | None:
        # Loosely decoded frames may carry any JSON value as topic, lists included.
        return self._channels.get(topic) if isinstance(topic, str) else None

    async def _join(self, message: Message) -> None:
        topic = message.topic
        factory = self.server.router.match(topic)
        if factory is None:
            logger.warning("ignoring unmatched topic %r", topic)
            self._send(_unmatched(message))
            return
        if len(self._channels) >= self.server.max_channels_per_transport:
            error = Reply.error({"reason": "too many channels joined"})
            self._send(reply_message(topic, message.join_ref, message.ref, error))
            return
        socket = ChannelSocket(
            self, topic, message.join_ref if message.join_ref is not None else message.ref
        )
        try:
            handler = factory()
            result: object = await handler.join(topic, message.payload, socket)
            if result is None:
                result = Reply.ok()
            if not isinstance(result, Reply) or result.status not in ("ok", "error"):
                raise TypeError(f"join() must return None or Reply.ok/error(...), got {result!r}")
            reply = result
        except Exception as exc:
            self.server._record_crash(exc, f"join of {topic!r}")
            reply = Reply.error({"reason": "join crashed"})
            self._send(reply_message(topic, message.join_ref, message.ref, reply))
            return
        try:
            # Phoenix encodes the join reply in the socket process: a bad payload kills it.
            frame = self.serializer.encode(
                reply_message(topic, message.join_ref, message.ref, reply)
            )
        except EncodeError as exc:
            self.server._record_crash(exc, f"join reply of {topic!r}")
            self._request_close(CLOSE_INTERNAL_ERROR)
            return
        self._send_frame(frame)
        if reply.status != "ok" or self._closing:
            return
        process = ChannelProcess(handler, socket, message.join_ref)
        self._channels[topic] = process
        self.server._subscribe(process)
        assert self._nursery is not None
        self._nursery.start_soon(process.run)


def _decode_loosely(serializer: Serializer, frame: Frame) -> Message | None:
    """Decode a well-shaped text frame whose topic, event or refs are not strings.

    Phoenix does not type-check these fields: such a message is routed like any other (and
    usually answered "unmatched topic"); only a frame of the wrong shape crashes the socket.
    Our serializers refuse them, so the server takes this second look.
    """
    if not isinstance(frame, str):
        return None
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    if isinstance(serializer, V2JSONSerializer) and isinstance(data, list) and len(data) >= 5:
        join_ref, ref, topic, event, payload = data[:5]
    elif (
        isinstance(serializer, V1JSONSerializer)
        and isinstance(data, dict)
        and all(key in data for key in ("topic", "event", "payload", "ref"))
    ):
        join_ref, ref, topic, event, payload = (
            data.get("join_ref"),
            data["ref"],
            data["topic"],
            data["event"],
            data["payload"],
        )
    else:
        return None
    return Message(join_ref=join_ref, ref=ref, topic=topic, event=event, payload=payload)


def _unmatched(message: Message) -> Message:
    return Message(
        join_ref=None,
        ref=message.ref,
        topic=message.topic,
        event=PHX_REPLY,
        payload={"response": {"reason": "unmatched topic"}, "status": "error"},
    )
