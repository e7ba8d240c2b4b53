"""phoenix.js's reconnect and rejoin schedules, jitter, and the Timer-like Backoff."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, strategies as st

from trio_phoenix.proto import (
    Backoff,
    jittered,
    phoenix_reconnect_after,
    phoenix_rejoin_after,
)
from trio_phoenix.proto._backoff import RECONNECT_AFTER, REJOIN_AFTER

# reconnectAfterMs / rejoinAfterMs from phoenix.js, in milliseconds.
JS_RECONNECT_MS = [10, 50, 100, 150, 200, 250, 500, 1000, 2000]
JS_REJOIN_MS = [1000, 2000, 5000]


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def test_reconnect_schedule_is_phoenix_js() -> None:
    assert [ms(phoenix_reconnect_after(n)) for n in range(1, 10)] == JS_RECONNECT_MS
    assert [ms(phoenix_reconnect_after(n)) for n in range(10, 20)] == [5000] * 10
    assert phoenix_reconnect_after(1000) == 5.0
    assert [ms(d) for d in RECONNECT_AFTER] == JS_RECONNECT_MS


def test_rejoin_schedule_is_phoenix_js() -> None:
    assert [ms(phoenix_rejoin_after(n)) for n in range(1, 4)] == JS_REJOIN_MS
    assert [ms(phoenix_rejoin_after(n)) for n in range(4, 10)] == [10000] * 6
    assert phoenix_rejoin_after(10**6) == 10.0
    assert [ms(d) for d in REJOIN_AFTER] == JS_REJOIN_MS


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_attempts_below_one_use_the_last_delay(attempt: int) -> None:
    # JS indexes the array with tries - 1 and falls back to the last value when undefined.
    assert phoenix_reconnect_after(attempt) == 5.0
    assert phoenix_rejoin_after(attempt) == 10.0


def test_jitter_uses_the_given_random_source() -> None:
    values = iter([0.0, 0.5, 0.999])
    schedule = jittered(phoenix_rejoin_after, lambda: next(values), ratio=0.5)
    assert schedule(1) == 1.0  # random() == 0 keeps the full delay
    assert schedule(2) == pytest.approx(1.5)  # 2 s * (1 - 0.5 * 0.5)
    assert schedule(3) == pytest.approx(5.0 * (1 - 0.5 * 0.999))


def test_jitter_default_ratio_is_one_half() -> None:
    schedule = jittered(phoenix_rejoin_after, lambda: 1.0)
    assert schedule(4) == 5.0


def test_jitter_ratio_bounds() -> None:
    assert jittered(phoenix_reconnect_after, lambda: 0.7, ratio=0.0)(9) == 2.0
    assert jittered(phoenix_reconnect_after, lambda: 1.0, ratio=1.0)(9) == 0.0


@pytest.mark.parametrize("ratio", [-0.01, 1.01, math.nan, math.inf, -math.inf])
def test_jitter_rejects_invalid_ratio(ratio: float) -> None:
    with pytest.raises(ValueError, match="jitter ratio must be between 0 and 1"):
        jittered(phoenix_reconnect_after, lambda: 0.0, ratio=ratio)


@given(
    attempt=st.integers(min_value=1, max_value=50),
    ratio=st.floats(min_value=0.0, max_value=1.0),
    rnd=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_jitter_stays_within_bounds(attempt: int, ratio: float, rnd: float) -> None:
    for base in (phoenix_reconnect_after, phoenix_rejoin_after):
        delay = base(attempt)
        jittered_delay = jittered(base, lambda: rnd, ratio=ratio)(attempt)
        assert delay * (1 - ratio) - 1e-12 <= jittered_delay <= delay


def test_backoff_walks_the_schedule_until_reset() -> None:
    calls: list[int] = []

    def schedule(attempt: int) -> float:
        calls.append(attempt)
        return float(attempt * 10)

    backoff = Backoff(schedule)
    assert backoff.tries == 0
    # next_delay() does not count an attempt by itself (phoenix.js increments on fire).
    assert backoff.next_delay() == 10.0
    assert backoff.next_delay() == 10.0
    assert backoff.tries == 0
    delays = []
    for _ in range(4):
        delays.append(backoff.next_delay())
        backoff.fired()
    assert delays == [10.0, 20.0, 30.0, 40.0]
    assert backoff.tries == 4
    backoff.reset()
    assert backoff.tries == 0
    assert backoff.next_delay() == 10.0
    assert calls == [1, 1, 1, 2, 3, 4, 1]


def test_backoff_with_phoenix_schedules() -> None:
    reconnect = Backoff(phoenix_reconnect_after)
    delays = []
    for _ in range(12):
        delays.append(ms(reconnect.next_delay()))
        reconnect.fired()
    assert delays == [*JS_RECONNECT_MS, 5000, 5000, 5000]

    rejoin = Backoff(phoenix_rejoin_after)
    delays = []
    for _ in range(5):
        delays.append(ms(rejoin.next_delay()))
        rejoin.fired()
    assert delays == [1000, 2000, 5000, 10000, 10000]
    rejoin.reset()
    assert ms(rejoin.next_delay()) == 1000


def test_backoff_is_compared_by_identity() -> None:
    a = Backoff(phoenix_rejoin_after)
    b = Backoff(phoenix_rejoin_after)
    assert a != b
    assert a == a
    assert len({a, b}) == 2


def test_jittered_backoff_is_deterministic() -> None:
    rnd = itertools.cycle([0.25, 0.75])
    backoff = Backoff(jittered(phoenix_rejoin_after, lambda: next(rnd), ratio=0.2))
    delays = []
    for _ in range(4):
        delays.append(backoff.next_delay())
        backoff.fired()
    assert delays == pytest.approx([0.95, 2 * 0.85, 5 * 0.95, 10 * 0.85])
