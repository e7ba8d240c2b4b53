"""Which transport a socket opens next: WebSocket, LongPoll, or WebSocket with phoenix.js's
fallback to LongPoll (``longPollFallbackMs``).

In fallback mode a WebSocket has ``longpoll_fallback`` seconds to open; once open, it is on
probation until it answers a ping within the same time (phoenix.js's health check). A failure
at either step switches the socket to LongPoll for the rest of its life (phoenix.js remembers
it in ``sessionStorage``); a WebSocket that passes disarms the fallback for good. The socket
asks `TransportChoice` to open each connection and tells it about the probation ping; the
choice reports a switch through the callback it was given (the socket's lifecycle event).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Final

import trio

from ._exceptions import ConnectError
from ._longpoll import open_longpoll
from ._transports import AnyTransport, Opener
from .proto import redact_url

__all__ = ["TransportChoice"]

logger: Final = logging.getLogger("trio_phoenix")


class TransportChoice:
    """The transport of the next connection, and the fallback's state."""

    __slots__ = (
        "_compress",
        "_connect_timeout",
        "_fallback",
        "_headers",
        "_longpoll_timeout",
        "_max_message_size",
        "_on_fallback",
        "_open_websocket",
        "_ssl_context",
        "longpoll",
        "probation_ref",
    )

    def __init__(
        self,
        *,
        longpoll: bool,
        fallback: float | None,
        longpoll_timeout: float,
        websocket: Opener,
        compress: bool,
        headers: Sequence[tuple[str, str]],
        ssl_context: ssl.SSLContext | None,
        max_message_size: int,
        connect_timeout: float | None,
        on_fallback: Callable[[ConnectError | None], None],
    ) -> None:
        self.longpoll = longpoll  # after a fallback too
        self._fallback = None if longpoll else fallback  # None once decided
        self._longpoll_timeout = longpoll_timeout
        self._open_websocket = websocket
        self._compress = compress
        self._headers = headers
        self._ssl_context = ssl_context
        self._max_message_size = max_message_size
        self._connect_timeout = connect_timeout
        self._on_fallback = on_fallback
        #: The ping a fresh WebSocket must answer in time (``None``: none pending).
        self.probation_ref: str | None = None

    @property
    def on_probation(self) -> bool:
        """Whether the connection just opened must pass the health check."""
        return self._fallback is not None and not self.longpoll

    async def open(
        self,
        url: str,
        subprotocols: list[str],
        token: str | None,
        nursery: trio.Nursery,
        proxy: str | None,
    ) -> AnyTransport:
        """Open the next connection (bound the wait with ``connect_timeout`` yourself).

        Raises:
            ConnectError: it could not be opened.
        """
        if self.on_probation:
            transport = await self._websocket_or_fall_back(url, subprotocols, nursery, proxy)
            if transport is not None:
                return transport
        if self.longpoll:
            return await open_longpoll(
                url,
                auth_token=token or None,
                headers=self._headers,
                ssl_context=self._ssl_context,
                max_message_size=self._max_message_size,
                request_timeout=self._longpoll_timeout,
                proxy=proxy,
            )
        return await self._websocket(url, subprotocols, nursery, proxy)

    async def _websocket(
        self, url: str, subprotocols: list[str], nursery: trio.Nursery, proxy: str | None
    ) -> AnyTransport:
        return await self._open_websocket(
            url,
            nursery=nursery,
            subprotocols=subprotocols,
            headers=self._headers,
            ssl_context=self._ssl_context,
            max_message_size=self._max_message_size,
            compress=self._compress,
            proxy=proxy,
        )

    async def _websocket_or_fall_back(
        self, url: str, subprotocols: list[str], nursery: trio.Nursery, proxy: str | None
    ) -> AnyTransport | None:
        assert self._fallback is not None
        limit = self._fallback
        if self._connect_timeout is not None:
            limit = min(limit, self._connect_timeout)
        error: ConnectError
        try:
            with trio.fail_after(limit):
                return await self._websocket(url, subprotocols, nursery, proxy)
        except ConnectError as exc:
            error = exc
        except trio.TooSlowError:
            error = ConnectError(
                f"the WebSocket to {redact_url(url)} did not open within {limit} s"
            )
        self.fall_back(error)
        return None

    def fall_back(self, error: ConnectError | None) -> None:
        """Use LongPoll from now on (``error``: why the WebSocket failed; ``None`` when it did
        not answer its ping)."""
        logger.warning(
            "falling back to LongPoll: %s",
            error or "the WebSocket did not answer a heartbeat in time",
        )
        self.longpoll = True
        self._fallback = None
        self.probation_ref = None
        self._on_fallback(error)

    def start_probation(self, ref: str, now: float) -> float:
        """The fresh WebSocket's health-check ping is ``ref``: the deadline for its reply."""
        assert self._fallback is not None
        self.probation_ref = ref
        return now + self._fallback

    def ping_answered(self, ref: str) -> bool:
        """Whether ``ref`` was the health-check ping: the WebSocket passed, for good."""
        if ref != self.probation_ref:
            return False
        self.probation_ref = None
        self._fallback = None
        return True

    def ping_lost(self, ref: str) -> None:
        """The connection ended before the health-check ping's reply."""
        if ref == self.probation_ref:
            self.probation_ref = None
