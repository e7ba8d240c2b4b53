"""The client's WebSocket transport: wsproto on a trio stream, with no background task.

trio-websocket (which the test server uses) runs a reader task per connection and hands each
message over a memory channel: two task steps per message, and one ``send_all`` per frame.
A Phoenix client can do better, because it already has exactly one reader and one writer
task: the socket's reader calls ``receive_batch()``, where one ``receive_some`` feeds wsproto
and every complete message in it comes back as one list, and the writer calls
``send_many(frames)``, which writes every queued frame in one ``send_all``. The benchmarks
(``make bench``) compare this with raw trio-websocket.

The rest of the package sees three things: a ``Transport`` that sends and receives frames,
``ConnectError`` when a connection cannot be opened, and ``TransportClosed`` when an open one
ends.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError as WsprotoProtocolError

from ._exceptions import ConnectError
from ._network import open_stream
from .proto import Frame, redact_url

__all__ = ["MAX_REJECTION_BODY", "Transport", "TransportClosed", "open_transport"]

#: How much of a rejected upgrade's response body is read (and kept in ``ConnectError.body``);
#: the rest is never read: the connection is closed.
MAX_REJECTION_BODY: Final = 65536


@attrs.frozen
class TransportClosed(Exception):
    """The connection ended; ``code`` is the WebSocket close code (1006 for an abrupt drop)."""

    code: int | None
    reason: str | None


class Transport:
    """One open WebSocket connection (client side)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: WSConnection,
        subprotocol: str | None,
        *,
        max_message_size: int,
        receive_buffer_size: int,
    ) -> None:
        self._stream = stream
        self._ws = ws
        self.subprotocol = subprotocol
        self._max_message_size = max_message_size
        self._receive_size = receive_buffer_size
        self._send_lock = trio.StrictFIFOLock()
        self._text: list[str] = []  # parts of a fragmented message
        self._binary: list[bytes] = []
        self._size = 0
        self._initiated = False  # we sent the close frame first
        self._closed: TransportClosed | None = None
        self._close_received = trio.Event()
        self._done = False  # the reader must stop: close received, 1009, protocol error, EOF
        self._reading = False
        self._unread: deque[Frame] | None = None  # only used by receive()

    @property
    def closed(self) -> TransportClosed | None:
        return self._closed

    # -- sending ---------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        # The lock only matters when the reader answers a ping or a close while the writer
        # writes; take it without a schedule point when it is free (send_all checkpoints).
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._lost()
            assert self._closed is not None
            raise self._closed from None
        finally:
            lock.release()

    def _encode(self, frame: Frame) -> bytes:
        event = TextMessage(data=frame) if isinstance(frame, str) else BytesMessage(data=frame)
        return self._ws.send(event)

    async def send(self, frame: Frame) -> None:
        await self.send_many([frame])

    async def send_many(self, frames: Sequence[Frame]) -> None:
        """Send ``frames`` in order, in one write."""
        if self._closed is not None:
            raise self._closed
        await self._write(b"".join([self._encode(frame) for frame in frames]))

    # -- receiving -------------------------------------------------------------------------

    def _lost(self) -> None:
        if self._closed is None:
            self._closed = TransportClosed(1006, None)
        self._done = True
        self._close_received.set()

    async def receive(self) -> Frame:
        """The next message (``receive_batch`` is cheaper when many arrive together)."""
        if not self._unread:
            self._unread = deque(await self.receive_batch())
        return self._unread.popleft()

    async def receive_batch(self) -> list[Frame]:
        """Every complete message of the next read (at least one).

        Raises:
            TransportClosed: the connection ended (after the messages that preceded the end).
        """
        self._reading = True
        try:
            return await self._receive_batch()
        finally:
            self._reading = False

    async def _receive_batch(self) -> list[Frame]:
        ws = self._ws
        while True:
            frames: list[Frame] = []
            reply = bytearray()
            for event in ws.events():
                self._handle(event, frames, reply)
            if reply:
                try:
                    await self._write(bytes(reply))
                except TransportClosed:
                    pass
            if self._done:
                await trio.aclose_forcefully(self._stream)
            if frames:
                return frames
            if self._done:
                assert self._closed is not None
                raise self._closed
            try:
                data = await self._stream.receive_some(self._receive_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._lost()
                assert self._closed is not None
                raise self._closed
            try:
                ws.receive_data(bytes(data))
            except WsprotoProtocolError as exc:
                self._closed = TransportClosed(1002, str(exc))
                hint = exc.event_hint
                if isinstance(hint, CloseConnection) and ws.state is ConnectionState.OPEN:
                    reply = bytearray(ws.send(hint))
                    try:
                        await self._write(bytes(reply))
                    except TransportClosed:
                        pass
                self._done = True
                self._close_received.set()
                await trio.aclose_forcefully(self._stream)
                raise self._closed from None

    def _handle(self, event: Event, frames: list[Frame], reply: bytearray) -> None:
        if isinstance(event, TextMessage | BytesMessage):
            self._size += len(event.data)
            if self._size > self._max_message_size:
                if self._closed is None:
                    reason = f"Exceeded maximum message size: {self._max_message_size} bytes"
                    self._closed = TransportClosed(1009, reason)
                    reply += self._ws.send(CloseConnection(code=1009, reason=reason))
                    self._done = True
                self._text, self._binary, self._size = [], [], 0
            elif isinstance(event, TextMessage):
                if event.message_finished and not self._text:
                    frames.append(event.data)  # the common case: one whole message
                else:
                    self._text.append(event.data)
                    if event.message_finished:
                        frames.append("".join(self._text))
                        self._text = []
                if event.message_finished:
                    self._size = 0
            else:
                self._binary.append(bytes(event.data))
                if event.message_finished:
                    frames.append(b"".join(self._binary))
                    self._binary, self._size = [], 0
        elif isinstance(event, Ping):
            reply += self._ws.send(event.response())
        elif isinstance(event, CloseConnection):
            if self._ws.state is ConnectionState.REMOTE_CLOSING:  # the server closed first
                reply += self._ws.send(event.response())
            if self._closed is None or self._initiated:
                self._closed = TransportClosed(event.code, event.reason or None)
            self._done = True
            self._close_received.set()

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Start the close handshake and wait for the server's close (bound it yourself)."""
        try:
            if self._closed is None and self._ws.state is ConnectionState.OPEN:
                self._initiated = True
                self._closed = TransportClosed(1000, None)
                try:
                    await self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
                except TransportClosed:
                    return
                if self._reading:
                    await self._close_received.wait()
                else:
                    while not self._close_received.is_set():
                        try:
                            await self._receive_batch()
                        except TransportClosed:
                            break
        finally:
            if not self._reading or self._close_received.is_set():
                await trio.aclose_forcefully(self._stream)

    async def abort(self) -> None:
        """Close the stream at once."""
        self._lost()
        await trio.aclose_forcefully(self._stream)


async def open_transport(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int,
    receive_buffer_size: int | None = 65536,
    proxy: str | None = None,
) -> Transport:
    """Open a WebSocket connection (it needs no background task).

    ``proxy`` is a proxy URL to tunnel through (see ``_network.proxy_for``), or ``None``.

    Raises:
        ConnectError: the server refused the upgrade (``status`` set) or could not be
            reached, the proxy failed, or the TLS handshake failed.
    """
    where = redact_url(url)
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header = f"{host_header}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream | None = None
    try:
        stream = await open_stream(host, port, secure=secure, ssl_context=ssl_context, proxy=proxy)
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=host_header,
            target=resource,
            subprotocols=list(subprotocols),
            extra_headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        )
        await stream.send_all(ws.send(request))
        status: int | None = None
        body = bytearray()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                if status is not None:
                    break
                raise ConnectError(f"WebSocket handshake with {where} failed: connection closed")
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    transport = Transport(
                        stream,
                        ws,
                        event.subprotocol,
                        max_message_size=max_message_size,
                        receive_buffer_size=receive_buffer_size or 65536,
                    )
                    stream = None
                    return transport
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        break
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished or len(body) >= MAX_REJECTION_BODY:
                        break
            else:
                continue
            break
        hint = ""
        if status == 404:
            hint = (
                f" (nothing at {parts.path or '/'}; give open_socket the socket's mount point,"
                ' e.g. "ws://host/socket": "/websocket" is added)'
            )
        raise ConnectError(
            f"the server refused the WebSocket upgrade to {where}: HTTP {status}{hint}",
            status=status,
            body=bytes(body[:MAX_REJECTION_BODY]),
        )
    except WsprotoProtocolError as exc:
        raise ConnectError(f"WebSocket handshake with {where} failed: {exc!r}") from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise ConnectError(f"TLS handshake with {where} failed: {exc}") from exc
    except (OSError, trio.BrokenResourceError) as exc:
        cause = exc.__cause__  # trio.SSLStream wraps the SSLError in BrokenResourceError
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            raise ConnectError(f"TLS handshake with {where} failed: {cause}") from cause
        raise ConnectError(f"cannot connect to {where}: {exc}") from exc
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)
