"""The WebSocket transport: the only module that imports trio_websocket.

It opens one connection and maps trio_websocket's exceptions onto ours, so the rest of the
package sees three things: a ``Transport`` that sends and receives frames, ``ConnectError`` when
a connection cannot be opened, and ``TransportClosed`` when an open one ends.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

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
    try:
        ws = await trio_websocket.connect_websocket_url(
            nursery,
            url,
            ssl_context,
            subprotocols=list(subprotocols) or None,
            extra_headers=extra_headers or None,
            message_queue_size=message_queue_size,
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
        )
    except trio_websocket.ConnectionRejected as exc:
        raise ConnectError(
            f"the server rejected the WebSocket upgrade to {where} with HTTP {exc.status_code}",
            status=exc.status_code,
            body=exc.body,
        ) from None
    except trio_websocket.HandshakeError as exc:
        raise ConnectError(f"WebSocket handshake with {where} failed: {exc!r}") from None
    except ssl.SSLError as exc:
        raise ConnectError(f"TLS handshake with {where} failed: {exc}") from exc
    except (OSError, trio.BrokenResourceError) as exc:
        raise ConnectError(f"cannot connect to {where}: {exc}") from exc
    return Transport(ws, ws.subprotocol)
