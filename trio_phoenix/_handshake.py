"""Opening the client's WebSocket transport (``open_transport``): the TCP (or proxy, or TLS)
stream, the upgrade request, the server's answer, and what a refusal becomes (``ConnectError``
with the status and at most ``MAX_REJECTION_BODY`` bytes of body)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame as WsFrame, Opcode
from websockets.http11 import Response
from websockets.uri import WebSocketURI

from ._exceptions import ConnectError
from ._network import open_stream
from ._transport import Transport
from .proto import redact_url

__all__ = ["MAX_REJECTION_BODY", "handshake", "open_transport", "rejection"]

#: How much of a rejected upgrade's response body is read (and kept in ``ConnectError.body``);
#: the rest is never read: the connection is closed.
MAX_REJECTION_BODY: Final = 65536
#: The most a response head (status line and headers) may take before the handshake fails.
_MAX_RESPONSE_HEAD: Final = 65536


class _NoWireDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' own logging, minus its debug lines: they show the request line and the
    headers (a token in the URL, an ``Authorization`` header). Warnings and errors go to the
    ``trio_phoenix`` logger."""

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


_logger: Final = _NoWireDebug(logging.getLogger("trio_phoenix"))


class _ClientProtocol(ClientProtocol):
    """websockets' client protocol, where a close frame in the middle of a fragmented message
    is a clean close (the message is dropped) rather than a protocol error (Autobahn 7.1.5:
    the peer is closing, the close code it expects back is its own)."""

    def recv_frame(self, frame: WsFrame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)


def _status_of(head: bytes) -> tuple[int | None, int]:
    """The status code of a response head (``b"HTTP/1.1 403 ..."``), if it has one, and its
    ``Content-Length`` (or ``MAX_REJECTION_BODY``)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = None
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        status = int(parts[1])
    length = MAX_REJECTION_BODY
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = min(length, int(value.strip()))
    return status, length


def rejection(url: str, status: int | None, body: bytes) -> ConnectError:
    parts = urlsplit(url)
    hint = ""
    if status == 404:
        hint = (
            f" (nothing at {parts.path or '/'}; give open_socket the socket's mount point,"
            ' e.g. "ws://host/socket": "/websocket" is added)'
        )
    return ConnectError(
        f"the server refused the WebSocket upgrade to {redact_url(url)}: HTTP {status}{hint}",
        status=status,
        body=body[:MAX_REJECTION_BODY],
    )


async def handshake(
    stream: trio.abc.Stream, protocol: ClientProtocol, url: str, receive_size: int
) -> tuple[Response, bytes]:
    """Read the server's answer to the upgrade request until the protocol has it; return it
    and the bytes that came after it (frames), which the protocol has not seen.

    A rejection's body is read up to ``MAX_REJECTION_BODY`` bytes, never more.
    """
    received = bytearray()
    status: int | None = None
    bound = MAX_REJECTION_BODY  # the body's Content-Length, if smaller
    head_size: int | None = None
    fed = 0  # how much of ``received`` the protocol has seen
    while True:
        data = await stream.receive_some(receive_size)
        received += data
        if head_size is None:
            end = received.find(b"\r\n\r\n")
            if end >= 0:
                head_size = end + 4
                status, bound = _status_of(bytes(received[:end]))
        if data:
            # An upgrade's frames stay out of the protocol: the transport takes them.
            upto = head_size if status == 101 and head_size is not None else len(received)
            if upto > fed:
                protocol.receive_data(bytes(received[fed:upto]))
                fed = upto
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if isinstance(event, Response):
                exc = protocol.handshake_exc
                if isinstance(exc, InvalidStatus):
                    raise rejection(url, event.status_code, bytes(event.body))
                if exc is not None:
                    raise handshake_failed(url, str(exc)) from None
                return event, bytes(received[fed:])
        if head_size is None and len(received) > _MAX_RESPONSE_HEAD:
            raise handshake_failed(url, "head too large")
        if status is not None and status != 101:
            assert head_size is not None
            body = bytes(received[head_size:])
            # The protocol reads a body to its end (or gives up on a large one); we read at
            # most MAX_REJECTION_BODY bytes of it.
            if not data or len(body) >= min(bound, MAX_REJECTION_BODY):
                raise rejection(url, status, body)
        elif protocol.handshake_exc is not None:
            raise handshake_failed(url, str(protocol.handshake_exc)) from None
        if not data:
            raise handshake_failed(url, "connection closed")


def handshake_failed(url: str, detail: str) -> ConnectError:
    """The error of a handshake that went wrong (the URL redacted only now, on failure)."""
    return ConnectError(f"WebSocket handshake with {redact_url(url)} failed: {detail}")


def _uri(url: str) -> WebSocketURI:
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    return WebSocketURI(
        secure=secure,
        host=parts.hostname or "",
        port=parts.port or (443 if secure else 80),
        path=parts.path or "/",
        query=parts.query,
    )


async def open_transport(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int,
    compress: bool = False,
    receive_buffer_size: int | None = 65536,
    proxy: str | None = None,
) -> Transport:
    """Open a WebSocket connection (it needs no background task).

    ``compress`` offers permessage-deflate; the server may decline it.
    ``proxy`` is a proxy URL to tunnel through (see ``_network.proxy_for``), or ``None``.

    Raises:
        ConnectError: the server refused the upgrade (``status`` set) or could not be
            reached, the proxy failed, or the TLS handshake failed.
    """
    uri = _uri(url)
    receive_size = receive_buffer_size or 65536
    stream: trio.abc.Stream | None = None
    try:
        stream = await open_stream(
            uri.host, uri.port, secure=uri.secure, ssl_context=ssl_context, proxy=proxy
        )
        protocol = _ClientProtocol(
            uri,
            extensions=[ClientPerMessageDeflateFactory()] if compress else None,
            subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
            max_size=max_message_size,
            logger=_logger,
        )
        request = protocol.connect()
        for name, value in headers:
            request.headers[name] = value
        protocol.send_request(request)
        await stream.send_all(b"".join(protocol.data_to_send()))
        response, early = await handshake(stream, protocol, url, receive_size)
        subprotocol = response.headers.get("Sec-WebSocket-Protocol")
        # The protocol's parser keeps the response for the connection's life: drop its
        # headers (about 1.5 KB a connection).
        response.headers.clear()
        transport = Transport(
            stream,
            protocol,
            subprotocol,
            receive_buffer_size=receive_size,
            max_message_size=max_message_size,
            early=early,
        )
        stream = None
        return transport
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise ConnectError(f"TLS handshake with {redact_url(url)} failed: {exc}") from exc
    except (OSError, trio.BrokenResourceError) as exc:
        cause = exc.__cause__  # trio.SSLStream wraps the SSLError in BrokenResourceError
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            raise ConnectError(f"TLS handshake with {redact_url(url)} failed: {cause}") from cause
        raise ConnectError(f"cannot connect to {redact_url(url)}: {exc}") from exc
    except InvalidHandshake as exc:  # pragma: no cover - the protocol reports, not raises
        raise ConnectError(f"WebSocket handshake with {redact_url(url)} failed: {exc}") from None
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)
