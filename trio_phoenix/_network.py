"""The byte stream under every transport: TCP to the server, and TLS for ``wss://``.

Kept apart from the WebSocket code so that each way of reaching the server (directly today;
through a proxy, or under a LongPoll HTTP client) has one place to live. Errors are left as
they come (``OSError``, ``trio.BrokenResourceError``, ``ssl.SSLError``): the transport that
asked turns them into ``ConnectError`` with the URL it was connecting to.
"""

from __future__ import annotations

import ssl

import trio

__all__ = ["open_stream"]


async def open_stream(
    host: str, port: int, *, secure: bool, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    """Open a TCP stream to ``host:port``, wrapped in TLS (verified against ``host``) when
    ``secure``; ``ssl_context`` defaults to the system's trusted CAs."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if secure:
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    return stream
