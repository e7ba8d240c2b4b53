"""The test server's WebSocket layer, with the frame rules of Bandit 1.x (Phoenix's default).

wsproto's ``H11Handshake`` does the HTTP upgrade; after it, frames are read and written here,
so that what a client sees on the wire is what Bandit 1.11 does (each rule checked against a
real Phoenix 1.7.24 + Bandit 1.11.1 server):

* A frame whose header plus payload length exceeds ``max_frame_size`` closes the connection
  with a code-only 1009 as soon as its header has arrived. A fragmented message over
  ``MAX_FRAGMENTED_MESSAGE`` bytes closes it with 1009 too.
* A complete text message that is not UTF-8 closes it with a code-only 1007.
* An unmasked client frame is never parsed: Bandit waits for "more" data forever, so from
  there on everything the client sends is swallowed and only the idle timeout ends the
  connection.
* Any other malformed frame (reserved bits or opcodes, a compressed frame, a bad control
  frame, a continuation out of place) closes it with a code-only 1002; so does an empty
  non-final continuation frame, with 1008.
* A client close frame is answered with a code-only 1000 when its code is 1000-1003,
  1007-1011, 3000 or more, or missing, and with 1002 otherwise; then the server closes TCP.
* After every close frame it sends, the server half-closes TCP at once; after a
  server-initiated close it still reads, and discards, until the client's close frame.
"""

from __future__ import annotations

import struct
from typing import Final, final

import attrs
import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ._faults import GatedStream

__all__ = [
    "MAX_FRAGMENTED_MESSAGE",
    "ServerWebSocket",
    "Upgrade",
    "WebSocketEnded",
    "read_upgrade",
]

#: Bandit's ``max_fragmented_message_size`` default (Phoenix does not set it).
MAX_FRAGMENTED_MESSAGE: Final = 8_000_000
CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_NO_STATUS: Final = 1005
CLOSE_ABNORMAL: Final = 1006
CLOSE_INVALID_DATA: Final = 1007
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES: Final = frozenset((_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG))
_RECEIVE_SIZE: Final = 65536


class WebSocketEnded(Exception):
    """No more messages: the client closed, broke the protocol, or the TCP stream ended.

    ``code`` and ``reason`` are the client's close frame, the code the server closed with
    after a protocol violation, or 1006 when TCP ended without a close frame.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@final
class Upgrade:
    """An HTTP upgrade request, to accept or reject."""

    def __init__(self, stream: GatedStream, handshake: H11Handshake, request: Request) -> None:
        self._stream = stream
        self._handshake = handshake
        self._request = request

    @property
    def path(self) -> str:
        """The request target (path and query)."""
        return self._request.target

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The request headers, less ``Host`` and the ``Sec-WebSocket-*`` negotiation ones."""
        return list(self._request.extra_headers)

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The entries of ``Sec-WebSocket-Protocol``."""
        return tuple(self._request.subprotocols)

    async def accept(self, subprotocol: str | None, max_frame_size: int) -> ServerWebSocket:
        """Answer 101 (no extensions) and return the open WebSocket."""
        await self._stream.send_all(
            self._handshake.send(AcceptConnection(subprotocol=subprotocol))
        )
        return ServerWebSocket(self._stream, max_frame_size)

    async def reject(self, status_code: int, body: bytes) -> None:
        """Answer with an HTTP error."""
        headers = [(b"content-length", str(len(body)).encode("ascii"))] if body else []
        data = self._handshake.send(
            RejectConnection(status_code=status_code, headers=headers, has_body=bool(body))
        )
        if body:
            data += self._handshake.send(RejectData(data=body))
        await self._stream.send_all(data)


async def read_upgrade(stream: GatedStream, initial: bytes = b"") -> Upgrade | None:
    """Read an upgrade request (``initial``: its first bytes, already read); a malformed one
    is answered (400 or 426) and gives ``None``."""
    handshake = H11Handshake(ConnectionType.SERVER)
    while True:
        data = initial or await stream.receive_some(_RECEIVE_SIZE)
        initial = b""
        if not data:
            return None
        try:
            handshake.receive_data(data)
        except RemoteProtocolError as exc:
            if isinstance(exc.event_hint, RejectConnection):
                try:
                    await stream.send_all(handshake.send(exc.event_hint))
                except LocalProtocolError:
                    pass  # h11 itself could not parse the request: no response possible
            return None
        for event in handshake.events():
            if isinstance(event, Request):
                return Upgrade(stream, handshake, event)


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def _unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    size = len(payload)
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")


def _reply_code(payload: bytes) -> int:
    """Bandit's answer to a client close frame (RFC 6455 §7.4.1-2, as Bandit reads it)."""
    if len(payload) == 1 or len(payload) > 125:
        return CLOSE_PROTOCOL_ERROR
    if payload:
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return CLOSE_PROTOCOL_ERROR
        code = int.from_bytes(payload[:2], "big")
        if not (1000 <= code <= 1003 or 1007 <= code <= 1011 or code > 2999):
            return CLOSE_PROTOCOL_ERROR
    return CLOSE_NORMAL


