"""What the benchmark server and clients agree on: topics, payloads, URLs, frame encoding."""

from __future__ import annotations

import json
import struct
from typing import Any, Final

TOPIC: Final = "room:lobby"
#: Event the server answers by streaming ``count`` broadcasts of ``size`` bytes on the topic.
STREAM_EVENT: Final = "stream"
#: Event of the streamed broadcasts.
BROADCAST_EVENT: Final = "new_msg"
#: Any other event is echoed: the reply's response is the push's payload.
ECHO_EVENT: Final = "echo"
#: The push payload of the round-trip benchmarks.
ECHO_PAYLOAD: Final = {"body": "hello world"}

#: The issue's small broadcast payload: ``{"body":"hello world","n":12345}``.
SMALL: Final = 0
#: A 1 KB payload: its compact JSON is exactly this many bytes.
KB: Final = 1024

_SMALL_PAYLOAD: Final = {"body": "hello world", "n": 12345}
_PAYLOAD_OVERHEAD: Final = len('{"body":"","n":12345}')

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def broadcast_payload(size: int) -> dict[str, Any]:
    """The small payload (``size`` 0) or one whose compact JSON is ``size`` bytes."""
    if size <= _PAYLOAD_OVERHEAD:
        return dict(_SMALL_PAYLOAD)
    return {"body": "x" * (size - _PAYLOAD_OVERHEAD), "n": 12345}


def mount_url(port: int) -> str:
    """The socket mount point given to ``trio_phoenix.open_socket``."""
    return f"ws://127.0.0.1:{port}/socket"


def raw_url(port: int) -> str:
    """The WebSocket URL trio_phoenix connects to, for the raw trio-websocket baseline."""
    return f"{mount_url(port)}/websocket?vsn=2.0.0"


def encode(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    """A V2 JSON text frame ``[join_ref, ref, topic, event, payload]``."""
    return dumps([join_ref, ref, topic, event, payload])


def server_frame(data: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, final WebSocket frame as a server sends it (text by default)."""
    size = len(data)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + data
