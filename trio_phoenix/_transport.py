"""The WebSocket transport: the only module that imports trio_websocket.

It opens one connection and maps trio_websocket's exceptions onto ours, so the rest of the
package sees three things: a ``Transport`` that sends and receives frames, ``ConnectError`` when
a connection cannot be opened, and ``TransportClosed`` when an open one ends.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import attrs
import trio
import trio_websocket

from ._exceptions import ConnectError
from .proto import Frame, redact_url

__all__ = ["Transport", "TransportClosed", "open_transport"]


@attrs.frozen
class TransportClosed(Exception):
    """The connection ended; ``code`` is the WebSocket close code (1006 for an abrupt drop)."""

    code: int | None
    reason: str | None


@attrs.define(eq=False)
class Transport:
    """One open WebSocket connection."""

    _ws: trio_websocket.WebSocketConnection
    _stream: trio.abc.Stream
    subprotocol: str | None

    async def send(self, frame: Frame) -> None:
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def receive(self) -> Frame:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await self._ws.aclose(code, reason)

    async def abort(self) -> None:
        """Close the underlying stream at once (trio-websocket leaves it open in some paths)."""
        await trio.aclose_forcefully(self._stream)

    @property
    def closed(self) -> TransportClosed | None:
        reason = self._ws.closed
        return None if reason is None else TransportClosed(reason.code, reason.reason)


def _closed(exc: trio_websocket.ConnectionClosed) -> TransportClosed:
    reason = exc.reason
    return (
        TransportClosed(1006, None)
        if reason is None
        else TransportClosed(reason.code, reason.reason)
    )


async def open_transport(
    nursery: trio.Nursery,
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int,
    receive_buffer_size: int | None = 65536,
    message_queue_size: int = 16,
) -> Transport:
    """Open a WebSocket connection whose reader task runs in ``nursery``.

    Raises:
        ConnectError: the server refused the upgrade (``status`` set) or could not be
            reached, or the TLS handshake failed.
    """
    extra_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
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
        # We own the TCP (and TLS) stream so that it is closed on every failure path.
        stream = await trio.open_tcp_stream(host, port)
        if secure:
            context = ssl_context if ssl_context is not None else ssl.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            stream,
            host_header,
            resource,
            subprotocols=list(subprotocols) or None,
            extra_headers=extra_headers or None,
            message_queue_size=message_queue_size,
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
        )
    except BaseException as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        if isinstance(exc, trio_websocket.ConnectionRejected):
            raise ConnectError(
                f"the server refused the WebSocket upgrade to {where}: HTTP {exc.status_code}",
                status=exc.status_code,
                body=exc.body,
            ) from None
        if isinstance(exc, trio_websocket.HandshakeError | trio_websocket.ConnectionClosed):
            raise ConnectError(f"WebSocket handshake with {where} failed: {exc!r}") from None
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            raise ConnectError(f"TLS handshake with {where} failed: {exc}") from exc
        if isinstance(exc, OSError | trio.BrokenResourceError):
            raise ConnectError(f"cannot connect to {where}: {exc}") from exc
        raise
    return Transport(ws, stream, ws.subprotocol)
