"""Which transport a socket connects with: the ``transport=`` option mapped to an opener.

Every opener returns an object with the interface of ``_transport.Transport``
(``receive_batch()``, ``send_many()``, ``aclose()``, ``abort()``, ``subprotocol``) and raises
``ConnectError`` when it cannot connect; the socket does not know which one it runs on.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Final, Literal, Protocol, get_args

import trio

from ._handshake import open_transport
from ._trio_websocket import open_trio_websocket
from .proto import Frame

__all__ = ["TRANSPORTS", "AnyTransport", "Opener", "TransportName", "opener"]

#: The values of the ``transport=`` option.
TransportName = Literal["websocket", "trio-websocket", "longpoll"]
TRANSPORTS: Final[tuple[str, ...]] = get_args(TransportName)


class AnyTransport(Protocol):
    """What the socket needs of a connection."""

    subprotocol: str | None

    async def send_many(self, frames: Sequence[Frame]) -> None: ...
    async def receive_batch(self) -> list[Frame]: ...
    async def aclose(
        self, code: int = 1000, reason: str | None = None, frames: Sequence[Frame] = ()
    ) -> None: ...
    async def abort(self) -> None: ...


class Opener(Protocol):
    """Opens one connection (``nursery`` is where it may run a background task)."""

    async def __call__(
        self,
        url: str,
        *,
        nursery: trio.Nursery,
        subprotocols: Sequence[str],
        headers: Sequence[tuple[str, str]],
        ssl_context: ssl.SSLContext | None,
        max_message_size: int,
        compress: bool,
        proxy: str | None,
    ) -> AnyTransport: ...


async def _open_websocket(  # open_transport needs no nursery: it runs no task
    url: str,
    *,
    nursery: trio.Nursery,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    ssl_context: ssl.SSLContext | None,
    max_message_size: int,
    compress: bool,
    proxy: str | None,
) -> AnyTransport:
    return await open_transport(
        url,
        subprotocols=subprotocols,
        headers=headers,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        compress=compress,
        proxy=proxy,
    )


def opener(name: TransportName) -> Opener:
    """The WebSocket opener of the ``transport=`` option's value (checked by
    ``check_options``); LongPoll is opened by ``_fallback.TransportChoice``, which also runs
    phoenix.js's fallback from a WebSocket to LongPoll."""
    if name == "trio-websocket":
        return open_trio_websocket
    return _open_websocket
