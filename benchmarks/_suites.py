"""The benchmark groups: each runs both variants, interleaved, and returns table rows."""

from __future__ import annotations

import gc
import resource
import statistics
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import attrs
import trio

from . import _clients as clients
from ._engine import engine_rows
from ._harness import run_json
from ._report import Row
from ._wire import KB, SMALL

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Config:
    """Sizes and repetitions of one benchmark session."""

    runs: int
    inbound_small: int
    inbound_kb: int
    round_trips: int
    round_trip_warmup: int
    pipelined: int
    in_flight: int
    channels: int
    burst: int
    scale_sockets: tuple[int, ...]
    scale_runs: tuple[int, ...]
    #: Heartbeats per second across all sockets of a scale run (interval = sockets / rate).
    heartbeat_rate: float
    #: Idle window of a scale run, in heartbeat intervals.
    idle_intervals: float

    @classmethod
    def full(cls) -> Config:
        return cls(
            runs=5,
            inbound_small=50_000,
            inbound_kb=20_000,
            round_trips=2_000,
            round_trip_warmup=200,
            pipelined=10_000,
            in_flight=100,
            channels=100,
            burst=200_000,
            scale_sockets=(1_000, 5_000, 10_000),
            scale_runs=(3, 1, 1),
            heartbeat_rate=500.0,
            idle_intervals=2.0,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            runs=1,
            inbound_small=5_000,
            inbound_kb=2_000,
            round_trips=300,
            round_trip_warmup=50,
            pipelined=2_000,
            in_flight=100,
            channels=100,
            burst=20_000,
            scale_sockets=(200,),
            scale_runs=(1,),
            heartbeat_rate=500.0,
            idle_intervals=2.0,
        )


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _run(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    gc.collect()
    return trio.run(function, *args)


def _interleaved(
    runs: int,
    label: str,
    phoenix: Callable[[], T],
    raw: Callable[[], T],
) -> tuple[list[T], list[T]]:
    """Run both variants ``runs`` times, alternating which goes first."""
    phoenix_results: list[T] = []
    raw_results: list[T] = []
    for run in range(runs):
        _progress(f"{label}: run {run + 1}/{runs}")
        if run % 2:
            raw_results.append(raw())
            phoenix_results.append(phoenix())
        else:
            phoenix_results.append(phoenix())
            raw_results.append(raw())
    return phoenix_results, raw_results


def _rotated(runs: int, label: str, *variants: Callable[[], T]) -> list[list[T]]:
    """Run every variant ``runs`` times, rotating which goes first; results per variant."""
    results: list[list[T]] = [[] for _ in variants]
    for run in range(runs):
        _progress(f"{label}: run {run + 1}/{runs}")
        for offset in range(len(variants)):
            index = (run + offset) % len(variants)
            results[index].append(variants[index]())
    return results


def _gc_collect_then(function: Callable[..., T], *args: Any) -> T:
    gc.collect()
    return function(*args)


def inbound(port: int, config: Config) -> list[Row]:
    """Broadcasts delivered to a subscriber, small and 1 KB payloads; against raw
    trio-websocket and raw websockets (asyncio), all three measured back to back."""
    rows = []
    for size, count, name, targets in (
        (SMALL, config.inbound_small, "inbound, small broadcasts", (3.0, 0.7)),
        (KB, config.inbound_kb, "inbound, 1 KB broadcasts", (2.0, None)),
    ):
        phoenix, raw, websockets = _rotated(
            config.runs,
            name,
            partial(_run, clients.inbound_phoenix, port, count, size),
            partial(_run, clients.inbound_raw, port, count, size),
            partial(_gc_collect_then, clients.inbound_websockets, port, count, size),
        )
        note = f"{count:,} broadcasts per run, from the stream request to the last one"
        rows.append(
            Row(
                name=name,
                unit="msgs/s",
                phoenix=tuple(phoenix),
                raw=tuple(raw),
                higher_is_better=True,
                target=targets[0],
                note=note,
            )
        )
        rows.append(
            Row(
                name=f"{name} [vs raw websockets]",
                unit="msgs/s",
                phoenix=tuple(phoenix),
                raw=tuple(websockets),
                higher_is_better=True,
                target=targets[1],
                note="the raw column is websockets' asyncio client (recv() + json.loads)",
            )
        )
    return rows


def burst(port: int, config: Config) -> list[Row]:
    """A burst of small broadcasts to an ``async for`` consumer with the default options."""
    count = config.burst
    results = [_run(clients.burst_phoenix, port, count) for _ in range(config.runs)]
    label = f"burst of {count:,} small, default options"
    note = "max_buffer=1000, overflow='raise'; trio_phoenix only (raw clients cannot drop)"
    return [
        Row(
            name=f"{label}: delivered",
            unit="msgs",
            phoenix=tuple(float(delivered) for delivered, _ in results),
            raw=tuple(0.0 for _ in results),
            higher_is_better=True,
            target=float(count),
            absolute=True,
            note=note,
        ),
        Row(
            name=f"{label}: dropped",
            unit="msgs",
            phoenix=tuple(float(dropped) for _, dropped in results),
            raw=tuple(0.0 for _ in results),
            higher_is_better=False,
            target=0.0,
            absolute=True,
        ),
    ]


def _percentiles(samples: list[int]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[89] / 1000, cuts[98] / 1000


def round_trip(port: int, config: Config) -> list[Row]:
    """Sequential push -> reply latency, and pipelined pushes."""
    count, warmup = config.round_trips, config.round_trip_warmup
    phoenix, raw = _interleaved(
        config.runs,
        "push -> reply",
        lambda: _percentiles(_run(clients.round_trip_phoenix, port, count, warmup)),
        lambda: _percentiles(_run(clients.round_trip_raw, port, count, warmup)),
    )
    rows = [
        Row(
            name=f"push -> reply {label}",
            unit="us",
            phoenix=tuple(run[index] for run in phoenix),
            raw=tuple(run[index] for run in raw),
            higher_is_better=False,
            target=0.9 if index == 0 else None,
            note=(
                f"{count:,} sequential echo pushes per run (after {warmup} warm-up)"
                if index == 0
                else ""
            ),
        )
        for index, label in enumerate(("p50", "p90", "p99"))
    ]
    total, in_flight = config.pipelined, config.in_flight
    phoenix_rate, raw_rate = _interleaved(
        config.runs,
        "pipelined pushes",
        lambda: _run(clients.pipelined_phoenix, port, total, in_flight),
        lambda: _run(clients.pipelined_raw, port, total, in_flight),
    )
    rows.append(
        Row(
            name="pipelined pushes",
            unit="pushes/s",
            phoenix=tuple(phoenix_rate),
            raw=tuple(raw_rate),
            higher_is_better=True,
            target=3.0,
            note=(
                f"{total:,} pushes, {in_flight} in flight (trio_phoenix: {in_flight} tasks; "
                "raw: a sender with a window and a reply reader)"
            ),
        )
    )
    return rows


def channels(port: int, config: Config) -> list[Row]:
    """One socket joining many channels concurrently."""
    count = config.channels
    phoenix, raw = _interleaved(
        config.runs,
        f"{count} channels",
        lambda: _run(clients.channels_phoenix, port, count) * 1000,
        lambda: _run(clients.channels_raw, port, count) * 1000,
    )
    return [
        Row(
            name=f"{count} channels joined on one socket",
            unit="ms",
            phoenix=tuple(phoenix),
            raw=tuple(raw),
            higher_is_better=False,
            note="trio_phoenix: one task per join; raw: send every join, then read the replies",
        )
    ]


def fd_limit() -> int:
    """The file-descriptor limit a process can raise itself to."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(soft, hard) if hard != resource.RLIM_INFINITY else 1 << 20


def scale(port: int, config: Config) -> list[Row]:
    """Many sockets with one joined channel each, one fresh process per variant and run."""
    rows = []
    limit = fd_limit()
    for sockets, runs in zip(config.scale_sockets, config.scale_runs, strict=True):
        if limit < sockets + 64:
            _progress(f"skipping {sockets:,} sockets: the fd limit is {limit}")
            continue
        interval = sockets / config.heartbeat_rate
        idle = interval * config.idle_intervals
        options = ("--heartbeat", f"{interval:g}", "--idle", f"{idle:g}")
        phoenix, raw = _interleaved(
            runs,
            f"{sockets:,} sockets",
            partial(run_json, "benchmarks._scale", "phoenix", str(port), str(sockets), *options),
            partial(run_json, "benchmarks._scale", "raw", str(port), str(sockets), *options),
        )
        label = f"{sockets:,} sockets"
        rows += [
            Row(
                name=f"{label}: connect + join all",
                unit="s",
                phoenix=tuple(run["connect_seconds"] for run in phoenix),
                raw=tuple(run["connect_seconds"] for run in raw),
                higher_is_better=False,
                target=1.3,
                note=f"{runs} run(s), fresh process per run, at most 200 connecting at once",
            ),
            Row(
                name=f"{label}: close all",
                unit="s",
                phoenix=tuple(run["close_seconds"] for run in phoenix),
                raw=tuple(run["close_seconds"] for run in raw),
                higher_is_better=False,
                target=1.5,
                note="every socket closed at once (trio_phoenix: aclose(), leaves with the close)",
            ),
            Row(
                name=f"{label}: memory per socket",
                unit="KiB",
                phoenix=tuple(run["bytes_per_socket"] / 1024 for run in phoenix),
                raw=tuple(run["bytes_per_socket"] / 1024 for run in raw),
                higher_is_better=False,
                target=1.0,
                note="RSS delta / sockets, after gc, one joined channel per socket",
            ),
            Row(
                name=f"{label}: idle CPU",
                unit="% core",
                phoenix=tuple(run["idle_cpu_percent"] for run in phoenix),
                raw=tuple(run["idle_cpu_percent"] for run in raw),
                higher_is_better=False,
                note=(
                    f"heartbeat every {interval:g} s per socket "
                    f"({config.heartbeat_rate:g}/s in all), measured over {idle:g} s"
                ),
            ),
        ]
    return rows


def engine(port: int, config: Config) -> list[Row]:
    """The engine, JSON decoder and compression rows (candidate / baseline, each named)."""
    try:
        import orjson  # noqa: F401
    except ImportError:
        have_orjson = False
    else:
        have_orjson = True
    return engine_rows(
        port, config.runs, config.inbound_small, config.inbound_kb, orjson=have_orjson
    )


SUITES: dict[str, Callable[[int, Config], list[Row]]] = {
    "inbound": inbound,
    "roundtrip": round_trip,
    "scale": scale,
    "channels": channels,
    "engine": engine,
    "burst": burst,
}
#: Groups whose rows compare two variants of trio_phoenix (a table of their own).
OWN_TABLE: frozenset[str] = frozenset({"engine"})
