"""``python -m benchmarks --profile``: where trio_phoenix spends its time and memory.

Prints (1) the raw trio-websocket ceilings the inbound target is judged against (default
buffers, a 64 KiB receive buffer, plus one memory-channel hop to a consumer task), (2) cProfile
tables of the trio_phoenix inbound and push -> reply paths, sorted by own time, and (3) the
heap and the objects of one socket with one joined channel, next to a raw connection.
"""

from __future__ import annotations

import collections
import cProfile
import gc
import io
import json
import math
import pstats
import statistics
import sys
import time
import timeit
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_websocket

import trio_phoenix
from trio_phoenix.proto import SocketCore

from . import _clients as clients
from ._suites import Config
from ._wire import (
    BROADCAST_EVENT,
    SMALL,
    STREAM_EVENT,
    TOPIC,
    broadcast_payload,
    encode,
    mount_url,
    raw_url,
)

_loads = json.loads


async def _raw_join(ws: Any) -> None:
    await ws.send_message(encode("1", "1", TOPIC, "phx_join", {}))
    await ws.get_message()


async def _raw_stream(ws: Any, count: int, size: int) -> None:
    await ws.send_message(encode("1", "2", TOPIC, STREAM_EVENT, {"count": count, "size": size}))


async def raw_tuned(port: int, count: int, size: int) -> float:
    """Raw ``get_message`` + ``json.loads`` with a 64 KiB receive buffer and a 16-message queue."""
    async with trio_websocket.open_websocket_url(
        raw_url(port), receive_buffer_size=65536, message_queue_size=16
    ) as ws:
        await _raw_join(ws)
        start = time.perf_counter()
        await _raw_stream(ws, count, size)
        received = 0
        while received < count:
            if _loads(await ws.get_message())[3] == BROADCAST_EVENT:
                received += 1
        return count / (time.perf_counter() - start)


async def raw_hop(port: int, count: int, size: int, *, drain: bool) -> float:
    """As ``raw_tuned``, then one unbounded memory-channel hop to a consumer task."""
    async with trio_websocket.open_websocket_url(
        raw_url(port), receive_buffer_size=65536, message_queue_size=16
    ) as ws:
        await _raw_join(ws)
        send, receive = trio.open_memory_channel[Any](math.inf)
        start = time.perf_counter()

        async def reader() -> None:
            while True:
                send.send_nowait(_loads(await ws.get_message()))

        async def consumer(nursery: trio.Nursery) -> None:
            received = 0
            while received < count:
                if (await receive.receive())[3] == BROADCAST_EVENT:
                    received += 1
                while drain and received < count:
                    try:
                        message = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if message[3] == BROADCAST_EVENT:
                        received += 1
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(consumer, nursery)
            await _raw_stream(ws, count, size)
        return count / (time.perf_counter() - start)


async def phoenix_drain(port: int, count: int, size: int) -> float:
    """trio_phoenix inbound, the consumer draining with ``receive_nowait``."""
    async with trio_phoenix.open_socket(mount_url(port)) as socket:
        channel = socket.channel(TOPIC)
        async with (
            channel.subscribe(BROADCAST_EVENT, max_buffer=count + 1) as messages,
            channel,
        ):
            start = time.perf_counter()
            await channel.push(STREAM_EVENT, {"count": count, "size": size})
            received = 0
            while received < count:
                await messages.receive()
                received += 1
                while received < count:
                    try:
                        messages.receive_nowait()
                    except trio.WouldBlock:
                        break
                    received += 1
            return count / (time.perf_counter() - start)


def _median_rate(runs: int, function: Callable[[], Awaitable[float]]) -> float:
    rates = []
    for _ in range(runs):
        gc.collect()
        rates.append(trio.run(function))
    return statistics.median(rates)


def ceilings(port: int, config: Config) -> None:
    """Inbound rates of raw variants and trio_phoenix, small payloads."""
    count = config.inbound_small
    variants: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("raw, default buffers", lambda: clients.inbound_raw(port, count, SMALL)),
        ("raw, 64 KiB buffer + 16-message queue", lambda: raw_tuned(port, count, SMALL)),
        ("  + memory-channel hop to a consumer", lambda: raw_hop(port, count, SMALL, drain=False)),
        (
            "  + hop, consumer drains with receive_nowait",
            lambda: raw_hop(port, count, SMALL, drain=True),
        ),
        ("trio_phoenix, async for", lambda: clients.inbound_phoenix(port, count, SMALL)),
        ("trio_phoenix, receive_nowait drain", lambda: phoenix_drain(port, count, SMALL)),
    ]
    print(f"\ninbound, {count:,} small broadcasts, median of {config.runs} runs")
    baseline = None
    for name, function in variants:
        rate = _median_rate(config.runs, function)
        baseline = baseline or rate
        print(f"  {name:<48} {rate:>9,.0f} msgs/s  {rate / baseline:.2f}x")


