"""A raw WebSocket client for wire-level scenarios: it writes any frame, valid or not.

The handshake is plain HTTP/1.1 over a trio TCP stream; frames are built and parsed here, so
tests can send what no WebSocket library would (unmasked frames, invalid UTF-8, lying
lengths) and see exactly what the server sends back, down to the end of the TCP stream.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import trio

TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
#: Seconds any single wait may take (real servers, real time).
WAIT: Final = 10.0


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame; ``length`` overrides the declared payload length."""
    size = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    key = int.from_bytes((mask * (len(payload) // 4 + 1))[: len(payload)], "big")
    masked_payload = (int.from_bytes(payload, "big") ^ key).to_bytes(len(payload), "big")
    return header + mask + masked_payload


def text(message: list[Any]) -> bytes:
    """A masked text frame carrying a V2 message."""
    return frame(TEXT, json.dumps(message, separators=(",", ":")).encode())


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    """A masked close frame (no payload when ``code`` is ``None``)."""
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


@attrs.frozen
class Received:
    """One server frame: opcode and payload."""

    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The code of a close frame (``None`` if it has none)."""
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if self.payload else None

    def message(self) -> Any:
        """A text frame's JSON."""
        assert self.opcode == TEXT
        return json.loads(self.payload)


@attrs.define
class RawClient:
    """An open raw WebSocket connection."""

    stream: trio.SocketStream
    _buffer: bytearray

    async def send(self, data: bytes) -> None:
        """Write bytes as they are."""
        await self.stream.send_all(data)

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            data = await self.stream.receive_some(65536)
            if not data:
                return False
            self._buffer += data
        return True

    async def receive(self) -> Received | None:
        """The next server frame, or ``None`` when the server ended the TCP stream."""
        if not await self._fill(2):
            return None
        size = self._buffer[1] & 0x7F
        header = {126: 4, 127: 10}.get(size, 2)
        assert not self._buffer[1] & 0x80, "servers do not mask"
        if not await self._fill(header):
            return None
        if size == 126:
            size = struct.unpack("!H", self._buffer[2:4])[0]
        elif size == 127:
            size = struct.unpack("!Q", self._buffer[2:10])[0]
        if not await self._fill(header + size):
            return None
        opcode = self._buffer[0] & 0x0F
        payload = bytes(self._buffer[header : header + size])
        del self._buffer[: header + size]
        return Received(opcode, payload)

    async def until_end(self) -> list[Received]:
        """Every frame up to the end of the TCP stream (bounded by `WAIT`)."""
        frames: list[Received] = []
        with trio.fail_after(WAIT):
            while (received := await self.receive()) is not None:
                frames.append(received)
        return frames

    async def reply(self, ref: str) -> Any:
        """The next text message whose ref is ``ref``, skipping others."""
        with trio.fail_after(WAIT):
            while True:
                received = await self.receive()
                assert received is not None, "the server closed the connection"
                if received.opcode == TEXT and received.message()[1] == ref:
                    return received.message()


@asynccontextmanager
async def open_raw(url: str, query: str = "vsn=2.0.0") -> AsyncIterator[RawClient]:
    """Connect to ``url`` (a socket mount URL) and upgrade ``/websocket``."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path}/websocket?{query} HTTP/1.1\r\n"
            f"Host: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.send_all(request.encode())
        buffer = bytearray()
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                assert data, "the server closed during the handshake"
                buffer += data
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split(b" ")[1] == b"101", head
        yield RawClient(stream, bytearray(rest))
    finally:
        await trio.aclose_forcefully(stream)
