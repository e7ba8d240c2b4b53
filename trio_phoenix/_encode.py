"""The bytes of the client's data frames, as websockets' ``ClientProtocol`` writes them.

One encoder for every write of the WebSocket transport (the writer's ``send_many`` and the
pump's ``write_now``): without an extension the frames are masked here, faster than through
the protocol; with permessage-deflate they go through the protocol (its compressor keeps
state); once the protocol is closing (the answers that go out before our close) they are
serialized outside its state.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Final

from websockets.client import ClientProtocol
from websockets.frames import Frame as WsFrame, Opcode
from websockets.protocol import State

from .proto import Frame

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

__all__ = ["encode"]

_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY


def encode(protocol: ClientProtocol, frames: Sequence[Frame], *, fast: bool) -> bytes:
    """``frames`` (text for ``str``, binary for ``bytes``) as one string of bytes, masked
    and compressed when negotiated; ``fast``: no extension, the frames are masked here."""
    if fast:
        return b"".join(
            [
                _masked(0x81, frame.encode()) if isinstance(frame, str) else _masked(0x82, frame)
                for frame in frames
            ]
        )
    if protocol.state is not State.OPEN:
        extensions = protocol.extensions
        return b"".join(
            WsFrame(_TEXT, frame.encode()).serialize(mask=True, extensions=extensions)
            if isinstance(frame, str)
            else WsFrame(_BINARY, frame).serialize(mask=True, extensions=extensions)
            for frame in frames
        )
    for frame in frames:
        if isinstance(frame, str):
            protocol.send_text(frame.encode())
        else:
            protocol.send_binary(frame)
    return b"".join(protocol.data_to_send())


def _masked(first: int, data: bytes) -> bytes:
    """A client frame: ``first`` is the first byte (FIN and the opcode), ``data`` is masked
    with 4 random bytes (websockets takes them from the same source)."""
    mask = os.urandom(4)
    size = len(data)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, 0xFE, size)
    else:
        head = struct.pack("!BBQ", first, 0xFF, size)
    return head + mask + apply_mask(data, mask)
