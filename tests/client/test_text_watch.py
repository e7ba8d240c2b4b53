"""``TextWatch``: fail-fast UTF-8 of text frames that span reads, tested synchronously.

The watch sees the bytes of each read after the engine (websockets' sans-I/O protocol, the
real one) has parsed them; the transport (simulated by ``Reader`` here, as ``Transport._handle``
does it) validates every frame that a read completes, and asks the watch about the incomplete
one. Together they must reject invalid UTF-8 at the read that brings the first invalid byte,
never a read earlier (a valid stream, however it is cut), never later.
"""

from __future__ import annotations

import codecs
import itertools
import struct

import pytest
from hypothesis import given, settings, strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri

from trio_phoenix._text_watch import TextWatch, _header_before

TEXT, BINARY, CONT, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9
SNOWMAN = "\u2603".encode()  # three bytes
INVALID = b"\xff"


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, length_bytes: int = 0
) -> bytes:
    """One unmasked frame; ``length_bytes`` 2 or 8 forces a 16- or 64-bit length."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    if length_bytes == 8 or (not length_bytes and size >= 65536):
        header = struct.pack("!BBQ", first, 127, size)
    elif length_bytes == 2 or size >= 126:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BB", first, size)
    return header + payload


def cut(data: bytes, *points: int) -> list[bytes]:
    """``data`` in reads that end at ``points``."""
    edges = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


class Reader:
    """What the transport does with a read: the engine parses it, the frames it completes are
    validated whole (a text message's fragments with one decoder), then the watch checks the
    incomplete one."""

    def __init__(self, *, compressed: bool = False) -> None:
        self.engine = ClientProtocol(parse_uri("ws://test/"), state=State.OPEN, max_size=None)
        if compressed:
            self.engine.extensions = [PerMessageDeflate(False, False, 15, 15)]
        self.watch = TextWatch(compressed=compressed)
        self.message: codecs.IncrementalDecoder | None = None  # a fragmented text message
        self.texts: list[str] = []

    def read(self, data: bytes) -> str | None:
        """Take one read; return the reason if it fails the connection."""
        self.engine.receive_data(data)
        self.watch.feed(data, len(self.engine.reader.buffer))
        assert self.engine.parser_exc is None
        for event in self.engine.events_received():
            assert isinstance(event, Frame)
            if (reason := self.complete(event)) is not None:
                return reason
        if self.watch.waiting:
            return self.watch.check(self.message)
        return None

    def complete(self, event: Frame) -> str | None:
        opcode, fin, payload = event.opcode, event.fin, bytes(event.data)
        try:
            if opcode == TEXT and fin:
                self.texts.append(payload.decode())
            elif opcode == TEXT:
                self.message = codecs.getincrementaldecoder("utf-8")()
                self.texts.append(self.message.decode(payload))
            elif opcode == CONT and self.message is not None:
                self.texts.append(self.message.decode(payload, fin))
                if fin:
                    self.message = None
        except UnicodeDecodeError as exc:
            return f"invalid UTF-8: {exc.reason}"
        return None


def first_failure(reads: list[bytes], *, compressed: bool = False) -> int | None:
    """The index of the read that fails the connection, if any."""
    reader = Reader(compressed=compressed)
    for index, data in enumerate(reads):
        if reader.read(data) is not None:
            return index
    return None


# -- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length_bytes", [0, 2, 8], ids=["7-bit", "16-bit", "64-bit"])
def test_a_text_frame_fails_at_the_read_with_the_invalid_bytes(length_bytes: int) -> None:
    data = frame(TEXT, b"valid " + INVALID + b"x" * 100, length_bytes=length_bytes)
    header = len(data) - 107
    reader = Reader()
    assert reader.read(data[: header + 3]) is None  # the header and "val"
    assert reader.read(data[header + 3 : header + 10]) == "invalid UTF-8: invalid start byte"


def test_the_reason_is_the_one_a_complete_frame_gets() -> None:
    for payload in (b"a" + INVALID, b"\xe2\x28\xa1", b"\xed\xa0\x80"):
        whole = Reader().read(frame(TEXT, payload + b"x" * 50))
        early = Reader().read(frame(TEXT, payload + b"x" * 50)[: 2 + len(payload)])
        assert whole is not None
        assert early == whole


def test_valid_text_cut_anywhere_passes() -> None:
    """Every cut of a stream of valid frames, a character split across reads included."""
    text = ("a" * 130 + "\u2603\U0001f600é") * 3
    data = (
        frame(TEXT, text.encode())
        + frame(BINARY, INVALID * 200)
        + frame(TEXT, SNOWMAN[:1], fin=False)
        + frame(PING, b"p")
        + frame(CONT, SNOWMAN[1:] + SNOWMAN * 49, fin=False, length_bytes=8)  # ends a character
        + frame(CONT, b"", fin=True)
        + frame(BINARY, INVALID, fin=False)
        + frame(CONT, INVALID * 300)
    )
    for point in range(1, len(data)):
        assert first_failure(cut(data, point)) is None, point
    assert first_failure([data[i : i + 1] for i in range(len(data))]) is None


def test_a_continuation_fails_where_its_message_turns_invalid() -> None:
    """The continuation picks up the message's decoder state: here a character its first
    fragment began, which the continuation's first byte does not continue."""
    start = frame(TEXT, b"ok" + SNOWMAN[:1], fin=False)
    data = start + frame(PING, b"") + frame(CONT, b"x" + b"y" * 200)
    at = len(start) + 2 + 4 + 1  # after the ping, the continuation's header and its "x"
    assert first_failure(cut(data, at - 1, at)) == 1
    # The continuation of a binary message is not text.
    assert Reader().read(frame(CONT, INVALID * 50)[:10]) is None


def test_binary_frames_are_not_validated() -> None:
    data = frame(BINARY, INVALID * 300, fin=False) + frame(CONT, INVALID * 300)
    assert first_failure(cut(data, 10, 400, 500)) is None


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
def test_frames_with_reserved_bits_are_left_to_the_protocol(rsv: int) -> None:
    """RSV1 is a compressed frame (deflated bytes, validated once inflated); RSV2/3 make the
    protocol fail the frame when it is complete (1002)."""
    reader = Reader(compressed=rsv == 0x40)
    assert reader.read(frame(TEXT, INVALID * 200, rsv=rsv)[:20]) is None
    assert not reader.watch.waiting


def test_on_a_compressed_connection_continuations_are_skipped() -> None:
    """Their message's first frame says whether they are deflated; an uncompressed message's
    fragments are still validated as each one completes."""
    data = frame(TEXT, b"a", fin=False) + frame(CONT, INVALID + b"x" * 200)
    assert first_failure(cut(data, 10), compressed=True) == 1  # when it completes
    assert first_failure(cut(data, 10), compressed=False) == 0
    # A compressed connection's uncompressed text frame is validated as it comes.
    assert first_failure(cut(frame(TEXT, INVALID * 200), 10), compressed=True) == 0


def test_a_header_cut_anywhere_is_reassembled() -> None:
    for length_bytes in (0, 2, 8):
        data = frame(PING, b"") + frame(TEXT, b"ok" + INVALID * 50, length_bytes=length_bytes)
        header = len(data) - 52
        for point in range(1, header):
            # The first byte of the payload (valid) ends the second read: not yet.
            assert first_failure(cut(data, point, header + 1, header + 3)) == 2, point


def test_a_masked_frame_stops_the_watch() -> None:
    """The protocol fails the connection on a masked server frame (1002); the watch cannot
    size such a frame, and gives up rather than guess."""
    masked = bytes([0x81, 0x80 | 10]) + b"\0\0\0\0" + b"x" * 10
    watch = TextWatch()
    watch.feed(masked + frame(TEXT, INVALID * 100)[:20], 0)
    assert not watch.waiting
    watch.feed(INVALID * 50, 0)
    assert not watch.waiting
    watch = TextWatch()
    watch.feed(frame(TEXT, b"x" * 20) + masked[:4], 0)  # in the last 10 bytes of the read
    watch.feed(frame(TEXT, INVALID * 100)[:20], 18)
    assert not watch.waiting


def test_a_frame_that_ends_a_read_leaves_nothing_to_check() -> None:
    data = frame(TEXT, b"x" * 300)
    header_only = frame(TEXT, b"y" * 10)[:2]  # no payload yet
    reader = Reader()
    waiting = []
    for read in (data[:100], data[100:], header_only, b"y" * 3):
        assert reader.read(read) is None
        waiting.append(reader.watch.waiting)
    assert waiting == [False, False, False, False]  # all checked
    assert reader.texts == ["x" * 300]


@pytest.mark.parametrize(
    ("first", "header"),
    [
        # A 2-byte header, and before it a binary frame whose payload ends like a 4-byte one.
        (frame(BINARY, b"\x81\x7e") + frame(TEXT, b"y" * 100), 2),
        # A 16-bit length, 0x01 0x2c, that reads as a 2-byte header (text, 44 bytes).
        (frame(TEXT, b"y" * 300), 4),
        # The last two bytes of a 64-bit length, likewise.
        (frame(TEXT, b"y" * 300, length_bytes=8), 10),
    ],
    ids=["4-or-2", "2-or-4", "2-or-10"],
)
def test_when_two_headers_fit_before_the_engine_buffer_the_watch_walks(
    first: bytes, header: int
) -> None:
    """A read that ends 20 bytes into a frame's payload: the engine holds those 20 bytes, and
    two of the headers that could end where they begin say more than 20. The watch walks the
    read to find the real one, and stays in step for the frames after it."""
    payload = len(first) - (100 if header == 2 else 300)
    ends = payload + 20
    assert _header_before(first[:ends], payload, 0, 20) == -1
    data = first + frame(TEXT, b"ok" + INVALID + b"z" * 200) + frame(TEXT, b"fine")
    for point in range(1, len(data)):
        reads = cut(data, ends, point)
        assert first_failure(reads) == expected_failure(reads), point


def test_a_64_bit_length_cut_short_is_header_not_payload() -> None:
    """Fewer than 8 bytes held: the engine may be waiting for the rest of a 64-bit length.
    Here the bytes before that header look like a 4-byte text header whose payload would
    start where the held bytes do; the watch must not take them for one (the binary payload
    would then be checked as text)."""
    before = frame(BINARY, b"\x81\x7e")  # ends like the first half of a text header
    data = before + frame(BINARY, INVALID * 300, length_bytes=8) + frame(TEXT, b"a" * 200)
    header = len(before)
    for held in range(2, 8):
        reads = cut(data, header + 2 + held, header + 10 + 2)
        assert first_failure(reads) is None, held


# -- any stream, cut anywhere ---------------------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    """Frames of valid messages (a text message is split at any byte, characters too), with
    control frames between fragments; maybe one invalid byte somewhere in a text payload."""
    frames: list[tuple[int, bytes, bool]] = []  # (opcode, payload, fin)
    for _ in range(draw(st.integers(1, 6))):
        binary = draw(st.booleans())
        text = draw(st.text(max_size=200)).encode()
        payload = draw(st.binary(max_size=300)) if binary else text
        points = sorted(draw(st.sets(st.integers(0, len(payload)), max_size=3)))
        parts = cut(payload, *points) or [b""]
        for index, part in enumerate(parts):
            opcode = (BINARY if binary else TEXT) if index == 0 else CONT
            frames.append((opcode, part, index == len(parts) - 1))
            if draw(st.integers(0, 4)) == 0:
                frames.append((PING, draw(st.binary(max_size=20)), True))
    invalid = draw(st.booleans())
    text_bytes = [
        (index, offset)
        for index, (opcode, payload, _) in enumerate(frames)
        for offset in range(len(payload))
        if opcode == TEXT or (opcode == CONT and _message_is_text(frames, index))
    ]
    if invalid and text_bytes:
        index, offset = draw(st.sampled_from(text_bytes))
        opcode, payload, fin = frames[index]
        frames[index] = (opcode, payload[:offset] + INVALID + payload[offset + 1 :], fin)
    else:
        invalid = False
    encoded = [
        frame(opcode, payload, fin=fin, length_bytes=draw(st.sampled_from([0, 2, 8])))
        for opcode, payload, fin in frames
    ]
    data = b"".join(encoded)
    ends = draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=12))
    return cut(data, *ends), invalid


def _message_is_text(frames: list[tuple[int, bytes, bool]], index: int) -> bool:
    for opcode, _, _ in reversed(frames[:index]):
        if opcode in (TEXT, BINARY):
            return opcode == TEXT
    raise AssertionError("a continuation without a message")


def expected_failure(reads: list[bytes]) -> int | None:
    """The read at which the text received so far stops being a prefix of valid UTF-8 (per
    message), or a text message completes invalid."""
    received = b""
    for index, data in enumerate(reads):
        received += data
        decoder: codecs.IncrementalDecoder | None = None
        rest = received
        while len(rest) >= 2:
            first, opcode = rest[0], rest[0] & 0x0F
            length, offset = rest[1] & 0x7F, 2
            if length >= 126:
                offset = 4 if length == 126 else 10
                if len(rest) < offset:
                    break
                length = int.from_bytes(rest[2:offset])
            payload = rest[offset : offset + length]
            complete = len(payload) == length
            if opcode == TEXT:
                decoder = codecs.getincrementaldecoder("utf-8")()
            if opcode == BINARY:
                decoder = None
            if opcode in (TEXT, CONT) and decoder is not None:
                fin = bool(first & 0x80) and complete
                try:
                    decoder.decode(payload, fin)
                except UnicodeDecodeError:
                    return index
                if fin:
                    decoder = None
            if not complete:
                break
            rest = rest[offset + length :]
    return None


@settings(max_examples=400, deadline=None)
@given(streams())
def test_any_stream_fails_exactly_at_the_first_invalid_byte(
    stream: tuple[list[bytes], bool],
) -> None:
    reads, invalid = stream
    expected = expected_failure(reads)
    assert (expected is not None) == invalid
    assert first_failure(reads) == expected
