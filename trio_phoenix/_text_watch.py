"""Fail-fast UTF-8 for text frames that span reads (pure: no I/O, no Trio).

websockets' protocol hands a frame over only once it is complete, so a large text frame whose
payload turns invalid early would be read to its end before the transport could reject it.
``TextWatch`` sees the same bytes as the protocol, read by read, and keeps track of the frame
boundaries (server frames are unmasked; 7-, 16- and 64-bit lengths; a header cut by the end
of a read). When a read ends inside the payload of a text frame, or of a continuation of a
text message, it validates the payload received so far, read by read (the bytes of a
character cut by a read are carried to the next), so the transport can close with 1007 as
soon as the invalid bytes arrive. A frame that completes within a read is not looked at: the
transport validates it whole, as before.

Cost: per read, a few operations, and a decode of the new bytes of an incomplete text frame.
Where the incomplete frame starts is found from its end: the engine keeps the payload of the
frame it waits for (and nothing else, once 8 bytes or more are buffered: a header read waits
for 8 at most), so its header ends where those bytes begin; its 2, 4 or 10 bytes are told
apart by their length field. Only when that leaves a doubt (two candidates fit), or the
engine holds fewer than 8 bytes, does the watch walk the read's headers from the last known
boundary (a few operations per frame, not per byte).
"""

from __future__ import annotations

import codecs
from typing import Final

__all__ = ["TextWatch"]

_utf8_decode: Final = codecs.utf_8_decode
#: First bytes a live frame can have: a defined opcode (the engine fails the connection on
#: any other as soon as it reads the header), any FIN and RSV bits.
_FIRST: Final = bytes(
    1 if byte & 0x0F in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA) else 0 for byte in range(256)
)
#: The engine waits for at most this many bytes of a header: holding more, it is reading a
#: payload.
_MAX_HEADER_WAIT: Final = 8

#: What the incomplete frame is, for validation.
_OTHER: Final = 0  # binary, control, reserved bits set, compressed, or not started
_TEXT: Final = 1  # a text frame: a message of its own or its first fragment
_CONT: Final = 2  # a continuation frame: text if the message in progress is text