def _per_call(function: Callable[[], object], number: int = 100_000) -> float:
    """Best-of-5 microseconds per call."""
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def micro() -> None:
    """Per-message costs of the inbound path, without profiler overhead."""
    frame = encode(None, None, TOPIC, BROADCAST_EVENT, broadcast_payload(SMALL))
    serializer = trio_phoenix.V2JSONSerializer()
    core = SocketCore(heartbeat_interval=None)
    core.connection_started(0.0)
    core.connection_opened(0.0)
    channel = core.channel(TOPIC, None)
    core.join(channel, 0.0)
    join_ref = channel.join_ref
    core.data_to_send()
    core.receive(
        encode(join_ref, join_ref, TOPIC, "phx_reply", {"response": {}, "status": "ok"}), 0.0
    )
    core.events()

    def receive() -> None:
        core.receive(frame, 0.0)
        core.events()

    message = serializer.decode(frame)
    subscription: trio_phoenix.Subscription[trio_phoenix.Message] = trio_phoenix.Subscription(
        1 << 30, "raise"
    )

    def offer_take() -> None:
        subscription.offer(message)
        subscription.receive_nowait()

    async def checkpoints(count: int) -> None:
        for _ in range(count):
            await trio.lowlevel.checkpoint()

    start = time.perf_counter()
    trio.run(checkpoints, 100_000)
    checkpoint = (time.perf_counter() - start) / 100_000 * 1e6
    rows = [
        ("json.loads(frame)", _per_call(lambda: _loads(frame))),
        ("V2JSONSerializer().decode(frame)", _per_call(lambda: serializer.decode(frame))),
        ("SocketCore.receive(frame) + events()", _per_call(receive)),
        ("Subscription.offer + receive_nowait", _per_call(offer_take)),
        ("trio checkpoint (one task step)", checkpoint),
    ]
    print("\nper-message costs of the inbound path (best of 5, small broadcast)")
    for name, micros in rows:
        print(f"  {name:<40} {micros:6.2f} us")


def _print_profile(profiler: cProfile.Profile, count: int, unit: str, limit: int = 25) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(limit)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"  profiled total {total:.3f} s = {total / count * 1e6:.1f} us per {unit}")
    text = stream.getvalue()
    start = text.find("   ncalls")
    print(text[start:].rstrip())


def profiles(port: int, config: Config) -> None:
    """cProfile tables of the inbound and the push -> reply paths."""
    count = config.inbound_small
    print(f"\ncProfile: trio_phoenix inbound, {count:,} small broadcasts (own time)")
    profiler = cProfile.Profile()
    profiler.enable()
    trio.run(clients.inbound_phoenix, port, count, SMALL)
    profiler.disable()
    _print_profile(profiler, count, "message")

    pushes = config.round_trips
    print(f"\ncProfile: trio_phoenix push -> reply, {pushes:,} sequential pushes (own time)")
    profiler = cProfile.Profile()
    profiler.enable()
    trio.run(clients.round_trip_phoenix, port, pushes, 0)
    profiler.disable()
    _print_profile(profiler, pushes, "push")


def _census() -> collections.Counter[str]:
    """Bytes (``sys.getsizeof``) of the GC-tracked objects alive, by type."""
    gc.collect()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        sizes[f"{kind.__module__}.{kind.__qualname__}"] += sys.getsizeof(obj)
    return sizes


def _count() -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return counts


async def _open_many(port: int, count: int, variant: str) -> tuple[float, dict[str, float]]:
    """Open ``count`` connections of ``variant``; return heap bytes and object counts per one."""
    async with trio.open_nursery() as nursery:
        keep: list[Any] = []
        tracemalloc.start()
        before_sizes, before_counts = _census(), _count()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            if variant == "phoenix":
                socket = await trio_phoenix.connect_socket(nursery, mount_url(port))
                channel = socket.channel(TOPIC)
                await channel.join()
                keep.append((socket, channel))
            else:
                ws = await trio_websocket.connect_websocket_url(nursery, raw_url(port))
                await ws.send_message(encode("1", "1", TOPIC, "phx_join", {}))
                await ws.get_message()
                keep.append(ws)
        after_sizes, after_counts = _census(), _count()
        heap = (tracemalloc.get_traced_memory()[0] - before) / count
        tracemalloc.stop()
        nursery.cancel_scope.cancel()
    counts = {
        kind: (after_counts[kind] - before_counts[kind]) / count
        for kind in after_counts
        if after_sizes[kind] - before_sizes[kind] > 0
    }
    del keep
    return heap, counts


def memory(port: int) -> None:
    """Python heap and GC-tracked objects per connection: trio_phoenix vs raw trio-websocket."""
    count = 200
    phoenix_heap, phoenix = trio.run(_open_many, port, count, "phoenix")
    raw_heap, raw = trio.run(_open_many, port, count, "raw")
    print(f"\nPython heap per connection ({count} connections, tracemalloc)")
    print(f"  trio_phoenix socket + joined channel {phoenix_heap / 1024:5.1f} KiB")
    print(f"  raw trio-websocket + joined {raw_heap / 1024:5.1f} KiB")
    print("objects per connection, by type (most added by trio_phoenix first)")
    print(f"  {'type':<48} {'phoenix':>8} {'raw':>6}")
    kinds = sorted(phoenix, key=lambda kind: raw.get(kind, 0.0) - phoenix[kind])
    for kind in kinds[:22]:
        print(f"  {kind:<48} {phoenix[kind]:8.1f} {raw.get(kind, 0.0):6.1f}")


def profile(port: int, config: Config) -> None:
    """Everything above, in order."""
    micro()
    ceilings(port, config)
    profiles(port, config)
    memory(port)
