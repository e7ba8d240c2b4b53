"""The ``transport="trio-websocket"`` transport: the client over the trio-websocket library.

trio-websocket (the Trio ecosystem's WebSocket library) runs a reader task per connection and
hands each message over a memory channel; this adapter gives it the interface of our own
``Transport`` (``receive_batch`` / ``send_many`` / ``aclose`` / ``abort``), so the socket runs
the same over either. It is there to keep both honest: the client scenarios run over both.

Its bounds are the library's: ``max_message_size`` closes the connection (1009) as ours does,
a rejected upgrade's body is kept whole, and it has no permessage-deflate.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from ._exceptions import ConnectError
from ._handshake import MAX_REJECTION_BODY, rejection
from ._network import open_stream
from ._transport import TransportClosed
from .proto import Frame, redact_url

__all__ = ["TrioWebSocketTransport", "open_trio_websocket"]


class TrioWebSocketTransport:
    """One open trio-websocket connection, with the interface of ``Transport``."""

    def __init__(
        self, ws: WebSocketConnection, stream: trio.abc.Stream, scope: trio.CancelScope
    ) -> None:
        self._ws = ws
        # The library leaves a client's stream open when the server closed first: we close it.
        self._stream = stream
        self._scope = scope  # the scope of the connection's reader task
        self.subprotocol: str | None = ws.subprotocol
        self.compressed = False
        self._closed: TransportClosed | None = None

    @property
    def closed(self) -> TransportClosed | None:
        return self._closed

    def _ended(self, exc: ConnectionClosed) -> TransportClosed:
        if self._closed is None:
            reason = exc.reason
            if reason is None:
                self._closed = TransportClosed(1006, None)
            else:
                self._closed = TransportClosed(reason.code, reason.reason or None)
        return self._closed

    async def send_many(self, frames: Sequence[Frame]) -> None:
        """Send ``frames`` in order (one write each: the library has no batch)."""
        try:
            for frame in frames:
                await self._ws.send_message(frame)
        except ConnectionClosed as exc:
            raise self._ended(exc) from None

    async def receive_batch(self) -> list[Frame]:
        """The next message, and the others already received."""
        try:
            return [await self._ws.get_message()]
        except ConnectionClosed as exc:
            raise self._ended(exc) from None

    async def aclose(
        self, code: int = 1000, reason: str | None = None, frames: Sequence[Frame] = ()
    ) -> None:
        """The close handshake, after ``frames`` (bound it yourself)."""
        try:
            if frames and self._closed is None:
                try:
                    await self.send_many(frames)
                except TransportClosed:
                    pass
            await self._ws.aclose(code, reason)
        finally:
            await trio.aclose_forcefully(self._stream)
            self._scope.cancel()

    async def abort(self) -> None:
        """Close the connection at once."""
        if self._closed is None:
            self._closed = TransportClosed(1006, None)
        try:
            await trio.aclose_forcefully(self._ws)
        finally:
            await trio.aclose_forcefully(self._stream)
            self._scope.cancel()


async def _serve(
    url: str,
    ssl_context: ssl.SSLContext | None,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    max_message_size: int,
    proxy: str | None,
    *,
    task_status: trio.TaskStatus[TrioWebSocketTransport | BaseException],
) -> None:
    """Run one connection's reader task until the transport ends it; report the transport
    (or the exception that stopped the connect) as started.

    The stream comes from ``_network.open_stream``, as our own transport's does.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header = f"{host_header}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    failure: BaseException | None = None
    stream: trio.abc.Stream | None = None
    with trio.CancelScope() as scope:
        try:
            async with trio.open_nursery() as nursery:
                try:
                    stream = await open_stream(
                        host, port, secure=secure, ssl_context=ssl_context, proxy=proxy
                    )
                    if isinstance(stream, trio.SSLStream):
                        await stream.do_handshake()  # its errors, here rather than in a task
                    ws = await wrap_client_stream(
                        nursery,
                        stream,  # type: ignore[arg-type]
                        host_header,
                        resource,
                        subprotocols=list(subprotocols) or None,
                        extra_headers=[
                            (name.encode("latin-1"), value.encode("latin-1"))
                            for name, value in headers
                        ],
                        max_message_size=max_message_size,
                    )
                except (OSError, trio.BrokenResourceError, HandshakeError, ssl.SSLError) as exc:
                    failure = exc
                    nursery.cancel_scope.cancel()  # the reader task raises it too
                else:
                    transport = TrioWebSocketTransport(ws, stream, scope)
                    stream = None  # the transport's now
                    task_status.started(transport)
        except BaseExceptionGroup as group:
            # A rejection is raised by the library's reader task (which cancels the
            # connect), or by the connect itself.
            rejected, rest = group.split(HandshakeError)
            if rest is not None or rejected is None:
                raise
            if failure is None:
                failure = rejected.exceptions[0]
                while isinstance(failure, BaseExceptionGroup):
                    failure = failure.exceptions[0]
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream)
    if failure is not None:
        task_status.started(failure)


async def open_trio_websocket(
    url: str,
    *,
    nursery: trio.Nursery,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int,
    compress: bool = False,
    proxy: str | None = None,
) -> TrioWebSocketTransport:
    """Open a trio-websocket connection whose reader task runs in ``nursery``.

    Raises:
        ConnectError: as ``open_transport`` does.
    """
    if compress:
        raise ValueError('compress=True needs transport="websocket"')
    where = redact_url(url)
    result = await nursery.start(
        _serve, url, ssl_context, subprotocols, headers, max_message_size, proxy
    )
    if isinstance(result, TrioWebSocketTransport):
        return result
    if isinstance(result, ConnectionRejected):
        raise rejection(url, result.status_code, (result.body or b"")[:MAX_REJECTION_BODY])
    if isinstance(result, HandshakeError):
        raise ConnectError(f"WebSocket handshake with {where} failed: {result!r}") from None
    cause = result if isinstance(result, ssl.SSLError) else result.__cause__
    if isinstance(cause, ssl.SSLError | ssl.CertificateError):
        raise ConnectError(f"TLS handshake with {where} failed: {cause}") from cause
    raise ConnectError(f"cannot connect to {where}: {result}") from result