class TextWatch:
    """Follows a client's inbound frames and validates the text of the one still incomplete.

    Call ``feed(data, pending)`` with every read, in order (and first with what came after
    the handshake's response head), once the engine has parsed it: ``pending`` is how many
    bytes the engine holds for the frame it waits for (``len(protocol.reader.buffer)``);
    then, once the transport has handled the frames that the read completed,
    ``check(message)`` if ``waiting``.

    Args:
        compressed: permessage-deflate was negotiated. A compressed frame (RSV1) carries
            deflated bytes, and so does every continuation of a compressed message: those
            are skipped, websockets validates the inflated text when the frame is complete.
            Continuation frames are skipped altogether on such a connection (whether their
            message is compressed is told by its first frame only); their fragments are still
            validated as each one completes.
    """

    __slots__ = ("_carry", "_compressed", "_head", "_kind", "_left", "_lost", "_new")

    def __init__(self, *, compressed: bool = False) -> None:
        self._compressed = compressed
        self._left = 0  # bytes of the current frame still to come; 0 at a frame boundary
        self._head: bytes | bytearray = b""  # the start of a header cut by the end of a read
        self._kind = _OTHER  # the incomplete frame's kind
        # The incomplete frame's text so far: the bytes of a character it has not finished
        # (``b""`` if none), or ``None`` before its first check.
        self._carry: bytes | None = None
        # The last read and where, in it, new payload of the incomplete text frame starts.
        self._new: tuple[bytes | bytearray, int] | None = None
        self._lost = False  # a masked frame: the protocol fails the connection on it

    @property
    def waiting(self) -> bool:
        """Whether the last read brought payload bytes of a text frame that is incomplete."""
        return self._new is not None

    def feed(self, data: bytes | bytearray, pending: int) -> None:
        """Take the bytes of one read; the engine holds ``pending`` bytes after it."""
        if self._lost:
            return
        if self._head:
            data, self._head = self._head + data, b""
        size = len(data)
        position = self._left
        if position > size:  # the whole read is payload of the incomplete frame
            self._left = position - size
            if self._kind:
                self._new = (data, 0)
            return
        # The current frame (if any) ends in this read: the transport validates it whole.
        self._kind = _OTHER
        self._carry = None
        if pending >= _MAX_HEADER_WAIT:
            start = _header_before(data, size - pending, position, pending)
            if start >= 0:
                self._incomplete(data, start)
                return
        start = position
        last = size - 10  # up to here, a whole header (10 bytes at most) is in the read
        while position <= last:
            start = position
            length = data[position + 1]
            if length < 126:
                position += 2 + length
            elif length == 126:
                position += 4 + (data[position + 2] << 8 | data[position + 3])
            elif length == 127:
                position += 10 + int.from_bytes(data[position + 2 : position + 10])
            else:
                self._lost = True
                return
        while position < size:  # frames starting in the last 10 bytes: a header may be cut
            start = position
            frame = _frame_size(data, position)
            if frame is None:
                self._head, self._left = data[position:], 0
                return
            if frame < 0:
                self._lost = True
                return
            position += frame
        if position == size:
            self._left = 0
        else:
            self._incomplete(data, start)

    def _incomplete(self, data: bytes | bytearray, start: int) -> None:
        """The frame whose header is at ``start`` goes on after the end of ``data``."""
        first, length = data[start], data[start + 1]
        payload = start + 2
        if length == 126:
            length, payload = int.from_bytes(data[payload : payload + 2]), payload + 2
        elif length == 127:
            length, payload = int.from_bytes(data[payload : payload + 8]), payload + 8
        self._left = payload + length - len(data)
        if first & 0x70:  # reserved bits: compressed (RSV1), or a protocol error
            return
        opcode = first & 0x0F
        if opcode == 1:
            self._kind = _TEXT
        elif opcode == 0 and not self._compressed:
            self._kind = _CONT
        else:
            return
        if payload < len(data):
            self._new = (data, payload)

    def check(self, message: codecs.IncrementalDecoder | None) -> str | None:
        """Validate the text that the last read added to the incomplete frame.

        ``message`` decodes the fragmented text message in progress, if any: its state is
        where a continuation frame's text picks up (it is not changed). Returns the reason
        for a 1007 close when the bytes are not UTF-8, else ``None``.
        """
        assert self._new is not None
        data, start = self._new
        self._new = None
        carry = self._carry
        if carry is None:
            carry = b""
            if self._kind == _CONT:
                if message is None:  # the continuation of a binary message
                    self._kind = _OTHER
                    return None
                carry = message.getstate()[0]  # a character its last fragment began
        chunk = data[start:] if start else data
        if carry:
            chunk = carry + chunk
        try:
            _, used = _utf8_decode(chunk, "strict", False)
        except UnicodeDecodeError as exc:
            self._kind, self._carry = _OTHER, None
            return f"invalid UTF-8: {exc.reason}"
        self._carry = bytes(chunk[used:])
        return None


def _header_before(data: bytes | bytearray, payload: int, boundary: int, pending: int) -> int:
    """Where the header of the frame whose payload starts at ``payload`` is (at ``boundary``
    or after it), when only one of the 2-, 4- or 10-byte headers that could end there says a
    payload of more than ``pending`` bytes (the real one does); else -1."""
    found = -1
    start = payload - 2
    if start >= boundary and _FIRST[data[start]] and pending < data[start + 1] < 126:
        found = start
    start = payload - 4
    if (
        start >= boundary
        and _FIRST[data[start]]
        and data[start + 1] == 126
        and int.from_bytes(data[start + 2 : payload]) > pending
    ):
        if found >= 0:
            return -1
        found = start
    start = payload - 10
    if (
        start >= boundary
        and _FIRST[data[start]]
        and data[start + 1] == 127
        and int.from_bytes(data[start + 2 : payload]) > pending
    ):
        if found >= 0:
            return -1
        found = start
    return found


def _frame_size(data: bytes | bytearray, start: int) -> int | None:
    """The size (header and payload) of the frame at ``start``, checking bounds: ``None`` if
    the end of ``data`` cuts its header, -1 if it is masked (a protocol error)."""
    size = len(data)
    if start + 2 > size:
        return None
    length = data[start + 1]
    if length < 126:
        return 2 + length
    if length == 126:
        return None if start + 4 > size else 4 + int.from_bytes(data[start + 2 : start + 4])
    if length == 127:
        return None if start + 10 > size else 10 + int.from_bytes(data[start + 2 : start + 10])
    return -1
