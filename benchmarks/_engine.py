"""The ``engine`` group: the rows that chose the transport engine, and the JSON and compression
rows (issue 14 item 1 and 7, issue 15 item 2). Each row names its candidate and its baseline;
in the table, the ``trio_phoenix`` column is the candidate and the ``raw`` column the baseline.

* in memory: our frames (64 KiB reads of server frames) parsed by websockets' sans-I/O
  ``ClientProtocol`` and by wsproto, each message then ``json.loads``-ed: the engines alone;
* end to end: trio_phoenix's inbound rows with ``transport="websocket"`` (our engine) and
  ``transport="trio-websocket"``, against the benchmark server;
* 1 KB inbound with the orjson decoder (the ``fast`` extra) and with the stdlib's;
* a ~100 KB JSON message with permessage-deflate and without: bytes on the wire, and the
  client's CPU time to receive (inflate + decode) and to send (encode + deflate) one, in memory.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

import trio
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import State
from websockets.uri import parse_uri
from wsproto.connection import Connection, ConnectionType

from trio_phoenix.proto import _serializer

from . import _clients as clients
from ._report import Row
from ._wire import KB, SMALL, TOPIC, broadcast_payload, encode, server_frame

_READ = 65536


def _reads(size: int, count: int) -> tuple[bytes, int]:
    """One 64 KiB read's worth of broadcast frames, and how many reads make ``count``."""
    frame = server_frame(encode(None, None, TOPIC, "new_msg", broadcast_payload(size)).encode())
    per_read = _READ // len(frame)
    return frame * per_read, max(1, -(-count // per_read))


def parse_websockets(size: int, count: int) -> float:
    """Messages per second: websockets' ClientProtocol + ``json.loads``."""
    chunk, reads = _reads(size, count)
    protocol = ClientProtocol(parse_uri("ws://bench/"), state=State.OPEN, max_size=10_000_000)
    loads = json.loads
    received = 0
    start = time.perf_counter()
    for _ in range(reads):
        protocol.receive_data(chunk)
        for event in protocol.events_received():
            loads(str(event.data, "utf-8"))  # type: ignore[union-attr]
            received += 1
    return received / (time.perf_counter() - start)


def parse_wsproto(size: int, count: int) -> float:
    """Messages per second: wsproto's frame protocol + ``json.loads``."""
    chunk, reads = _reads(size, count)
    connection = Connection(ConnectionType.CLIENT)
    loads = json.loads
    received = 0
    start = time.perf_counter()
    for _ in range(reads):
        connection.receive_data(chunk)
        for event in connection.events():
            loads(event.data)  # type: ignore[attr-defined]
            received += 1
    return received / (time.perf_counter() - start)


def _large_payload() -> dict[str, Any]:
    """About 100 KB of compact JSON: rows as an API would list them."""
    return {
        "rows": [
            {
                "id": n,
                "name": f"user {n}",
                "email": f"user{n}@example.com",
                "active": n % 3 != 0,
                "score": round(n * 1.37 % 100, 2),
                "tags": ["alpha", "beta"] if n % 2 else ["gamma"],
            }
            for n in range(900)
        ]
    }


LARGE_FRAME = encode(None, None, TOPIC, "new_msg", _large_payload())


def _deflate_extension() -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )


def _protocol(compressed: bool) -> ClientProtocol:
    protocol = ClientProtocol(parse_uri("ws://bench/"), state=State.OPEN, max_size=10_000_000)
    if compressed:
        protocol.extensions = [_deflate_extension()]
    return protocol


def _server_frames(count: int, compressed: bool) -> list[bytes]:
    """``count`` copies of the large message as a server sends them (one deflate context)."""
    data = LARGE_FRAME.encode()
    if not compressed:
        return [server_frame(data)] * count
    compressor = zlib.compressobj(wbits=-15)
    frames = []
    for _ in range(count):
        payload = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        frame = server_frame(payload)
        frames.append(bytes([frame[0] | 0x40]) + frame[1:])
    return frames


def wire_bytes(compressed: bool) -> float:
    """Bytes on the wire for one large message (the client's frame; the server's is alike)."""
    protocol = _protocol(compressed)
    protocol.send_text(LARGE_FRAME.encode())
    protocol.send_text(LARGE_FRAME.encode())  # the second one: the context has warmed up
    return float(len(protocol.data_to_send()[-1]))


def receive_cpu(compressed: bool, count: int) -> float:
    """Microseconds of CPU per large message received: parse, inflate, decode JSON."""
    frames = _server_frames(count, compressed)
    protocol = _protocol(compressed)
    start = time.process_time()
    for frame in frames:
        protocol.receive_data(frame)
        for event in protocol.events_received():
            json.loads(str(event.data, "utf-8"))  # type: ignore[union-attr]
    return (time.process_time() - start) / count * 1e6


def send_cpu(compressed: bool, count: int) -> float:
    """Microseconds of CPU per large message sent: JSON-encode, deflate, frame."""
    payload = json.loads(LARGE_FRAME)
    protocol = _protocol(compressed)
    start = time.process_time()
    for _ in range(count):
        protocol.send_text(json.dumps(payload, separators=(",", ":")).encode())
        protocol.data_to_send()
    return (time.process_time() - start) / count * 1e6


async def inbound_decoder(port: int, count: int, size: int, decoder: str) -> float:
    """trio_phoenix's inbound rate with the given JSON decoder."""
    load = _serializer._load_orjson if decoder == "orjson" else _serializer._load_stdlib
    saved = _serializer._load
    _serializer._load = load
    try:
        return await clients.inbound_phoenix(port, count, size)
    finally:
        _serializer._load = saved


#: A nested payload of about 1 KB (compact JSON), as an API sends a list of records.
NESTED_FRAME = encode(
    None,
    None,
    TOPIC,
    "new_msg",
    {"items": [{"id": n, "name": f"item {n}", "ok": True, "v": n * 1.5} for n in range(20)]},
)


def decode_rate(load: Callable[[str], Any], count: int) -> float:
    """Frames per second through a serializer's JSON decoder, in memory."""
    frame = NESTED_FRAME
    start = time.perf_counter()
    for _ in range(count):
        load(frame)
    return count / (time.perf_counter() - start)


def _pairs(
    runs: int, candidate: Callable[[], float], baseline: Callable[[], float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    first: list[float] = []
    second: list[float] = []
    for run in range(runs):
        if run % 2:
            second.append(baseline())
            first.append(candidate())
        else:
            first.append(candidate())
            second.append(baseline())
    return tuple(first), tuple(second)


def engine_rows(port: int, runs: int, small: int, kb: int, orjson: bool) -> list[Row]:
    """Every row of the group (``orjson``: whether the orjson rows can run)."""
    rows = []
    for size, count, label in ((SMALL, small, "small"), (KB, kb, "1 KB")):
        websockets_rate, wsproto_rate = _pairs(
            runs, partial(parse_websockets, size, count), partial(parse_wsproto, size, count)
        )
        rows.append(
            Row(
                name=f"engine in memory, {label}: websockets / wsproto",
                unit="msgs/s",
                phoenix=websockets_rate,
                raw=wsproto_rate,
                higher_is_better=True,
                note="64 KiB reads of server frames, each message json.loads-ed",
            )
        )
    for size, count, label in ((SMALL, small, "small"), (KB, kb, "1 KB")):
        ours, theirs = _pairs(
            runs,
            partial(trio.run, clients.inbound_phoenix, port, count, size),
            partial(trio.run, clients.inbound_phoenix, port, count, size, "trio-websocket"),
        )
        rows.append(
            Row(
                name=f"inbound {label}: transport websocket / trio-websocket",
                unit="msgs/s",
                phoenix=ours,
                raw=theirs,
                higher_is_better=True,
                note="trio_phoenix end to end over each transport",
            )
        )
    if orjson:
        fast, stdlib = _pairs(
            runs,
            partial(trio.run, inbound_decoder, port, kb, KB, "orjson"),
            partial(trio.run, inbound_decoder, port, kb, KB, "json"),
        )
        decode_fast, decode_stdlib = _pairs(
            runs,
            partial(decode_rate, _serializer._load_orjson, kb),
            partial(decode_rate, _serializer._load_stdlib, kb),
        )
        rows.append(
            Row(
                name=f"decode nested {len(NESTED_FRAME)} B: orjson / json",
                unit="frames/s",
                phoenix=decode_fast,
                raw=decode_stdlib,
                higher_is_better=True,
                note="the serializer's JSON decoder alone, in memory, 20 records",
            )
        )
        rows.append(
            Row(
                name="inbound 1 KB: orjson / json decoder",
                unit="msgs/s",
                phoenix=fast,
                raw=stdlib,
                higher_is_better=True,
                note="trio_phoenix end to end, the fast extra's decoder against the stdlib's",
            )
        )
    size = len(LARGE_FRAME) // 1000
    messages = 200
    receive_deflate, receive_plain = _pairs(
        runs, partial(receive_cpu, True, messages), partial(receive_cpu, False, messages)
    )
    send_deflate, send_plain = _pairs(
        runs, partial(send_cpu, True, messages), partial(send_cpu, False, messages)
    )
    rows += [
        Row(
            name=f"{size} KB JSON: wire bytes, deflate / plain",
            unit="bytes",
            phoenix=(wire_bytes(True),) * runs,
            raw=(wire_bytes(False),) * runs,
            higher_is_better=False,
            note="one message's frame, compressed with context takeover",
        ),
        Row(
            name=f"{size} KB JSON: CPU to receive, deflate / plain",
            unit="us",
            phoenix=receive_deflate,
            raw=receive_plain,
            higher_is_better=False,
            note="parse + inflate + json.loads per message, in memory",
        ),
        Row(
            name=f"{size} KB JSON: CPU to send, deflate / plain",
            unit="us",
            phoenix=send_deflate,
            raw=send_plain,
            higher_is_better=False,
            note="json.dumps + deflate + frame per message, in memory",
        ),
    ]
    return rows