class _Violation(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@attrs.frozen
class _Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes


@final
@attrs.define(eq=False)
class ServerWebSocket:
    """One open server-side WebSocket. One task reads; any task may send."""

    _stream: GatedStream
    max_frame_size: int
    _buffer: bytearray = attrs.field(factory=bytearray, init=False)
    _send_lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _fragments: list[bytes] = attrs.field(factory=list, init=False)
    _fragment_opcode: int | None = attrs.field(default=None, init=False)
    _swallowing: bool = attrs.field(default=False, init=False)
    _close_sent: bool = attrs.field(default=False, init=False)
    _ended: WebSocketEnded | None = attrs.field(default=None, init=False)

    @property
    def close_sent(self) -> bool:
        """Whether the server has sent its close frame."""
        return self._close_sent

    async def send_message(self, data: str | bytes) -> None:
        """Send one text (``str``) or binary message; a no-op once a close frame went out.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: the TCP stream is gone.
        """
        if isinstance(data, str):
            frame = _frame(_TEXT, data.encode("utf-8"))
        else:
            frame = _frame(_BINARY, bytes(data))
        async with self._send_lock:
            if not self._close_sent:
                await self._stream.send_all(frame)

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (code-only unless ``reason``) and half-close TCP, once.

        Errors of the TCP stream are swallowed: a dead stream is closed enough.
        """
        payload = struct.pack("!H", code) + reason.encode("utf-8")
        async with self._send_lock:
            if self._close_sent:
                return
            self._close_sent = True
            try:
                await self._stream.send_all(_frame(_CLOSE, payload))
                await self._stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def get_message(self) -> str | bytes:
        """The next complete message, answering pings on the way.

        Raises:
            WebSocketEnded: the client closed (answered as Bandit does), broke the protocol
                (the server closed), or TCP ended.
        """
        if self._ended is not None:
            raise self._ended
        try:
            while True:
                frame = await self._next_frame()
                message = await self._handle(frame)
                if message is not None and not self._close_sent:
                    return message
        except _Violation as violation:
            await self.close(violation.code)
            self._ended = WebSocketEnded(violation.code)
        raise self._ended

    async def _handle(self, frame: _Frame) -> str | bytes | None:
        opcode = frame.opcode
        # Reserved bits (RSV1 too: no permessage-deflate here) and opcodes are errors.
        if frame.rsv or opcode not in _OPCODES:
            raise _Violation(CLOSE_PROTOCOL_ERROR)
        if opcode >= _CLOSE:
            await self._control(frame)
            return None
        if opcode == _CONTINUATION:
            if self._fragment_opcode is None:
                raise _Violation(CLOSE_PROTOCOL_ERROR)
            if not frame.fin and not frame.payload:
                raise _Violation(CLOSE_POLICY)
            self._fragments.append(frame.payload)
            if sum(len(part) for part in self._fragments) > MAX_FRAGMENTED_MESSAGE:
                raise _Violation(CLOSE_TOO_BIG)
            if not frame.fin:
                return None
            opcode, self._fragment_opcode = self._fragment_opcode, None
            data, self._fragments = b"".join(self._fragments), []
        elif self._fragment_opcode is not None:
            raise _Violation(CLOSE_PROTOCOL_ERROR)
        elif not frame.fin:
            self._fragment_opcode = opcode
            self._fragments = [frame.payload]
            return None
        else:
            data = frame.payload
        if opcode == _BINARY:
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Violation(CLOSE_INVALID_DATA) from None

    async def _control(self, frame: _Frame) -> None:
        opcode, payload = frame.opcode, frame.payload
        if not frame.fin:
            raise _Violation(CLOSE_PROTOCOL_ERROR)
        if opcode == _CLOSE:
            reply = _reply_code(payload)
            if reply == CLOSE_PROTOCOL_ERROR and (len(payload) == 1 or len(payload) > 125):
                raise _Violation(reply)
            code = int.from_bytes(payload[:2], "big") if payload else CLOSE_NO_STATUS
            reason = payload[2:].decode("utf-8", "replace")
            await self.close(reply)  # a no-op after a server-initiated close
            self._ended = WebSocketEnded(code, reason)
            raise self._ended
        if opcode == _PING:
            if len(payload) > 125:
                raise _Violation(CLOSE_PROTOCOL_ERROR)
            async with self._send_lock:
                if not self._close_sent:
                    await self._stream.send_all(_frame(_PONG, payload))

    async def _next_frame(self) -> _Frame:
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            await self._receive()

    async def _receive(self) -> None:
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._ended = WebSocketEnded(CLOSE_ABNORMAL)
            raise self._ended
        if not self._swallowing:
            self._buffer += data

    def _parse(self) -> _Frame | None:
        """Take one complete frame off the buffer, or ``None`` if more data is needed."""
        buffer = self._buffer
        if len(buffer) < 2 or self._swallowing:
            return None
        first, second = buffer[0], buffer[1]
        if not second & 0x80:
            # Bandit's header match cannot take an unmasked frame and waits for more, forever.
            self._swallowing = True
            buffer.clear()
            return None
        size, header = second & 0x7F, 6
        if size == 126:
            header = 8
            if len(buffer) < header:
                return None
            size = int.from_bytes(buffer[2:4], "big")
        elif size == 127:
            header = 14
            if len(buffer) < header:
                return None
            size = int.from_bytes(buffer[2:10], "big")
        elif len(buffer) < header:
            return None
        if self.max_frame_size and header + size > self.max_frame_size:
            raise _Violation(CLOSE_TOO_BIG)
        if len(buffer) < header + size:
            return None
        mask = bytes(buffer[header - 4 : header])
        payload = _unmask(buffer[header : header + size], mask)
        del buffer[: header + size]
        return _Frame(
            fin=bool(first & 0x80), rsv=(first >> 4) & 0b111, opcode=first & 0x0F, payload=payload
        )
