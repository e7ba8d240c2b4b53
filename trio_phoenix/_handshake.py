"""The client side of the WebSocket upgrade: reading the server's answer, and what a refusal
becomes (``ConnectError`` with the status and at most ``MAX_REJECTION_BODY`` bytes of body)."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from ._exceptions import ConnectError
from .proto import redact_url

__all__ = ["MAX_REJECTION_BODY", "handshake", "rejection"]

#: How much of a rejected upgrade's response body is read (and kept in ``ConnectError.body``);
#: the rest is never read: the connection is closed.
MAX_REJECTION_BODY: Final = 65536
#: The most a response head (status line and headers) may take before the handshake fails.
_MAX_RESPONSE_HEAD: Final = 65536


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
