"""The WebSocket transport: the only module that imports trio_websocket.

It opens one connection and maps trio_websocket's exceptions onto ours, so the rest of the
package sees three things: a ``Transport`` that sends and receives frames, ``ConnectError`` when
a connection cannot be opened, and ``TransportClosed`` when an open one ends.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from functools import partial
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
    transport: Transport = await nursery.start(
        partial(
            _run_transport,
            url,
            subprotocols=subprotocols,
            headers=headers,
            ssl_context=ssl_context,
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
            message_queue_size=message_queue_size,
        )
    )
    return transport


async def _run_transport(
    url: str,
    *,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    ssl_context: ssl.SSLContext | None,
    max_message_size: int,
    receive_buffer_size: int | None,
    message_queue_size: int,
    task_status: trio.TaskStatus[Transport],
) -> None:
    """Open the connection, then host trio-websocket's reader task until it ends.

    trio-websocket reports a refused upgrade (``ConnectionRejected``) from its reader task,
    so the reader runs in a nursery of our own: every failure before the connection is open
    becomes a ``ConnectError`` raised by ``open_transport``.
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
    started = False
    try:
        async with trio.open_nursery() as reader_nursery:
            # We own the TCP (and TLS) stream so that it is closed on every failure path.
            stream = await trio.open_tcp_stream(host, port)
            if secure:
                context = ssl_context if ssl_context is not None else ssl.create_default_context()
                stream = trio.SSLStream(
                    stream, context, server_hostname=host, https_compatible=True
                )
                # Here, not lazily in trio-websocket's reader: a failure there would leave
                # the opening handshake waiting forever.
                await stream.do_handshake()
            ws = await trio_websocket.wrap_client_stream(
                reader_nursery,
                stream,
                host_header,
                resource,
                subprotocols=list(subprotocols) or None,
                extra_headers=extra_headers or None,
                message_queue_size=message_queue_size,
                max_message_size=max_message_size,
                receive_buffer_size=receive_buffer_size,
            )
            started = True
            task_status.started(Transport(ws, stream, ws.subprotocol))
    except BaseException as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        if started:
            raise
        mapped = _connect_error(exc, where)
        if mapped is None:
            raise
        error, cause = mapped
        raise error from cause


def _connect_error(
    exc: BaseException, where: str
) -> tuple[ConnectError, BaseException | None] | None:
    """The ``ConnectError`` (and its cause) for a failed connection attempt, or ``None`` to
    re-raise ``exc``."""
    leaves: list[BaseException] = []
    stack = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        elif not isinstance(item, trio.Cancelled):
            leaves.append(item)
    for leaf in leaves:
        if isinstance(leaf, trio_websocket.ConnectionRejected):
            message = (
                f"the server refused the WebSocket upgrade to {where}: HTTP {leaf.status_code}"
            )
            return ConnectError(message, status=leaf.status_code, body=leaf.body), None
    if len(leaves) != 1:
        return None
    leaf = leaves[0]
    if isinstance(leaf, trio_websocket.HandshakeError | trio_websocket.ConnectionClosed):
        return ConnectError(f"WebSocket handshake with {where} failed: {leaf!r}"), None
    if isinstance(leaf, trio.BrokenResourceError) and isinstance(leaf.__cause__, ssl.SSLError):
        leaf = leaf.__cause__
    if isinstance(leaf, ssl.SSLError | ssl.CertificateError):
        return ConnectError(f"TLS handshake with {where} failed: {leaf}"), leaf
    if isinstance(leaf, OSError | trio.BrokenResourceError):
        return ConnectError(f"cannot connect to {where}: {leaf}"), leaf
    return None
