"""permessage-deflate (``compress=True``) against a raw server: negotiation, compressed
frames, and a compression bomb, which must end the connection with 1009 (counted as a
disconnect, then a reconnect) without ever holding the inflated message. A compressed frame
that spans reads is not taken for invalid UTF-8 (its bytes are deflated).

The real Phoenix app's ``/compressed`` mount is tested in ``scenarios/test_compression.py``.
"""

from __future__ import annotations

import codecs
import gc
import json
import random
import tracemalloc
import zlib

import pytest
import trio
import trio.testing

from tests.client.raw_hostile import frame, open_raw_server
from tests.helpers import LIMIT, REAL_LIMIT, in_memory_transport
from trio_phoenix import Connected, ConnectError, Disconnected, open_socket
from trio_phoenix._handshake import open_transport
from trio_phoenix._transport import TransportClosed

TOPIC = "room:lobby"


def deflate(data: bytes) -> bytes:
    """One permessage-deflate message payload (RFC 7692: the final empty block removed)."""
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    return payload[:-4]


def compressed_frame(data: bytes, opcode: int = 0x1) -> bytes:
    """A server frame with RSV1 set (a compressed message)."""
    plain = frame(opcode, deflate(data))
    return bytes([plain[0] | 0x40]) + plain[1:]


@pytest.mark.parametrize("offered", [True, False])
async def test_compression_is_used_when_offered_and_accepted(offered: bool) -> None:
    async with open_raw_server() as server:
        server.extensions = b"permessage-deflate" if offered else b""
        server.serving = False
        with trio.fail_after(REAL_LIMIT):
            transport = await open_transport(
                f"{server.url}/websocket", max_message_size=1_000_000, compress=True
            )
            try:
                assert transport.compressed is offered
                await server.connected.wait()
                connection = server.connections[0]
                message = json.dumps({"body": "x" * 10_000}).encode()
                plain = frame(0x1, message)
                await connection.send_raw(compressed_frame(message) if offered else plain)
                assert await transport.receive_batch() == [message.decode()]
                await transport.send_many(["y" * 10_000])
                assert await connection.read_frame() == (0x1, b"y" * 10_000)
                assert connection.compressed_frames == (1 if offered else 0)
                if offered:
                    assert connection.compressed_bytes < 200
            finally:
                await transport.abort()


async def test_without_compress_no_extension_is_offered() -> None:
    """A server that answers with an extension the client did not offer fails the handshake."""
    async with open_raw_server() as server:
        server.extensions = b"permessage-deflate"
        server.serving = False
        with trio.fail_after(REAL_LIMIT), pytest.raises(ConnectError, match="handshake"):
            await open_transport(f"{server.url}/websocket", max_message_size=1_000_000)


async def test_a_compression_bomb_closes_with_1009_and_is_never_inflated() -> None:
    """50 MB of zeros deflated to ~50 KB, against max_message_size=1 MB: the connection ends
    with 1009 (a Disconnected event, then the socket reconnects), and the client's memory
    never holds the inflated message."""
    bomb = compressed_frame(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    async with open_raw_server(topics_to_join=1) as server:
        server.extensions = b"permessage-deflate"
        with trio.fail_after(REAL_LIMIT):
            async with (
                open_socket(server.url, compress=True, max_message_size=1_000_000) as socket,
                socket.lifecycle() as events,
                socket.channel(TOPIC) as channel,
            ):
                await server.connections[0].joined.wait()
                gc.collect()
                tracemalloc.start()
                try:
                    await server.connections[0].send_raw(bomb)
                    while not isinstance(event := await events.receive(), Disconnected):
                        pass
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                assert event.code == 1009
                assert "max_message_size" in (event.reason or "")
                assert peak < 5_000_000, peak
                while not isinstance(await events.receive(), Connected):
                    pass
                await channel.wait_joined()
                assert socket.statistics().connects == 2
                assert await channel.push("echo", {"after": "bomb"}) == {"after": "bomb"}


def is_utf8_prefix(data: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data)
    except UnicodeDecodeError:
        return False
    return True


async def test_compressed_text_that_spans_reads_is_inflated_not_validated_as_it_comes(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Deflated bytes are not UTF-8: the text of a compressed frame (RSV1), and of the
    continuations of a compressed message, is validated once inflated, when it is complete.
    An uncompressed message on the same connection is validated as it comes."""
    words = random.Random(7).choices(["snow", "\u2603", "ice", "\u00e9t\u00e9", "42"], k=2000)
    text = json.dumps({"body": " ".join(words)}).encode()
    deflated = deflate(text)
    assert len(deflated) > 1000
    assert not is_utf8_prefix(deflated[:97])
    whole = bytes([0xC1]) + frame(0x1, deflated)[1:]  # FIN, RSV1, text
    half = len(deflated) // 2
    fragments = (
        bytes([0x41])
        + frame(0x1, deflated[:half], fin=False)[1:]  # RSV1, text, not FIN
        + frame(0x9, b"")
        + frame(0x0, deflated[half:])  # the continuation has no RSV1
    )
    plain_invalid = frame(0x1, b"plain \xff" + b"x" * 300)
    transport, server = in_memory_transport(compressed=True)
    received: list[object] = []

    async def read() -> None:
        try:
            while True:
                received.extend(await transport.receive_batch())
        except TransportClosed as closed:
            received.append(closed.code)

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for data in (whole, fragments):
                for start in range(0, len(data), 97):
                    await server.send_all(data[start : start + 97])
                    await trio.testing.wait_all_tasks_blocked()
                    assert transport.closed is None
            assert received == [text.decode(), text.decode()]
            await server.send_all(plain_invalid[:20])  # the rest never comes
    assert received == [text.decode(), text.decode(), 1007]
    assert trio.current_time() == 0
