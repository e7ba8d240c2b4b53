"""The measured workloads, each written twice: with trio_phoenix and with raw trio-websocket
(inbound also with raw websockets, the asyncio library).

The raw versions do the equivalent work by hand and nothing more: ``get_message`` +
``json.loads`` for every frame, ``json.dumps`` + ``send_message`` for every push, with
trio-websocket's default buffers (websockets: ``recv()`` + ``json.loads``, its defaults but
no compression, which the benchmark server does not offer anyway).
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio
import trio_websocket

import trio_phoenix
from trio_phoenix._transports import TransportName

from ._wire import (
    BROADCAST_EVENT,
    ECHO_EVENT,
    ECHO_PAYLOAD,
    STREAM_EVENT,
    TOPIC,
    encode,
    mount_url,
    raw_url,
)

_loads = json.loads
_perf_ns = time.perf_counter_ns


def _open_socket(
    port: int, transport: TransportName = "websocket"
) -> AbstractAsyncContextManager[trio_phoenix.Socket]:
    return trio_phoenix.open_socket(mount_url(port), transport=transport)


async def _raw_join(ws: Any, topic: str = TOPIC, join_ref: str = "1") -> None:
    await ws.send_message(encode(join_ref, join_ref, topic, "phx_join", {}))
    reply = _loads(await ws.get_message())
    if reply[4]["status"] != "ok":
        raise RuntimeError(f"join refused: {reply!r}")


# -- inbound: N broadcasts delivered to a consumer ------------------------------------------


async def inbound_phoenix(
    port: int, count: int, size: int, transport: TransportName = "websocket"
) -> float:
    """Broadcasts per second delivered to a ``channel.subscribe()`` consumer."""
    async with _open_socket(port, transport) as socket:
        channel = socket.channel(TOPIC)
        async with (
            # Room for every broadcast, in count and in bytes: the rate is measured, not drops.
            channel.subscribe(
                BROADCAST_EVENT, max_buffer=count + 1, max_buffer_bytes=(count + 1) * (size + 256)
            ) as messages,
            channel,
        ):
            received = 0
            start = time.perf_counter()
            await channel.push(STREAM_EVENT, {"count": count, "size": size})
            async for _message in messages:
                received += 1
                if received == count:
                    break
            elapsed = time.perf_counter() - start
    return count / elapsed


async def inbound_raw(port: int, count: int, size: int) -> float:
    """Broadcasts per second through ``get_message`` + ``json.loads``."""
    async with trio_websocket.open_websocket_url(raw_url(port)) as ws:
        await _raw_join(ws)
        received = 0
        start = time.perf_counter()
        await ws.send_message(
            encode("1", "2", TOPIC, STREAM_EVENT, {"count": count, "size": size})
        )
        get_message = ws.get_message
        while received < count:
            message = _loads(await get_message())
            if message[3] == BROADCAST_EVENT:
                received += 1
        elapsed = time.perf_counter() - start
    return count / elapsed


# -- round trip: sequential push -> reply -----------------------------------------------------


async def round_trip_phoenix(port: int, count: int, warmup: int) -> list[int]:
    """Nanoseconds of each of ``count`` sequential ``channel.push`` calls."""
    samples: list[int] = []
    async with (
        _open_socket(port) as socket,
        socket.channel(TOPIC) as channel,
    ):
        push = channel.push
        for _ in range(warmup):
            await push(ECHO_EVENT, ECHO_PAYLOAD)
        for _ in range(count):
            start = _perf_ns()
            await push(ECHO_EVENT, ECHO_PAYLOAD)
            samples.append(_perf_ns() - start)
    return samples


async def round_trip_raw(port: int, count: int, warmup: int) -> list[int]:
    """Nanoseconds of each of ``count`` sequential push frames and their matching reply."""
    samples: list[int] = []
    async with trio_websocket.open_websocket_url(raw_url(port)) as ws:
        await _raw_join(ws)
        send, get_message = ws.send_message, ws.get_message
        ref = 1
        for index in range(warmup + count):
            start = _perf_ns()
            ref += 1
            wanted = str(ref)
            await send(encode("1", wanted, TOPIC, ECHO_EVENT, ECHO_PAYLOAD))
            while True:
                reply = _loads(await get_message())
                if reply[1] == wanted:
                    break
            if index >= warmup:
                samples.append(_perf_ns() - start)
    return samples


# -- pipelined pushes -------------------------------------------------------------------------


async def pipelined_phoenix(port: int, count: int, in_flight: int) -> float:
    """Pushes per second: ``in_flight`` tasks share ``count`` pushes on one channel."""
    async with (
        _open_socket(port) as socket,
        socket.channel(TOPIC) as channel,
    ):
        push = channel.push

        async def worker(pushes: int) -> None:
            for _ in range(pushes):
                await push(ECHO_EVENT, ECHO_PAYLOAD)

        share, extra = divmod(count, in_flight)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for index in range(in_flight):
                nursery.start_soon(worker, share + (index < extra))
        elapsed = time.perf_counter() - start
    return count / elapsed


async def pipelined_raw(port: int, count: int, in_flight: int) -> float:
    """Pushes per second: a sender with a window of ``in_flight`` and a reply reader."""
    async with trio_websocket.open_websocket_url(raw_url(port)) as ws:
        await _raw_join(ws)
        window = trio.Semaphore(in_flight)
        pending: set[str] = set()

        async def sender() -> None:
            for ref in range(2, count + 2):
                await window.acquire()
                wanted = str(ref)
                pending.add(wanted)
                await ws.send_message(encode("1", wanted, TOPIC, ECHO_EVENT, ECHO_PAYLOAD))

        async def reader() -> None:
            received = 0
            while received < count:
                reply = _loads(await ws.get_message())
                if reply[1] in pending:
                    pending.remove(reply[1])
                    received += 1
                    window.release()

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(reader)
        elapsed = time.perf_counter() - start
    return count / elapsed


# -- one socket, many channels ----------------------------------------------------------------


async def channels_phoenix(port: int, count: int) -> float:
    """Seconds to join ``count`` channels concurrently on one connected socket."""
    async with _open_socket(port) as socket:
        channels = [socket.channel(f"room:{index}") for index in range(count)]
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for channel in channels:
                nursery.start_soon(channel.join)
        elapsed = time.perf_counter() - start
    return elapsed


async def channels_raw(port: int, count: int) -> float:
    """Seconds to send ``count`` joins on one connection and read every reply."""
    async with trio_websocket.open_websocket_url(raw_url(port)) as ws:
        pending: set[str] = set()
        start = time.perf_counter()
        for index in range(count):
            ref = str(index + 1)
            pending.add(ref)
            await ws.send_message(encode(ref, ref, f"room:{index}", "phx_join", {}))
        while pending:
            reply = _loads(await ws.get_message())
            pending.discard(reply[1])
        elapsed = time.perf_counter() - start
    return elapsed


# -- the raw websockets (asyncio) baseline ----------------------------------------------------


def inbound_websockets(port: int, count: int, size: int) -> float:
    """Broadcasts per second through websockets' asyncio client: ``recv()`` + ``json.loads``."""
    return asyncio.run(_inbound_websockets(port, count, size))


