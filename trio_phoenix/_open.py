"""The two public shapes of a socket: ``open_socket()`` (an async context manager that owns its
nursery) and ``connect_socket()`` (for callers who bring a nursery), as trio-websocket has
``open_websocket`` / ``connect_websocket``.

Both build the ``Socket`` (nobody else may), wait for its first connection unless told not
to, and turn a deadline of the caller's that expires while connecting into ``ConnectTimeout``
from the last failure. ``open_socket`` also closes the socket when its block ends, and
re-raises the caller's own exception rather than an ``ExceptionGroup``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Unpack

import trio

from ._groups import owning_nursery
from ._options import SocketOptions, UrlSource
from ._socket import _CONSTRUCTOR_TOKEN, Socket

__all__ = ["connect_socket", "open_socket"]


async def connect_socket(
    nursery: trio.Nursery,
    url: UrlSource,
    *,
    wait_connected: bool = True,
    **options: Unpack[SocketOptions],
) -> Socket:
    """Start a socket whose tasks run in ``nursery``; close it with ``await socket.aclose()``.

    Takes the same options as ``open_socket``, and waits as it does.
    """
    socket = Socket(url, _token=_CONSTRUCTOR_TOKEN, **options)
    with socket._timeout_tells_why(trio.current_effective_deadline()):
        await nursery.start(partial(socket._run, wait_connected=wait_connected))
    return socket


@asynccontextmanager
async def open_socket(
    url: UrlSource, *, wait_connected: bool = True, **options: Unpack[SocketOptions]
) -> AsyncIterator[Socket]:
    """Open a Phoenix socket for the block; leave its channels and close it at the end.

    ``url`` is the socket's mount point, e.g. ``"ws://localhost:4000/socket"``: ``/websocket``
    and ``vsn=2.0.0`` are added as phoenix.js adds them (a query string in ``url`` is kept as
    params, a trailing ``/`` or an explicit ``/websocket`` is accepted). ``url`` may also be a
    sync or async callable returning the URL, evaluated (and validated) on every connect
    attempt, to move to another host; an exception it raises, ``InvalidURL`` included, ends
    the socket with that exception, as one from a ``params`` callable does. By default the block
    starts once the first connection is open: a refused or unreachable server is retried with
    the reconnect backoff (bound the wait with ``trio.fail_after``: when it expires,
    ``ConnectTimeout`` says why the last attempt failed), while a rejected upgrade (HTTP 403,
    ...), a TLS certificate or host-name failure, or a proxy that rejects the credentials
    raises ``ConnectError`` at once. With
    ``wait_connected=False`` the block starts at once and joins and pushes wait for the
    connection.

    Options (all keyword-only): ``params`` (dict, or sync/async callable evaluated on every
    connect), ``auth_token`` (str or callable; sent as Phoenix's ``Sec-WebSocket-Protocol``
    bearer entry), ``headers``, ``ssl_context``, ``timeout`` (default 10 s for joins, pushes
    and leaves; ``None``: only your cancel scopes), ``heartbeat_interval`` (30 s; ``None`` to
    disable), ``reconnect_after(attempt)`` and ``rejoin_after(attempt)`` (phoenix.js schedules;
    see ``trio_phoenix.jittered``), ``reconnect_on_clean_close`` (True), ``serializer``,
    ``max_message_size`` (10 MB; a whole message, fragments added up, after decompression),
    ``connect_timeout`` (10 s), ``close_timeout`` (5 s), ``transport`` (``"websocket"``, our
    own engine, or ``"trio-websocket"``, the client over the trio-websocket library),
    ``compress`` (``False``; ``True`` offers permessage-deflate, used if the server accepts,
    as Phoenix does with ``websocket: [compress: true]``), ``proxy`` (a proxy URL,
    ``http://[user:password@]host:port`` for HTTP CONNECT or ``socks5h://`` / ``socks5://`` /
    ``socks4://``; ``None`` to connect directly; by default ``HTTPS_PROXY`` for ``wss://``,
    ``HTTP_PROXY`` for ``ws://``, then ``ALL_PROXY``, honouring ``NO_PROXY``, read at each
    connect).

    Raises:
        ConnectError: the first connection attempt was rejected by the server or the
            proxy, or TLS refused the server's certificate.
        ConnectTimeout: your deadline expired while connecting (after a failed attempt).
        InvalidURL: the URL cannot be used.
        InvalidHeader, InvalidParams: bad ``headers`` or ``params``.
        ValueError, TypeError: another option has a bad value or type (the message names it;
            ``mypy`` catches misspelled options and wrong types before that, see
            ``SocketOptions``).
    """
    socket = Socket(url, _token=_CONSTRUCTOR_TOKEN, **options)
    deadline = trio.current_effective_deadline()
    async with owning_nursery() as nursery:
        with socket._timeout_tells_why(deadline):
            await nursery.start(partial(socket._run, wait_connected=wait_connected, shield=True))
        try:
            yield socket
        finally:
            # Bounded by close_timeout; shielded so that its final checkpoint cannot replace
            # the block's own exception with Cancelled.
            with trio.CancelScope(shield=True):
                await socket.aclose()
