"""Retry schedules: phoenix.js's reconnect and rejoin backoff, optional jitter, and its Timer.

Delays are in seconds. A schedule is a function of the attempt number (1 for the first retry).
Randomness, like time, comes in from outside: ``jittered`` takes the random source, so tests
stay deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

__all__ = [
    "RECONNECT_AFTER",
    "REJOIN_AFTER",
    "Backoff",
    "Schedule",
    "jittered",
    "phoenix_reconnect_after",
    "phoenix_rejoin_after",
]

#: A schedule maps the attempt number (1, 2, ...) to a delay in seconds.
Schedule = Callable[[int], float]

#: phoenix.js ``reconnectAfterMs``: 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms, then 5 s.
RECONNECT_AFTER: Final = (0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.0)
_RECONNECT_LAST: Final = 5.0
#: phoenix.js ``rejoinAfterMs``: 1, 2, 5 s, then 10 s.
REJOIN_AFTER: Final = (1.0, 2.0, 5.0)
_REJOIN_LAST: Final = 10.0


def phoenix_reconnect_after(attempt: int) -> float:
    """phoenix.js's socket reconnect backoff."""
    return (
        RECONNECT_AFTER[attempt - 1] if 1 <= attempt <= len(RECONNECT_AFTER) else _RECONNECT_LAST
    )


def phoenix_rejoin_after(attempt: int) -> float:
    """phoenix.js's channel rejoin backoff."""
    return REJOIN_AFTER[attempt - 1] if 1 <= attempt <= len(REJOIN_AFTER) else _REJOIN_LAST


def jittered(schedule: Schedule, random: Callable[[], float], ratio: float = 0.5) -> Schedule:
    """Spread ``schedule`` over ``[delay * (1 - ratio), delay]`` with ``random() in [0, 1)``.

    Jitter keeps a fleet of clients from reconnecting in lockstep after a server restart.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"jitter ratio must be between 0 and 1, got {ratio}")

    def schedule_with_jitter(attempt: int) -> float:
        delay = schedule(attempt)
        return delay * (1.0 - ratio * random())

    return schedule_with_jitter


@attrs.define(eq=False)
class Backoff:
    """phoenix.js's ``Timer`` bookkeeping: delays calc(1), calc(2), ... until ``reset()``.

    ``next_delay()`` is the delay for the next scheduled attempt; ``fired()`` counts an attempt
    once its timer went off (phoenix.js increments ``tries`` only then).
    """

    schedule: Schedule
    tries: int = 0

    def next_delay(self) -> float:
        return self.schedule(self.tries + 1)

    def fired(self) -> None:
        self.tries += 1

    def reset(self) -> None:
        self.tries = 0