async def _inbound_websockets(port: int, count: int, size: int) -> float:
    import websockets.asyncio.client

    async with websockets.asyncio.client.connect(raw_url(port), compression=None) as ws:
        await ws.send(encode("1", "1", TOPIC, "phx_join", {}))
        reply = _loads(await ws.recv())
        if reply[4]["status"] != "ok":
            raise RuntimeError(f"join refused: {reply!r}")
        received = 0
        start = time.perf_counter()
        await ws.send(encode("1", "2", TOPIC, STREAM_EVENT, {"count": count, "size": size}))
        recv = ws.recv
        while received < count:
            message = _loads(await recv())
            if message[3] == BROADCAST_EVENT:
                received += 1
        elapsed = time.perf_counter() - start
    return count / elapsed


# -- a burst to a consumer, default options ---------------------------------------------------


async def burst_phoenix(port: int, count: int) -> tuple[int, int]:
    """(delivered, dropped) of ``count`` small broadcasts to an ``async for`` consumer of a
    subscription with the default options (``max_buffer=1000``, ``overflow="raise"``)."""
    async with _open_socket(port) as socket:
        channel = socket.channel(TOPIC)
        async with channel.subscribe(BROADCAST_EVENT) as messages, channel:
            delivered = dropped = 0
            await channel.push(STREAM_EVENT, {"count": count, "size": 0})
            while delivered + dropped < count:
                try:
                    async for _message in messages:
                        delivered += 1
                        if delivered + dropped == count:
                            break
                except trio_phoenix.SubscriptionOverflow as gap:
                    dropped += gap.dropped
    return delivered, dropped
