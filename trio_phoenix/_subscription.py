"""Bounded subscriptions: delivery without a task switch per message, and explicit overflow.

The socket's reader task hands every message to ``Subscription.offer`` without awaiting. A
buffer is bounded in messages (``max_buffer``) and in bytes (``max_buffer_bytes``, counted as
the size of the frames the messages came in; an empty buffer always takes one message). When a
subscriber's buffer is full the policy decides: ``"raise"`` (the default) drops the new
message and, at that place in the stream, makes the consumer's ``receive()`` raise
``SubscriptionOverflow(dropped=n)`` once; ``"drop_oldest"`` discards the oldest buffered
message instead and only counts it; ``"wait"`` takes the message and makes the socket's reader
stop reading (see `Flow`) until the consumer has made room. Losses are counted in
``statistics()``.

Delivery costs no task switch while messages are buffered: ``async for`` hands out buffered
messages with only a cancellation check between them and yields to the scheduler when the
buffer is empty (or after ``max_buffer`` messages in a row); ``receive_batch()`` takes many at
once. For this to keep up with a reader that decodes a whole 64 KiB read (~900 small messages)
per step, the reader yields once after handing out messages, and at least every `Flow.SLICE`
frames (`Flow.pause`), so that their consumers run before more messages arrive.

The stream may also end with a reason: when the channel is closed by the server, the next
``receive()`` after the buffered messages raises ``ChannelClosed``; a close the application
asked for (leaving, closing the socket) just ends the iteration.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Generic, Literal, TypeVar

import attrs
import trio

from ._exceptions import SubscriptionOverflow
from .proto._limits import BufferBound

__all__ = [
    "DEFAULT_MAX_BUFFER_BYTES",
    "Flow",
    "OverflowPolicy",
    "Subscription",
    "SubscriptionStatistics",
]

#: Default bound of a subscription's buffer in bytes (16 MB; one message always fits).
DEFAULT_MAX_BUFFER_BYTES: Final = 16_000_000

T = TypeVar("T")
OverflowPolicy = Literal["raise", "drop_oldest", "wait"]
_POLICIES: Final = ("raise", "drop_oldest", "wait")

_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint: Final = trio.lowlevel.cancel_shielded_checkpoint


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


class Flow:
    """What a socket's reader task needs from the socket's subscriptions, between two reads.

    After routing the frames of one read (at most `SLICE` of them at a time), the reader calls
    `pause` when ``delivered`` or ``full`` is set: it yields once (so the consumers it woke run
    before more messages are routed), and while a subscription with ``overflow="wait"`` is
    full it waits there, so the connection is not read (TCP then slows the server down). Once
    the socket is closing (`close`) the reader never waits again: the replies to its leaves
    must get through.
    """

    __slots__ = ("_closed", "_room", "delivered", "full", "replied")

    #: The reader routes at most this many frames of a read between two pauses, so that a
    #: consumer that keeps up never sees more than this many arrive at once, and pushes woken
    #: by replies send their next push while the reader goes on (pipelining, not lock-step).
    SLICE: Final = 32

    def __init__(self) -> None:
        #: Set by every message handed to a subscription and every reply handed to a push;
        #: cleared by `pause`.
        self.delivered = False
        #: Set by every reply handed to a push; cleared by `pause`.
        self.replied = False
        #: How many "wait" subscriptions are full now.
        self.full = 0
        self._closed = False
        self._room: trio.Event | None = None

    @property
    def blocked(self) -> bool:
        """Whether the reader waits at its next `pause`."""
        return self.full > 0 and not self._closed

    async def pause(self) -> None:
        """Yield once; then wait while a "wait" subscription is full (a cancellation point)."""
        replied = self.replied
        self.delivered = self.replied = False
        await trio.lowlevel.checkpoint()
        if replied:
            # Once more, so that the pushes woken by replies run (and send their next push)
            # before the reader reads again, whichever order the scheduler picked.
            await trio.lowlevel.checkpoint()
        while self.blocked:
            room = self._room = trio.Event()
            await room.wait()

    def close(self) -> None:
        """Never make the reader wait again (the socket is closing)."""
        self._closed = True
        self._wake()

    def _one_less_full(self) -> None:
        self.full -= 1
        if not self.full:
            self._wake()

    def _wake(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.set()


class Subscription(trio.abc.ReceiveChannel[T], Generic[T]):
    """A bounded stream of messages for one consumer: ``async for``, ``receive()``,
    ``receive_batch()`` or ``receive_nowait()``.

    **Checkpoints.** ``receive()`` and ``receive_batch()`` are full trio checkpoints (a
    cancellation point and a schedule point) on every call, like a memory channel's
    ``receive()``. ``async for`` is cheaper: while messages are buffered, each step only
    checks for cancellation (``trio.lowlevel.checkpoint_if_cancelled()``: a cancelled scope
    is honoured there, but other tasks do not run); it yields to the scheduler when the buffer
    is empty (waiting for the next message, which is a full checkpoint), at a gap or the end of
    the stream, and at least once every ``max_buffer`` messages. So a consumer that keeps up
    costs no task switch per message; a loop body that needs other tasks to run between
    messages must await something itself. ``receive_nowait()`` never yields.
    """

    def __init__(
        self,
        max_buffer: int,
        overflow: OverflowPolicy,
        *,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        flow: Flow | None = None,
    ) -> None:
        self._bound = BufferBound(max_buffer, max_buffer_bytes)
        if overflow not in _POLICIES:
            raise ValueError(
                f"overflow must be 'raise', 'drop_oldest' or 'wait', got {overflow!r}"
            )
        if overflow == "wait" and flow is None:
            raise ValueError(
                "overflow='wait' is only for channel.subscribe(); use 'raise' or 'drop_oldest'"
            )
        # Messages, and gap / end markers (``_markers`` of them, never refused) in between.
        self._buffer: deque[T | _Gap | _End] = deque()
        self._sizes: deque[int] = deque()  # of the buffered messages, oldest first
        self._markers = 0
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self.overflow = overflow
        self._flow = flow
        self._waits = overflow == "wait"  # holds the reader when full (until released)
        self._full = False  # counted in ``flow.full``
        self._gap: _Gap | None = None
        self._delivered = 0
        self._dropped = 0
        self._ended = False  # no more offers
        self._closed = False  # the consumer side is closed
        self._run = 0  # messages iterated since iteration last yielded
        self._lot: trio.lowlevel.ParkingLot | None = None

    # -- producer side (never blocks) ----------------------------------------------------

    def offer(self, item: T, size: int = 0) -> None:
        """Hand ``item`` (of ``size`` bytes) to the consumer, or apply the overflow policy if
        the buffer is full."""
        if self._ended:
            return
        bound = self._bound
        if not bound.fits(size) and not self._waits:
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
                    self._put_marker(self._gap)
                self._gap.dropped += 1
                return
        elif self._gap is not None:
            self._gap = None  # the next gap, if any, is a new one
        bound.add(size)
        self._sizes.append(size)
        self._buffer.append(item)
        flow = self._flow
        if flow is not None:
            flow.delivered = True
            if self._waits and not self._full and self._is_full():
                self._full = True
                flow.full += 1
        lot = self._lot
        if lot:
            lot.unpark()

    def _is_full(self) -> bool:
        bound = self._bound
        return bound.items >= bound.max_items or bound.bytes >= bound.max_bytes

    def _discard_oldest(self) -> None:
        # Only reached without a gap marker queued, so the oldest item is a message.
        self._buffer.popleft()
        self._bound.remove(self._sizes.popleft())

    def _put_marker(self, marker: _Gap | _End) -> None:
        self._markers += 1
        self._buffer.append(marker)
        lot = self._lot
        if lot:
            lot.unpark_all()

    def end(self, error: BaseException | None = None) -> None:
        """No more messages will come; ``error`` (if any) is raised after the buffered ones."""
        if self._ended:
            return
        self._ended = True
        self._release()
        self._put_marker(_End(error))

    def release(self) -> None:
        """Stop holding the reader: from now on a full ``"wait"`` subscription drops new
        messages and reports the gap as ``"raise"`` does (the channel is being left)."""
        self._release()

    def _release(self) -> None:
        self._waits = False
        if self._full:
            self._full = False
            assert self._flow is not None
            self._flow._one_less_full()

    # -- consumer side -------------------------------------------------------------------

    def _take(self) -> T:
        """The oldest message; raises at a gap or the end, ``WouldBlock`` if there is none."""
        if self._closed:
            raise trio.EndOfChannel
        buffer = self._buffer
        if not buffer:
            raise trio.WouldBlock
        item = buffer.popleft()
        if self._markers and isinstance(item, _Gap | _End):
            self._markers -= 1
            if isinstance(item, _Gap):
                if item is self._gap:
                    self._gap = None
                raise SubscriptionOverflow(item.dropped)
            self._closed = True
            if item.error is not None:
                raise item.error
            raise trio.EndOfChannel
        self._bound.remove(self._sizes.popleft())
        self._delivered += 1
        if self._full and not self._is_full():
            self._full = False
            assert self._flow is not None
            self._flow._one_less_full()
        return item  # type: ignore[return-value]  # not a marker

    async def _wait(self) -> None:
        """Until there is something to take (a message, a marker) or the consumer side is
        closed. The caller has checked that there is nothing yet."""
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        while not self._buffer and not self._closed:
            await self._lot.park()

    async def receive(self) -> T:
        """The next message (a full checkpoint, also when one is buffered).

        Raises:
            SubscriptionOverflow: messages were dropped here (``"raise"`` policy); receive
                again to continue after the gap.
            trio.EndOfChannel: the stream is over (this ends ``async for``).
            ChannelClosed: the server closed the channel (after the buffered messages).
        """
        await _checkpoint_if_cancelled()
        if self._buffer or self._closed:
            try:
                return self._take()
            finally:
                await _cancel_shielded_checkpoint()
        # Parking is the schedule point; take right after waking, before any other task can.
        await self._wait()
        return self._take()

    async def receive_batch(self, max_messages: int | None = None) -> list[T]:
        """Every buffered message (at most ``max_messages``), waiting for one if there is
        none; a full checkpoint. Stops before a gap or the end of the stream, which the next
        call reports as ``receive()`` does.

        Raises:
            SubscriptionOverflow, trio.EndOfChannel, ChannelClosed: as ``receive()``, when
                that is the first thing in the stream.
        """
        if max_messages is not None and max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages!r}")
        await _checkpoint_if_cancelled()
        if self._buffer or self._closed:
            try:
                return self._take_batch(max_messages)
            finally:
                await _cancel_shielded_checkpoint()
        await self._wait()
        return self._take_batch(max_messages)

    def _take_batch(self, max_messages: int | None) -> list[T]:
        batch = [self._take()]
        limit = len(self._buffer) if max_messages is None else max_messages - 1
        if self._markers:
            take = self._take
            while limit and self._buffer and not isinstance(self._buffer[0], _Gap | _End):
                batch.append(take())
                limit -= 1
            return batch
        # The common case: only messages are buffered.
        buffer, sizes, bound = self._buffer, self._sizes, self._bound
        count = min(limit, len(buffer))
        for _ in range(count):
            batch.append(buffer.popleft())  # type: ignore[arg-type]  # no markers
            bound.remove(sizes.popleft())
        self._delivered += count
        if self._full and not self._is_full():
            self._full = False
            assert self._flow is not None
            self._flow._one_less_full()
        return batch

    def receive_nowait(self) -> T:
        """Like ``receive()``, but never yields: raises ``trio.WouldBlock`` when nothing is
        buffered."""
        return self._take()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        """The next message: only a cancellation check while messages are buffered (see the
        class's "Checkpoints"); a full checkpoint when waiting, at a gap or the end, and
        after ``max_buffer`` messages in a row."""
        buffer = self._buffer
        if (
            buffer
            and self._run < self.max_buffer
            and not (self._markers and isinstance(buffer[0], _Gap | _End))
        ):
            await _checkpoint_if_cancelled()
            if buffer and not self._closed:  # still: no other task ran meanwhile
                self._run += 1
                return self._take()
        self._run = 0
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop receiving (a checkpoint)."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Stop receiving (what leaving the ``subscribe()`` block does)."""
        self._ended = True
        self._closed = True
        self._release()
        self._buffer.clear()
        self._sizes.clear()
        self._markers = 0
        self._bound.items = self._bound.bytes = 0
        if self._lot:
            self._lot.unpark_all()

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
