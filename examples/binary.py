"""Binary payloads: push ``bytes``, get ``bytes`` back, receive binary broadcasts.

With the V2 serializer (the default) a ``bytes`` payload travels as a binary WebSocket frame,
as phoenix.js sends an ``ArrayBuffer``: no base64, no JSON. Binary replies and broadcasts
arrive as ``bytes``. The embedded server's ``echo:*`` channel echoes a binary push as a binary
reply and broadcasts bytes on request. Run it: ``python examples/binary.py``.
"""

from __future__ import annotations

import hashlib

import trio

from trio_phoenix import open_socket
from trio_phoenix.testing import demo_channels, open_test_server


async def main() -> None:
    """Round-trip some bytes, then receive a binary broadcast."""
    async with (
        open_test_server(demo_channels()) as server,
        open_socket(server.url) as socket,
        socket.channel("echo:files") as channel,
        channel.subscribe("chunk") as chunks,
    ):
        data = bytes(range(256)) * 4  # 1 KiB that is not text
        reply = await channel.push("echo", data)  # a binary frame out, a binary reply back
        print(f"pushed {len(data)} bytes, got {type(reply).__name__} of {len(reply)} bytes back")
        print(f"same bytes: {reply == data} (sha256 {hashlib.sha256(reply).hexdigest()[:16]}...)")

        # Ask the server to broadcast bytes on the topic: they arrive as a bytes payload.
        await channel.push("broadcast_binary", {"event": "chunk", "bytes": [0xCA, 0xFE, 0x00]})
        message = await chunks.receive()
        print(f"broadcast {message.event!r}: {message.payload!r}")


if __name__ == "__main__":
    trio.run(main)
