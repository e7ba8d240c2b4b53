"""WebSocket wire behaviour, byte for byte, on both servers (Bandit 1.11's rules).

Every test writes raw frames (`scenarios.wire`) and reads everything the server sends until it
ends the TCP stream, so a reason text, a missing close frame, an echo or a late TCP close
all fail the test.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from .conftest import ScenarioServer
from .wire import BINARY, CLOSE, PING, PONG, TEXT, Received, close_frame, frame, open_raw, text

HEARTBEAT: list[Any] = [None, "1", "phoenix", "heartbeat", {}]
LIMIT = 10_000_000  # max_frame_size of both servers


def closed_with(code: int) -> list[Received]:
    """A code-only close frame, then the end of the TCP stream."""
    return [Received(CLOSE, struct.pack("!H", code))]


async def test_ping_is_answered_with_a_pong(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(frame(PING, b"hello"))
        assert await client.receive() == Received(PONG, b"hello")
        await client.send(text(HEARTBEAT))
        assert (await client.reply("1"))[3] == "phx_reply"


async def test_invalid_utf8_text_closes_with_1007(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(frame(TEXT, b'[null,"1","phoenix","heartbeat",{"a":"\xff"}]'))
        assert await client.until_end() == closed_with(1007)


async def test_invalid_utf8_across_fragments_closes_with_1007(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(frame(TEXT, b'[null,"1","phoenix",', fin=False))
        await client.send(frame(0x0, b'"heartbeat",{"a":"\xc3"}]'))
        assert await client.until_end() == closed_with(1007)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_oversize_frame_closes_with_1009_on_its_header(
    server: ScenarioServer, opcode: int
) -> None:
    # The whole frame counts: 14 header bytes (8-byte length, mask) plus the payload.
    async with open_raw(server.url) as client:
        await client.send(frame(opcode, length=LIMIT - 14 + 1)[:14])
        assert await client.until_end() == closed_with(1009)


async def test_frame_of_exactly_the_limit_is_served(server: ScenarioServer) -> None:
    empty = json.dumps([None, "1", "phoenix", "heartbeat", {"p": ""}], separators=(",", ":"))
    pad = "x" * (LIMIT - 14 - len(empty))
    payload = json.dumps([None, "1", "phoenix", "heartbeat", {"p": pad}], separators=(",", ":"))
    async with open_raw(server.url) as client:
        await client.send(frame(TEXT, payload.encode()))
        assert (await client.reply("1"))[4] == {"response": {}, "status": "ok"}


@pytest.mark.parametrize(
    ("code", "reason", "answer"),
    [
        (None, b"", 1000),
        (1000, b"bye", 1000),
        (1001, b"", 1000),
        (1011, b"", 1000),
        (3000, b"app", 1000),
        (4000, b"bye now", 1000),
        (999, b"", 1002),
        (1004, b"", 1002),
        (1005, b"", 1002),
        (1006, b"", 1002),
        (1012, b"", 1002),
        (2999, b"", 1002),
        (1000, b"\xff", 1002),
    ],
)
async def test_client_close_is_answered_code_only(
    server: ScenarioServer, code: int | None, reason: bytes, answer: int
) -> None:
    async with open_raw(server.url) as client:
        await client.send(close_frame(code, reason))
        assert await client.until_end() == closed_with(answer)


async def test_one_byte_close_payload_is_a_protocol_error(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(frame(CLOSE, b"\x03"))
        assert await client.until_end() == closed_with(1002)


async def test_reserved_opcode_is_a_protocol_error(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(frame(0x3, b"x"))
        assert await client.until_end() == closed_with(1002)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([frame(0x0, b"x")], 1002),  # a continuation with nothing to continue
        ([frame(TEXT, b"[", fin=False), frame(TEXT, b"]")], 1002),  # a new message mid-way
        ([frame(TEXT, b"[", fin=False), frame(0x0, b"", fin=False)], 1008),  # empty, not final
        ([frame(TEXT | 0x40, b"[]")], 1002),  # RSV1 (compressed) without permessage-deflate
        ([frame(PING, b"x", fin=False)], 1002),  # a fragmented control frame
    ],
    ids=["lone-continuation", "text-in-fragments", "empty-continuation", "rsv1", "split-ping"],
)
async def test_fragmentation_and_header_errors(
    server: ScenarioServer, frames: list[bytes], code: int
) -> None:
    async with open_raw(server.url) as client:
        await client.send(b"".join(frames))
        assert await client.until_end() == closed_with(code)


async def test_fragmented_message_is_reassembled(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(frame(TEXT, b'[null,"1","phoe', fin=False))
        await client.send(frame(PING, b"mid"))
        await client.send(frame(0x0, b'nix","heartbeat",', fin=False))
        await client.send(frame(0x0, b"{}]"))
        assert await client.receive() == Received(PONG, b"mid")
        assert (await client.reply("1"))[4] == {"response": {}, "status": "ok"}


async def test_server_close_ends_tcp_without_waiting_for_the_reply(
    server: ScenarioServer,
) -> None:
    # Phoenix 1.7 disconnects a socket id with 1000; the stream ends although the client
    # never answers the close frame.
    async with open_raw(server.url, "vsn=2.0.0&user=wire") as client:
        await client.send(text(["1", "1", "echo:w", "phx_join", {}]))
        await client.reply("1")
        await client.send(text(["1", "2", "echo:w", "disconnect", {}]))
        assert await client.until_end() == closed_with(1000)


async def test_unmasked_frame_is_swallowed_until_the_idle_timeout(short_idle_url: str) -> None:
    # Bandit never parses an unmasked frame: it waits for more, forever, so nothing the
    # client sends afterwards is answered, and the idle timeout (1 s here) closes with 1002.
    async with open_raw(short_idle_url) as client:
        await client.send(text(HEARTBEAT))
        assert (await client.reply("1"))[3] == "phx_reply"
        await client.send(frame(TEXT, json.dumps(HEARTBEAT).encode(), masked=False))
        await client.send(text([None, "2", "phoenix", "heartbeat", {}]))
        await client.send(frame(PING, b"?"))
        assert await client.until_end() == closed_with(1002)
