"""A minimal Phoenix-speaking server, cheap enough not to be the bottleneck.

Run it as ``python -m benchmarks._server``: it binds 127.0.0.1 on a free port, prints
``PORT <n>`` on stdout and serves until killed. It is a plain ``trio.serve_tcp`` server:
wsproto performs the handshake and parses the client's (masked) frames, while every frame the
server sends is encoded by hand, and the streamed broadcasts are pre-encoded once and written in
large ``send_all`` batches.

It answers ``phx_join``, ``phx_leave`` and heartbeats with an empty ok reply, echoes any other
push (the reply's response is the push's payload), and answers the ``stream`` push
(``{"count": N, "size": S}``) with an ok reply followed by N ``new_msg`` broadcasts on the
push's topic.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any, Final

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from ._wire import BROADCAST_EVENT, STREAM_EVENT, broadcast_payload, dumps, server_frame

_RECEIVE_BYTES: Final = 65536
_CHUNK_BYTES: Final = 256 * 1024
_EMPTY_REPLY_EVENTS: Final = frozenset({"phx_join", "phx_leave", "heartbeat"})

_chunks: dict[tuple[str, int], tuple[bytes, int, bytes]] = {}


def _reply(join_ref: Any, ref: Any, topic: Any, response: Any) -> bytes:
    text = dumps([join_ref, ref, topic, "phx_reply", {"response": response, "status": "ok"}])
    return server_frame(text.encode())


def _broadcast_chunk(topic: str, size: int) -> tuple[bytes, int, bytes]:
    """(a batch of pre-encoded frames, frames in it, one frame) for ``topic`` and ``size``."""
    key = (topic, size)
    cached = _chunks.get(key)
    if cached is None:
        text = dumps([None, None, topic, BROADCAST_EVENT, broadcast_payload(size)])
        frame = server_frame(text.encode())
        per_chunk = max(1, _CHUNK_BYTES // len(frame))
        cached = _chunks[key] = (frame * per_chunk, per_chunk, frame)
    return cached


async def _stream(stream: trio.SocketStream, topic: str, count: int, size: int) -> None:
    chunk, per_chunk, frame = _broadcast_chunk(topic, size)
    full, rest = divmod(count, per_chunk)
    for _ in range(full):
        await stream.send_all(chunk)
    if rest:
        await stream.send_all(frame * rest)


def _answer(text: str, streams: list[tuple[str, int, int]]) -> bytes:
    """The reply to one client frame; a ``stream`` request is queued in ``streams``."""
    message = json.loads(text)
    join_ref, ref, topic, event, payload = message[:5]
    response: Any
    if event in _EMPTY_REPLY_EVENTS:
        response = {}
    elif event == STREAM_EVENT:
        streams.append((topic, int(payload["count"]), int(payload.get("size", 0))))
        response = {}
    else:
        response = payload
    return _reply(join_ref, ref, topic, response)


async def _serve_connection(stream: trio.SocketStream) -> None:
    connection = WSConnection(ConnectionType.SERVER)
    parts: list[str] = []
    try:
        while True:
            out = bytearray()
            streams: list[tuple[str, int, int]] = []
            for event in connection.events():
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        out += _answer("".join(parts), streams)
                        parts.clear()
                elif isinstance(event, Request):
                    out += connection.send(AcceptConnection())
                elif isinstance(event, Ping):
                    out += connection.send(event.response())
                elif isinstance(event, CloseConnection):
                    out += connection.send(event.response())
                    await stream.send_all(out)
                    return
            if out:
                await stream.send_all(out)
            for topic, count, size in streams:
                await _stream(stream, topic, count, size)
            data = await stream.receive_some(_RECEIVE_BYTES)
            if not data:
                return
            connection.receive_data(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await stream.aclose()


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


async def _main() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
    port = listeners[0].socket.getsockname()[1]
    print(f"PORT {port}", flush=True)
    await trio.serve_listeners(_serve_connection, listeners)


def main() -> None:
    """Serve until killed."""
    raise_fd_limit()
    try:
        trio.run(_main)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
