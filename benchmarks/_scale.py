"""Many sockets in one process: connect + join time, memory per socket, idle CPU, and the
time to close them all at once.

Run one variant per fresh process (``python -m benchmarks._scale phoenix PORT N ...``) so
neither variant's allocations count against the other; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import trio
import trio_websocket

import trio_phoenix

from ._harness import cpu_seconds, rss_bytes
from ._server import raise_fd_limit
from ._wire import TOPIC, encode, mount_url, raw_url

#: Connections opened at the same time (more overflow the listen backlog and wait on SYN
#: retransmits, which would measure the kernel, not the client).
CONCURRENT_CONNECTS = 200


async def _open_phoenix(
    nursery: trio.Nursery, port: int, heartbeat: float, keep: list[Any]
) -> None:
    socket = await trio_phoenix.connect_socket(
        nursery, mount_url(port), heartbeat_interval=heartbeat
    )
    channel = socket.channel(TOPIC)
    await channel.join()
    keep.append((socket, channel))


async def _raw_heartbeats(ws: Any, heartbeat: float) -> None:
    ref = 1
    try:
        while True:
            await trio.sleep(heartbeat)
            ref += 1
            await ws.send_message(encode(None, str(ref), "phoenix", "heartbeat", {}))
            json.loads(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        return  # closed by the benchmark


async def _open_raw(nursery: trio.Nursery, port: int, heartbeat: float, keep: list[Any]) -> None:
    ws = await trio_websocket.connect_websocket_url(nursery, raw_url(port))
    await ws.send_message(encode("1", "1", TOPIC, "phx_join", {}))
    json.loads(await ws.get_message())
    nursery.start_soon(_raw_heartbeats, ws, heartbeat)
    keep.append(ws)


async def _measure(variant: str, port: int, sockets: int, heartbeat: float, idle: float) -> None:
    opener = _open_phoenix if variant == "phoenix" else _open_raw
    limiter = trio.CapacityLimiter(CONCURRENT_CONNECTS)
    keep: list[Any] = []

    async def open_one(nursery: trio.Nursery) -> None:
        async with limiter:
            await opener(nursery, port, heartbeat, keep)

    async with trio.open_nursery() as nursery:
        # Warm up: the first connection pays for lazy imports and caches, not per socket.
        async with trio.open_nursery() as warmup:
            await opener(warmup, port, heartbeat, [])
            warmup.cancel_scope.cancel()
        gc.collect()
        rss_before = rss_bytes()
        start = time.perf_counter()
        async with trio.open_nursery() as opening:
            for _ in range(sockets):
                opening.start_soon(open_one, nursery)
        connect_seconds = time.perf_counter() - start
        gc.collect()
        rss_after = rss_bytes()
        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        await trio.sleep(idle)
        cpu_used = cpu_seconds() - cpu_before
        wall = time.perf_counter() - wall_before
        start = time.perf_counter()
        async with trio.open_nursery() as closing:
            for kept in keep:
                closing.start_soon(kept[0].aclose if variant == "phoenix" else kept.aclose)
        close_seconds = time.perf_counter() - start
        result = {
            "sockets": len(keep),
            "connect_seconds": connect_seconds,
            "close_seconds": close_seconds,
            "bytes_per_socket": (rss_after - rss_before) / sockets,
            "idle_cpu_percent": 100.0 * cpu_used / wall,
        }
        print(json.dumps(result), flush=True)
        nursery.cancel_scope.cancel()


def main() -> None:
    """Parse the command line and measure one variant."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._scale")
    parser.add_argument("variant", choices=("phoenix", "raw"))
    parser.add_argument("port", type=int)
    parser.add_argument("sockets", type=int)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--idle", type=float, default=3.0)
    args = parser.parse_args()
    limit = raise_fd_limit()
    if limit < args.sockets + 64:
        raise SystemExit(f"the file-descriptor limit ({limit}) is too low for {args.sockets}")
    trio.run(_measure, args.variant, args.port, args.sockets, args.heartbeat, args.idle)


if __name__ == "__main__":
    main()
