"""Timers of the sans-IO core: deadlines in a heap, with lazy cancellation.

A ``Timer`` belongs to one owner (a push, a channel's rejoin, the socket's heartbeat and
reconnect); ``TimerQueue.fire(now)`` runs the callbacks of every timer whose deadline passed.
The core never reads a clock: ``now`` comes from the I/O layer.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Timer", "TimerQueue", "no_timer"]


@attrs.define(eq=False)
class Timer:
    """A deadline and what to do when it passes: ``callback(owner, now)``. The owner is
    passed rather than bound into a closure, so a timer costs one object, not three."""

    callback: Callable[[Any, float], None]
    owner: Any = None
    deadline: float | None = None
    entry: _Entry | None = None  # its place in the heap while it is scheduled


@attrs.define(eq=False)
class _Entry:
    """A heap slot; a cancelled timer lets go of it, so the heap never keeps its owner (a push
    and its payload) alive."""

    timer: Timer | None


def no_timer(owner: object, now: float) -> None:
    """The callback of a finished push's timer, which never runs again."""


class TimerQueue:
    """A heap of deadlines with lazy cancellation: a cancelled entry is emptied at once and
    removed when it reaches the top, or when empty entries are half the heap."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = 0  # (an int, not an itertools.count: one object less per socket)
        self._empty = 0

    def schedule(self, timer: Timer, deadline: float) -> None:
        self.cancel(timer)
        timer.deadline = deadline
        timer.entry = entry = _Entry(timer)
        self._seq = seq = self._seq + 1
        heapq.heappush(self._heap, (deadline, seq, entry))

    def cancel(self, timer: Timer) -> None:
        timer.deadline = None
        entry = timer.entry
        if entry is not None:
            timer.entry = entry.timer = None
            self._empty += 1
            if self._empty > 64 and self._empty * 2 > len(self._heap):
                self._heap = [item for item in self._heap if item[2].timer is not None]
                heapq.heapify(self._heap)
                self._empty = 0

    def _pop_empty(self) -> None:
        heap = self._heap
        while heap and heap[0][2].timer is None:
            heapq.heappop(heap)
            self._empty -= 1

    def next_deadline(self) -> float | None:
        self._pop_empty()
        heap = self._heap
        return heap[0][0] if heap else None

    def fire(self, now: float) -> None:
        while True:
            self._pop_empty()
            heap = self._heap  # a callback's cancel() may have compacted it
            if not heap or heap[0][0] > now:
                return
            timer = heapq.heappop(heap)[2].timer
            assert timer is not None
            timer.deadline = None
            timer.entry = None
            timer.callback(timer.owner, now)

    def __len__(self) -> int:
        """Entries in the heap, the emptied ones included (for tests of the bound)."""
        return len(self._heap)
