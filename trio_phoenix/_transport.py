"""The client's WebSocket transport: websockets' sans-I/O protocol on a trio stream, with no
background task.

The engine is ``websockets.client.ClientProtocol`` (chosen by measurement: on our frames it
parses about 2x faster than wsproto, see ``benchmarks/README.md``), driven by the socket's own
tasks: the reader calls ``receive_batch()``, where every complete message of one read comes
back as one list (whole unfragmented text and binary frames, the common case, are cut from
the read directly; every other frame goes through the protocol, in order); on a plain TCP
socket (POSIX) the read is a non-blocking ``os.read`` and a wait for the socket to be
readable, as trio's ``SocketStream.receive_some`` does, without its frames on every idle
connection's stack. A writer calls ``send_many(frames)``, which writes every queued frame in
one ``send_all``; the pump may first try ``write_now(take)``, a non-blocking ``os.write`` on
a plain TCP socket whose unwritten rest (``unsent``) every later write sends first, and
``aclose()`` may start the close with ``close_now``, written the same way.
Pings are answered and the server's close is echoed by the protocol itself; the reply goes out
before the reader reads again.

Bounds: ``max_message_size`` applies to a whole message (fragments add up) after
decompression (permessage-deflate, when ``compress`` is asked for and the server accepts), so
neither a large frame nor a compression bomb can make the client buffer more; a rejected
upgrade's body is read up to ``MAX_REJECTION_BODY`` bytes (``_handshake``, which opens it).

The rest of the package sees three things: a ``Transport`` that sends and receives frames,
``ConnectError`` when a connection cannot be opened (``open_transport``), and
``TransportClosed`` when an open one ends.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Final

import attrs
import trio
from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig
from websockets.frames import CloseCode, Frame as WsFrame, Opcode
from websockets.protocol import State

from ._encode import encode
from ._text_watch import TextWatch
from .proto import Frame

__all__ = ["Transport", "TransportClosed"]


_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY
_CONT: Final = Opcode.CONT
_CLOSE: Final = Opcode.CLOSE
_utf8_decoder: Final = codecs.getincrementaldecoder("utf-8")


@attrs.frozen
class TransportClosed(Exception):
    """The connection ended; ``code`` is the WebSocket close code (1006 for an abrupt drop)."""

    code: int | None
    reason: str | None


class Transport:
    """One open WebSocket connection (client side)."""

    __slots__ = (
        "_binary",
        "_closed",
        "_closer_reads",
        "_done",
        "_done_event",
        "_early",
        "_fast",
        "_head",
        "_held",
        "_initiated",
        "_max_size",
        "_owed",
        "_protocol",
        "_reading",
        "_receive_size",
        "_socket",
        "_stream",
        "_stream_closed",
        "_text",
        "_text_parts",
        "_watch",
        "_write_queue",
        "_writing",
        "compressed",
        "subprotocol",
        "unsent",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: ClientProtocol,
        subprotocol: str | None,
        *,
        receive_buffer_size: int,
        max_message_size: int | None,
        early: bytes = b"",
    ) -> None:
        self._stream = stream
        # The socket read and written directly: plain TCP on POSIX only (TLS must go through
        # its stream; Windows cannot ``os.read``/``os.write`` a socket).
        self._socket = (
            stream.socket
            if isinstance(stream, trio.SocketStream) and sys.platform != "win32"
            else None
        )
        self.unsent = b""  #: What a direct write left: the next write sends it first.
        self._early = early  # what came after the handshake's response, in the same read
        # What the protocol queued when the connection ended (a close frame, after an invalid
        # frame or the server's close) in a read that also brought messages: held back until
        # the caller has handled those messages and read again, so that what it sends in
        # answer goes out first (Autobahn's strict behaviour).
        self._held: bytes | None = None
        self._protocol = protocol
        self.subprotocol = subprotocol
        #: Whether permessage-deflate was negotiated.
        self.compressed = bool(protocol.extensions)
        # Sees every byte the protocol gets (not the frames the fast path cuts whole), to fail
        # a text frame that spans reads as soon as its invalid bytes arrive (the protocol
        # hands a frame over only once it is complete).
        self._watch = TextWatch(compressed=self.compressed)
        self._receive_size = receive_buffer_size
        # One write at a time (the reader may answer a ping while a writer writes); writers
        # that find one in progress wait in FIFO order in a queue made only then.
        self._writing = False
        self._write_queue: trio.lowlevel.ParkingLot | None = None
        self._text: codecs.IncrementalDecoder | None = None  # a fragmented text message
        # The parts of a fragmented text or binary message (None between messages: no
        # list per connection until a message is fragmented).
        self._text_parts: list[str] | None = None
        self._binary: list[bytes] | None = None
        self._initiated = False  # we sent the close frame first
        self._closed: TransportClosed | None = None
        self._done = False  # the reader must stop: close received, protocol error, EOF
        self._done_event: trio.Event | None = None  # made when someone waits for _done
        self._reading = False
        self._closer_reads = False  # aclose() reads the stream (to the server's close)
        self._stream_closed = False
        # The fast path of ``_feed`` (no compression): whole unfragmented data frames are cut
        # from a read here; every other frame goes through the protocol.
        self._fast = not protocol.extensions
        self._max_size = max_message_size
        self._owed = 0  # bytes of the frame the protocol is in the middle of
        self._head = b""  # an incomplete frame header, held until the next read

    @property
    def closed(self) -> TransportClosed | None:
        return self._closed

    # -- sending ---------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        # Taken without a schedule point when no write is in progress (send_all checkpoints).
        if self._writing:
            if self._write_queue is None:
                self._write_queue = trio.lowlevel.ParkingLot()
            await self._write_queue.park()  # the write in progress hands over when done
        self._writing = True
        try:
            if self.unsent:  # what write_now left goes first
                data, self.unsent = self.unsent + data, b""
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._lost()
            assert self._closed is not None
            raise self._closed from None
        finally:
            queue = self._write_queue
            if queue is None or not queue.unpark():
                self._writing = False  # else the next writer owns it

    async def _flush(self) -> None:
        """Write what the protocol has queued (pongs, the close frame), if anything."""
        data = b"".join(self._protocol.data_to_send())
        if data:
            try:
                await self._write(data)
            except TransportClosed:
                pass

    async def send_many(self, frames: Sequence[Frame]) -> None:
        """Send ``frames`` in order, in one write (after what ``write_now`` left unsent)."""
        if self._held is None:  # (held: the connection is ending, answers go before the close)
            if self._closed is None and self._protocol.state is not State.OPEN:
                self._lost()
            if self._closed is not None:
                self.unsent = b""  # lost with the connection
                raise self._closed
        await self._write(encode(self._protocol, frames, fast=self._fast))

    def write_now(self, take: Callable[[], Sequence[Frame]]) -> int | None:
        """Write the frames ``take()`` returns at once, without blocking, when nothing else is
        being written; return how many bytes the kernel took. The rest stays in ``unsent``,
        for the next write (of the writer's ``send_many``) to send first.

        Returns ``None``, without calling ``take``, when it cannot write now: not a plain TCP
        socket on POSIX (TLS, Windows), a write in progress, bytes already unsent, or the
        connection ending. A write that fails (``EAGAIN``, ``EPIPE``, ``ECONNRESET``) leaves
        every byte unsent: the writer's write then reports the loss, as it would have."""
        sock = self._socket
        if (
            sock is None
            or self.unsent
            or self._closed is not None
            or self._held is not None
            or self._writing
            or self._protocol.state is not State.OPEN
        ):
            return None
        return self._write_direct(sock, encode(self._protocol, take(), fast=self._fast))

    def _write_direct(self, sock: trio.socket.SocketType, data: bytes) -> int:
        """Write what the kernel takes of ``data`` at once; keep the rest in ``unsent``."""
        try:
            written = os.write(sock.fileno(), data)
        except OSError:
            written = 0
        if written < len(data):
            self.unsent = data[written:]
        return written

    # -- receiving -------------------------------------------------------------------------

    def _set_done(self) -> None:
        """The reader must stop (the server's close, a protocol error, the end of the stream):
        wake whoever waits for that."""
        self._done = True
        if self._done_event is not None:
            self._done_event.set()

    async def _wait_done(self) -> None:
        event = self._done_event
        if event is None:
            event = self._done_event = trio.Event()
            if self._done:
                event.set()
        await event.wait()

    def _lost(self) -> None:
        if self._closed is None:
            self._closed = TransportClosed(1006, None)
        self._set_done()

    def receive_batch(self) -> Coroutine[object, None, list[Frame]]:
        """Every complete message of the next read (at least one). (A plain function that
        returns the coroutine: an idle connection keeps one frame less.)

        Raises:
            TransportClosed: the connection ended (after the messages that preceded the end).
        """
        if self._closer_reads:  # aclose() reads to the server's close: wait for that
            return self._closed_by_closer()
        return self._receive_batch(reading=True)

    async def _closed_by_closer(self) -> list[Frame]:
        await self._wait_done()
        assert self._closed is not None
        raise self._closed

    async def _receive_batch(self, *, reading: bool = False) -> list[Frame]:
        """Read until at least one message is complete (``reading``: for the reader, not
        ``aclose()``); the messages of the read that completed it come back together."""
        self._reading = reading
        try:
            if self._held is not None:
                held, self._held = self._held, None
                if held:  # (empty when the protocol queued nothing, e.g. after our own close)
                    try:
                        await self._write(held)
                    except TransportClosed:
                        pass
            frames: list[Frame] = []
            while not await self._settle(frames):
                data: bytes | bytearray
                sock = self._socket
                if self._early:
                    data, self._early = self._early, b""
                elif sock is not None:
                    # The socket is read here, as trio's SocketStream.receive_some would (a
                    # checkpoint either way), without its three frames on every idle
                    # connection's stack.
                    await trio.lowlevel.checkpoint_if_cancelled()
                    read = _read_now(sock, self._receive_size)
                    if read is None:
                        while read is None:
                            try:
                                await trio.lowlevel.wait_readable(sock)
                            except trio.ClosedResourceError:
                                read = b""  # closed by abort()
                            else:
                                read = _read_now(sock, self._receive_size)
                    else:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    data = read
                else:
                    try:
                        data = await self._stream.receive_some(self._receive_size)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                self._take(data, frames)
            if frames:
                return frames
            assert self._closed is not None
            raise self._closed
        finally:
            self._reading = False

    async def _settle(self, frames: list[Frame]) -> bool:
        """Handle what the protocol parsed and answer it (pongs, the close echo); return
        whether the batch is ready: messages in ``frames``, or the connection done."""
        protocol = self._protocol
        if not self._done:
            for event in protocol.events_received():
                assert isinstance(event, WsFrame)
                if self._handle(event, frames):
                    break  # a message after an invalid one is not delivered
        failed = self._check_failure()
        if not failed and self._watch.waiting:
            # The read ended inside a text frame: validate what came of it so far.
            reason = self._watch.check(self._text)
            if reason is not None:
                self._fail(CloseCode.INVALID_DATA, reason)
                failed = True
        if failed and frames:
            self._held = b"".join(protocol.data_to_send())
            return True  # the messages go before the error or close that followed them
        await self._flush()
        if self._done:
            await self._close_stream()
        return self._done or bool(frames)

    def _take(self, data: bytes | bytearray, frames: list[Frame]) -> None:
        """Take one read (empty: the end of the stream)."""
        if not data:
            protocol = self._protocol
            if self._head:
                protocol.receive_data(self._head)
            protocol.receive_eof()
            self._check_failure()
            self._lost()
        elif self._fast:
            self._feed(data, frames)
        else:
            self._give(data)

    def _feed(self, data: bytes | bytearray, frames: list[Frame]) -> None:
        """Take one read: whole unfragmented text and binary frames become messages here
        (the common case, without the protocol's per-frame parsing); every other frame (a
        control frame, a fragment, a frame the read ends in, anything invalid) goes to the
        protocol, whose events are handled at once, so messages keep their order."""
        protocol = self._protocol
        owed = self._owed
        if owed:  # the rest of a frame the protocol is parsing
            if len(data) <= owed:
                self._owed = owed - len(data)
                self._give(data)
                return
            self._owed = 0
            self._give(data[:owed])
            if self._take_events(frames):
                return
            data = data[owed:]
        if self._head:
            data = self._head + data
            self._head = b""
        size = len(data)
        limit = self._max_size
        offset = 0
        while offset < size:
            start = offset + 2
            if start > size:
                self._head = bytes(data[offset:])
                return
            first, second = data[offset], data[offset + 1]
            if second & 0x80:  # masked: the protocol fails the connection
                self._fast = False
                self._give(data[offset:])
                self._take_events(frames)
                return
            length = second
            if length >= 126:
                start += 2 if length == 126 else 8
                if start > size:
                    self._head = bytes(data[offset:])
                    return
                length = int.from_bytes(data[offset + 2 : start])
            end = start + length
            if (
                (first == 0x81 or first == 0x82)  # FIN, no RSV bits, text or binary
                and end <= size
                and (limit is None or length <= limit)
                and protocol.current_size is None  # not in the middle of a fragmented message
            ):
                if first == 0x81:
                    try:
                        frames.append(data[start:end].decode())
                    except UnicodeDecodeError as exc:
                        self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8: {exc.reason}")
                        return
                else:
                    frames.append(bytes(data[start:end]))
                offset = end
                continue
            self._give(data[offset:end])
            if end > size:
                self._owed = end - size
                return
            if self._take_events(frames):
                return
            offset = end

    def _give(self, data: bytes | bytearray) -> None:
        """Hand bytes to the protocol, and show them to the text watch."""
        protocol = self._protocol
        protocol.receive_data(data)
        self._watch.feed(data, len(protocol.reader.buffer))

    def _take_events(self, frames: list[Frame]) -> bool:
        """Handle what the protocol parsed; return whether the connection is done."""
        for event in self._protocol.events_received():
            assert isinstance(event, WsFrame)
            if self._handle(event, frames):
                return True
        return self._done or self._protocol.parser_exc is not None

    def _check_failure(self) -> bool:
        """After the protocol failed the connection (a protocol error, invalid UTF-8, a
        message over ``max_message_size``, an abrupt end): remember the code it sent."""
        protocol = self._protocol
        error = protocol.parser_exc
        if error is None or self._done:
            return self._done
        sent = protocol.close_sent
        if self._closed is None or self._initiated:
            if sent is None or isinstance(error, EOFError):
                self._closed = TransportClosed(1006, None)
            else:
                reason = sent.reason
                if isinstance(error, PayloadTooBig):
                    reason = f"message over max_message_size: {error}"
                self._closed = TransportClosed(int(sent.code), reason or None)
        self._set_done()
        return True

    def _fail(self, code: int, reason: str) -> None:
        self._protocol.fail(code, reason)
        if self._closed is None:
            self._closed = TransportClosed(code, reason)
        self._set_done()

    def _handle(self, event: WsFrame, frames: list[Frame]) -> bool:
        """Take one frame; return whether the connection is done."""
        opcode = event.opcode
        if opcode is _TEXT:
            if event.fin:  # the common case: one whole message
                try:
                    frames.append(str(event.data, "utf-8"))
                except UnicodeDecodeError as exc:
                    self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8: {exc.reason}")
            else:
                self._text, self._text_parts = _utf8_decoder(), []
                self._add_text(event.data, final=False)
        elif opcode is _BINARY:
            if event.fin:
                frames.append(bytes(event.data))
            else:
                self._binary = [bytes(event.data)]
        elif opcode is _CONT:
            # The protocol checks that a continuation continues something.
            if self._text is not None:
                self._add_text(event.data, final=event.fin)
                if event.fin and not self._done:
                    assert self._text_parts is not None
                    frames.append("".join(self._text_parts))
                    self._text, self._text_parts = None, None
            else:
                assert self._binary is not None
                self._binary.append(bytes(event.data))
                if event.fin:
                    frames.append(b"".join(self._binary))
                    self._binary = None
        elif opcode is _CLOSE:
            received = self._protocol.close_rcvd
            assert received is not None
            if self._closed is None or self._initiated:
                self._closed = TransportClosed(int(received.code), received.reason or None)
            self._set_done()
        # Ping (answered by the protocol) and pong: nothing to do.
        return self._done

    def _add_text(self, data: bytes | bytearray | memoryview, *, final: bool) -> None:
        """Decode a fragment of a text message as it comes: invalid UTF-8 fails at once."""
        assert self._text is not None
        assert self._text_parts is not None
        try:
            self._text_parts.append(self._text.decode(bytes(data), final))
        except UnicodeDecodeError as exc:
            self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8: {exc.reason}")

    # -- closing ---------------------------------------------------------------------------

    async def aclose(
        self, code: int = 1000, reason: str | None = None, frames: Sequence[Frame] = ()
    ) -> None:
        """Start the close handshake and wait for the server's close (bound it yourself);
        ``frames`` go out first, in the same write as the close frame."""
        try:
            protocol = self._protocol
            if self._closed is None and protocol.state is State.OPEN:
                self._initiated = True
                self._closed = TransportClosed(1000, None)
                data = encode(protocol, frames, fast=self._fast) if frames else b""
                protocol.send_close(code, reason or "")
                try:
                    await self._write(data + b"".join(protocol.data_to_send()))
                except TransportClosed:
                    return
                if self._reading:
                    await self._wait_done()
                else:
                    self._closer_reads = True
                    while not self._done:
                        try:
                            await self._receive_batch()
                        except TransportClosed:
                            break
        finally:
            if not self._reading or self._done:
                await self._close_stream()

    def close_now(self, code: int, reason: str, frames: Sequence[Frame]) -> bool:
        """Start the close handshake without waiting: ``frames`` and the close frame are
        written as ``write_now`` writes (or join ``unsent`` behind a write in progress); the
        reader gets the server's close. ``False`` (nothing done) where ``aclose`` must do it:
        not a plain TCP socket on POSIX, or the connection already ending."""
        sock = self._socket
        protocol = self._protocol
        if (
            sock is None
            or self._closed is not None
            or self._held is not None
            or protocol.state is not State.OPEN
        ):
            return False
        self._initiated = True
        self._closed = TransportClosed(1000, None)
        data = encode(protocol, frames, fast=self._fast) if frames else b""
        protocol.send_close(code, reason)
        data += b"".join(protocol.data_to_send())
        if self._writing or self.unsent:
            self.unsent += data
        else:
            self._write_direct(sock, data)
        return True

    async def send_unsent(self) -> None:
        """Write what ``write_now`` or ``close_now`` left (the connection may be closing)."""
        if self.unsent:
            try:
                await self._write(b"")
            except TransportClosed:
                pass  # the reader sees the loss

    async def abort(self) -> None:
        """Close the stream at once (nothing to do if it is closed already)."""
        self._lost()
        await self._close_stream()

    async def _close_stream(self) -> None:
        """Close the stream at once, the first time only; a plain socket stream is closed
        without a checkpoint (``aclose_forcefully`` raises and catches a cancellation)."""
        if self._stream_closed:
            return
        self._stream_closed = True
        stream = self._stream
        if type(stream) is trio.SocketStream:
            stream.socket.close()
        else:
            await trio.aclose_forcefully(stream)


def _read_now(sock: trio.socket.SocketType, size: int) -> bytes | None:
    """Up to ``size`` bytes the socket has: empty at its end, ``None`` if none came yet."""
    try:
        return os.read(sock.fileno(), size)
    except BlockingIOError:
        return None
    except OSError:  # reset by the peer, or closed (fileno() is then -1)
        return b""
