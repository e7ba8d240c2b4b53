"""A hostile Phoenix server written from scratch: its own HTTP upgrade and WebSocket frame
codec on a bare TCP stream, with none of our test server and no wsproto on the server side,
so that the client is tested against framing it did not shape.

``RawServer`` accepts connections on ``127.0.0.1:0``. By default it completes the upgrade,
answers heartbeats, joins, leaves and ``echo`` pushes, and lets a test send any frame on any
connection (``RawConnection.send_text``). ``RawServer.reject_with_endless_body(status)``
makes it answer every upgrade with that status and a body that never ends, counting what it
managed to write before the client hung up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_REQUEST = 16384


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked server frame."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


@attrs.define(eq=False)
class RawConnection:
    stream: trio.SocketStream
    buffer: bytearray = attrs.Factory(bytearray)
    join_refs: dict[str, str] = attrs.Factory(dict)
    received: list[list[Any]] = attrs.Factory(list)
    joined: trio.Event = attrs.Factory(trio.Event)
    lock: trio.Lock = attrs.Factory(trio.Lock)
    #: How many frames came compressed (RSV1, permessage-deflate), and their wire bytes.
    compressed_frames: int = 0
    compressed_bytes: int = 0
    _inflater: Any = attrs.Factory(lambda: zlib.decompressobj(wbits=-15))

    async def send_raw(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)

    async def send_text(self, text: str) -> None:
        await self.send_raw(frame(0x1, text.encode("utf-8")))

    async def send_texts(self, texts: list[str]) -> None:
        """Send text frames in one write."""
        await self.send_raw(b"".join(frame(0x1, text.encode("utf-8")) for text in texts))

    async def send_message(self, *fields: Any) -> None:
        await self.send_text(json.dumps(list(fields)))

    async def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.buffer += data
        chunk = bytes(self.buffer[:count])
        del self.buffer[:count]
        return chunk

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self._read(8))
        mask = await self._read(4) if second & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(await self._read(size)))
        if first & 0x40:  # permessage-deflate (the client keeps its context)
            self.compressed_frames += 1
            self.compressed_bytes += len(data)
            data = self._inflater.decompress(data + b"\x00\x00\xff\xff")
        return first & 0x0F, data

    async def serve(self, topics_to_join: int) -> None:
        while True:
            opcode, data = await self.read_frame()
            if opcode == 0x8:  # close: answer it and stop
                await self.send_raw(frame(0x8, data[:2]))
                return
            if opcode != 0x1:
                continue
            message = json.loads(data)
            self.received.append(message)
            join_ref, ref, topic, event, payload = message
            if event == "phx_join":
                self.join_refs[topic] = join_ref
                if len(self.join_refs) >= topics_to_join:
                    self.joined.set()
                await self.reply(join_ref, ref, topic, {})
            elif event in ("heartbeat", "phx_leave"):
                await self.reply(join_ref, ref, topic, {})
            elif event == "echo":
                await self.reply(join_ref, ref, topic, payload)

    async def reply(self, join_ref: Any, ref: Any, topic: str, response: Any) -> None:
        await self.send_message(
            join_ref, ref, topic, "phx_reply", {"status": "ok", "response": response}
        )


@attrs.define(eq=False)
class RawServer:
    port: int = 0
    topics_to_join: int = 2
    connections: list[RawConnection] = attrs.Factory(list)
    connected: trio.Event = attrs.Factory(trio.Event)
    reject_status: int | None = None
    #: Sent in the same write as the 101 response (frames the client must not lose).
    greeting: bytes = b""
    #: The ``Sec-WebSocket-Extensions`` value of the 101 response (none if empty).
    extensions: bytes = b""
    #: Whether connections answer joins, heartbeats and echoes (else the test drives them).
    serving: bool = True
    rejected_bytes_sent: list[int] = attrs.Factory(list)
    rejection_ended: trio.Event = attrs.Factory(trio.Event)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    def reject_with_endless_body(self, status: int) -> None:
        self.reject_status = status

    async def _read_request(self, stream: trio.SocketStream) -> tuple[bytes, bytes]:
        request = bytearray()
        while b"\r\n\r\n" not in request:
            data = await stream.receive_some(4096)
            if not data or len(request) > _MAX_REQUEST:
                raise EOFError
            request += data
        head, _, rest = bytes(request).partition(b"\r\n\r\n")
        return head, rest

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            head, rest = await self._read_request(stream)
            if self.reject_status is not None:
                await self._reject_endlessly(stream, self.reject_status)
                return
            key = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            extensions = b""
            if self.extensions:
                extensions = b"Sec-WebSocket-Extensions: " + self.extensions + b"\r\n"
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept
                + b"\r\n"
                + extensions
                + b"\r\n"
                + self.greeting
            )
            connection = RawConnection(stream, bytearray(rest))
            self.connections.append(connection)
            self.connected.set()
            if self.serving:
                await connection.serve(self.topics_to_join)
            else:
                await trio.sleep_forever()
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _reject_endlessly(self, stream: trio.SocketStream, status: int) -> None:
        sent = 0
        try:
            await stream.send_all(
                f"HTTP/1.1 {status} Go Away\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {10**15}\r\n\r\n".encode()
            )
            chunk = b"no " * 21845
            while True:
                await stream.send_all(chunk)
                sent += len(chunk)
        finally:
            self.rejected_bytes_sent.append(sent)
            self.rejection_ended.set()


@asynccontextmanager
async def open_raw_server(topics_to_join: int = 2) -> AsyncIterator[RawServer]:
    server = RawServer(topics_to_join=topics_to_join)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()
