"""Bounded subscriptions that never block the reader and never drop silently.

The socket's reader task hands every message to ``Subscription.offer`` without awaiting, so a
slow consumer can never stall heartbeat replies. A buffer is bounded in messages
(``max_buffer``) and in bytes (``max_buffer_bytes``, counted as the size of the frames the
messages came in; an empty buffer always takes one message). When a subscriber's buffer is
full the policy decides: ``"raise"`` (the default) drops the new message and, at that place
in the stream, makes the consumer's ``receive()`` raise ``SubscriptionOverflow(dropped=n)`` once;
``"drop_oldest"`` discards the oldest buffered message instead and only counts it. Either way
the loss is counted in ``statistics()``.

The stream may also end with a reason: when the channel is closed by the server, the next
``receive()`` after the buffered messages raises ``ChannelClosed``; a close the application
asked for (leaving, closing the socket) just ends the iteration.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, Generic, Literal, TypeVar

import attrs
import trio

from ._exceptions import SubscriptionOverflow
from .proto._limits import BufferBound

__all__ = ["DEFAULT_MAX_BUFFER_BYTES", "OverflowPolicy", "Subscription", "SubscriptionStatistics"]

#: Default bound of a subscription's buffer in bytes (16 MB; one message always fits).
DEFAULT_MAX_BUFFER_BYTES: Final = 16_000_000

T = TypeVar("T")
OverflowPolicy = Literal["raise", "drop_oldest"]


@attrs.define(eq=False)
class _Gap:
    dropped: int = 0


@attrs.frozen
class _End:
    error: BaseException | None


@attrs.frozen(kw_only=True)
class SubscriptionStatistics:
    """How a subscription is doing."""

    buffered: int
    max_buffer: int
    buffered_bytes: int
    max_buffer_bytes: int
    delivered: int
    dropped: int


class Subscription(trio.abc.ReceiveChannel[T], Generic[T]):
    """A bounded stream of messages for one consumer. Use ``async for`` or ``receive()``."""

    def __init__(
        self,
        max_buffer: int,
        overflow: OverflowPolicy,
        *,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
    ) -> None:
        self._bound = BufferBound(max_buffer, max_buffer_bytes)
        if overflow not in ("raise", "drop_oldest"):
            raise ValueError(f"overflow must be 'raise' or 'drop_oldest', got {overflow!r}")
        # Unbounded underneath: ``_bound`` bounds the messages; gap and end markers, at most
        # one more than the messages, are never refused.
        self._send, self._receive = trio.open_memory_channel[T | _Gap | _End](math.inf)
        self._sizes: deque[int] = deque()  # of the buffered messages, oldest first
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self.overflow = overflow
        self._gap: _Gap | None = None
        self._delivered = 0
        self._dropped = 0
        self._ended = False

    # -- producer side (never blocks) ----------------------------------------------------

    def offer(self, item: T, size: int = 0) -> None:
        """Hand ``item`` (of ``size`` bytes) to the consumer, or apply the overflow policy if
        the buffer is full."""
        if self._ended:
            return
        bound = self._bound
        if not bound.fits(size):
            self._dropped += 1
            if self.overflow == "drop_oldest" and self._gap is None:
                # Drop as many of the oldest as it takes (the newest always fits alone).
                self._discard_oldest()
                while not bound.fits(size):
                    self._dropped += 1
                    self._discard_oldest()
            else:
                if self._gap is None:
                    self._gap = _Gap()
                    self._send.send_nowait(self._gap)
                self._gap.dropped += 1
                return
        elif self._gap is not None:
            self._gap = None  # the next gap, if any, is a new one
        bound.add(size)
        self._sizes.append(size)
        self._send.send_nowait(item)

    def _discard_oldest(self) -> None:
        # Only reached without a gap marker queued, so the oldest item is a message.
        self._receive.receive_nowait()
        self._bound.remove(self._sizes.popleft())

    def end(self, error: BaseException | None = None) -> None:
        """No more messages will come; ``error`` (if any) is raised after the buffered ones."""
        if self._ended:
            return
        self._ended = True
        self._send.send_nowait(_End(error))
        self._send.close()

    # -- consumer side -------------------------------------------------------------------

    def _take(self, item: T | _Gap | _End) -> T:
        if isinstance(item, _Gap):
            if item is self._gap:
                self._gap = None
            raise SubscriptionOverflow(item.dropped)
        if isinstance(item, _End):
            self._receive.close()
            if item.error is not None:
                raise item.error
            raise trio.EndOfChannel
        self._bound.remove(self._sizes.popleft())
        self._delivered += 1
        return item

    async def receive(self) -> T:
        """The next message. Raises ``SubscriptionOverflow`` at a gap, ``trio.EndOfChannel``
        (which ends ``async for``) or ``ChannelClosed`` when the stream is over."""
        try:
            item = await self._receive.receive()
        except trio.ClosedResourceError:
            raise trio.EndOfChannel from None
        return self._take(item)

    def receive_nowait(self) -> T:
        """Like ``receive()``, but raises ``trio.WouldBlock`` when nothing is buffered."""
        try:
            item = self._receive.receive_nowait()
        except trio.ClosedResourceError:
            raise trio.EndOfChannel from None
        return self._take(item)

    async def aclose(self) -> None:
        self._ended = True
        self._send.close()
        await self._receive.aclose()

    def close(self) -> None:
        """Stop receiving (what leaving the ``subscribe()`` block does)."""
        self._ended = True
        self._send.close()
        self._receive.close()

    def statistics(self) -> SubscriptionStatistics:
        """A snapshot: messages buffered now, the bound, delivered and dropped so far."""
        return SubscriptionStatistics(
            buffered=self._bound.items,
            max_buffer=self.max_buffer,
            buffered_bytes=self._bound.bytes,
            max_buffer_bytes=self.max_buffer_bytes,
            delivered=self._delivered,
            dropped=self._dropped,
        )
