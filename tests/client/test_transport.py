"""The WebSocket transport: opening (refused, rejected, TLS), frames both ways, and close codes.

A rejected or failed handshake must raise ``ConnectError`` from ``open_transport`` itself
(not from the caller's nursery) and leave no socket behind: pyproject turns warnings into
errors, and these tests also collect garbage and look for ``ResourceWarning`` explicitly.
"""

from __future__ import annotations

import gc
import socket as stdlib_socket
import ssl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from trio_websocket import WebSocketRequest, serve_websocket

from tests.client.raw_hostile import frame, open_raw_server
from tests.helpers import LIMIT, REAL_LIMIT, in_memory_transport
from trio_phoenix import ConnectError
from trio_phoenix._handshake import open_transport
from trio_phoenix._transport import Transport, TransportClosed
from trio_phoenix.testing import PhoenixServerFactory, Reject, TestServer, demo_channels

MAX = 10_000_000


@contextmanager
def no_resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Fail if anything in the block leaves an unclosed resource for the garbage collector."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


def endpoint(server: TestServer, query: str = "vsn=2.0.0") -> str:
    return f"{server.url}/websocket?{query}"


async def test_the_leak_detector_works() -> None:
    with pytest.raises(AssertionError, match="unclosed"), no_resource_warnings():
        stdlib_socket.socket()


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/socket/websocket?vsn=2.0.0", 403, b"not you"),
        ("/socket/websocket?vsn=9.0.0", 403, b""),
        ("/elsewhere/websocket?vsn=2.0.0", 404, b""),
    ],
)
async def test_a_rejected_handshake_raises_connect_error_and_leaks_nothing(
    phoenix_server_factory: PhoenixServerFactory,
    path: str,
    status: int,
    body: bytes,
    autojump_clock: trio.abc.Clock,
) -> None:
    def connect(params: dict[str, Any], info: Any) -> Reject | None:
        return Reject(403, body) if body else None

    server = await phoenix_server_factory(demo_channels(), connect=connect)
    url = f"ws://127.0.0.1:{server.port}{path}"
    with trio.fail_after(REAL_LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            with pytest.raises(ConnectError) as info:
                await open_transport(url, max_message_size=MAX)
            # The caller's nursery is not poisoned: it keeps working.
            nursery.start_soon(trio.sleep, 0)
        assert type(info.value) is ConnectError
        assert info.value.status == status
        assert (info.value.body or b"") == body
        assert server.statistics().upgrades_rejected == 1
        assert server.accepted_connections == []


async def test_a_refused_connection_raises_connect_error_without_status(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket/websocket?vsn=2.0.0&token=s3cret"
    with trio.fail_after(REAL_LIMIT), no_resource_warnings():
        async with trio.open_nursery():
            with pytest.raises(ConnectError) as info:
                await open_transport(url, max_message_size=MAX)
    assert info.value.status is None
    assert "cannot connect" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


async def test_frames_both_ways_and_close_codes(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(REAL_LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            transport = await open_transport(endpoint(phoenix_server), max_message_size=MAX)
            assert isinstance(transport, Transport)
            assert transport.subprotocol is None
            still_open = transport.closed
            assert still_open is None
            await transport.send_many(['[null,"1","phoenix","heartbeat",{}]'])
            assert await transport.receive_batch() == [
                '[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]'
            ]
            phoenix_server.accepted_connections[0].close(4000, "custom")
            with pytest.raises(TransportClosed) as info:
                await transport.receive_batch()
            assert (info.value.code, info.value.reason) == (4000, "custom")
            closed = transport.closed
            assert closed is not None
            assert closed.code == 4000
            with pytest.raises(TransportClosed):
                await transport.send_many(["[]"])
            await transport.abort()
            nursery.cancel_scope.cancel()


async def test_a_dropped_connection_closes_with_1006(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(REAL_LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            transport = await open_transport(endpoint(phoenix_server), max_message_size=MAX)
            (await phoenix_server.wait_connections(1)).drop()
            with pytest.raises(TransportClosed) as info:
                await transport.receive_batch()
            assert info.value.code == 1006
            await transport.abort()
            nursery.cancel_scope.cancel()


async def test_client_close_sends_the_code(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(REAL_LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            transport = await open_transport(
                endpoint(phoenix_server),
                subprotocols=["phoenix"],
                headers=[("X-Probe", "1")],
                max_message_size=MAX,
            )
            connection = await phoenix_server.wait_connections(1)
            assert connection.connect_info.header("x-probe") == "1"
            await transport.aclose(1000, "done")
            await connection.wait_closed()
            assert (connection.close_code, connection.close_reason) == (1000, "done")
            await transport.abort()
            nursery.cancel_scope.cancel()


async def test_a_reader_that_reads_during_aclose_waits_for_its_end(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    # aclose() reads to the server's close when no reader is reading; a reader that comes
    # back meanwhile (it was between two reads) must not read the stream too.
    with trio.fail_after(REAL_LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            transport = await open_transport(endpoint(phoenix_server), max_message_size=MAX)
            connection = await phoenix_server.wait_connections(1)
            outcome: list[int | None] = []

            async def read() -> None:
                with pytest.raises(TransportClosed) as info:
                    await transport.receive_batch()
                outcome.append(info.value.code)

            connection.stall()  # the server's close will not come
            nursery.start_soon(transport.aclose, 1000, "bye")
            await trio.testing.wait_all_tasks_blocked()  # aclose is reading
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []
            await transport.abort()  # what the socket does once close_timeout has passed
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == [1000]
            nursery.cancel_scope.cancel()


@pytest.fixture
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def _echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        await ws.send_message(await ws.get_message())
    finally:
        await ws.aclose()


async def test_wss_verifies_certificates(
    certificate_authority: trustme.CA, autojump_clock: trio.abc.Clock
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    trusting = ssl.create_default_context()
    certificate_authority.configure_trust(trusting)
    with trio.fail_after(REAL_LIMIT), no_resource_warnings():
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, _echo, "127.0.0.1", 0, server_context)
            url = f"wss://127.0.0.1:{server.port}/socket/websocket?vsn=2.0.0"
            # The default context does not trust our test CA.
            with pytest.raises(ConnectError) as info:
                await open_transport(url, max_message_size=MAX)
            assert info.value.status is None
            assert "TLS handshake" in str(info.value)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            assert trio.current_time() == 0
            transport = await open_transport(url, ssl_context=trusting, max_message_size=MAX)
            await transport.send_many(["over TLS"])
            assert await transport.receive_batch() == ["over TLS"]
            await transport.abort()
            nursery.cancel_scope.cancel()


# -- the engine's edges, against a raw server ---------------------------------------------------


async def test_frames_that_come_with_the_101_are_delivered() -> None:
    async with open_raw_server() as server:
        server.greeting = frame(0x1, b"first") + frame(0x2, b"second")
        server.serving = False
        with trio.fail_after(REAL_LIMIT), no_resource_warnings():
            transport = await open_transport(f"{server.url}/websocket", max_message_size=MAX)
            try:
                assert await transport.receive_batch() == ["first", b"second"]
            finally:
                await transport.abort()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (bytes([0xC1, 0]), 1002),  # RSV bits set
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
        (frame(0x1, b"x" * 2000), 1009),  # over max_message_size
    ],
    ids=["rsv", "utf-8", "too-big"],
)
async def test_messages_before_a_bad_frame_are_delivered_and_answered_before_the_close(
    bad: bytes, code: int
) -> None:
    """Autobahn's strict behaviour: the valid message that arrived in the same read as the bad
    frame is delivered, and what the client sends in answer goes out before its close."""
    async with open_raw_server() as server:
        server.serving = False
        with trio.fail_after(REAL_LIMIT), no_resource_warnings():
            transport = await open_transport(f"{server.url}/websocket", max_message_size=1024)
            try:
                await server.connected.wait()
                connection = server.connections[0]
                await connection.send_raw(frame(0x1, b"valid") + bad + frame(0x1, b"after"))
                assert await transport.receive_batch() == ["valid"]
                await transport.send_many(["answer"])
                with pytest.raises(TransportClosed) as closed:
                    await transport.receive_batch()
                assert closed.value.code == code
                assert await connection.read_frame() == (0x1, b"answer")
                opcode, data = await connection.read_frame()
                assert opcode == 0x8
                assert int.from_bytes(data[:2], "big") == code
            finally:
                await transport.abort()


async def test_a_fragmented_message_over_max_message_size_closes_with_1009() -> None:
    """The fragments add up: none is over the bound, the message is."""
    async with open_raw_server() as server:
        server.serving = False
        with trio.fail_after(REAL_LIMIT), no_resource_warnings():
            transport = await open_transport(f"{server.url}/websocket", max_message_size=1024)
            try:
                await server.connected.wait()
                connection = server.connections[0]
                fragments = [frame(0x1, b"x" * 600, fin=False), frame(0x0, b"x" * 100, fin=False)]
                await connection.send_raw(b"".join(fragments))
                await connection.send_raw(frame(0x0, b"x" * 600))
                with pytest.raises(TransportClosed) as closed:
                    await transport.receive_batch()
                assert closed.value.code == 1009
                assert "max_message_size" in (closed.value.reason or "")
            finally:
                await transport.abort()


async def test_fragmented_messages_are_joined() -> None:
    async with open_raw_server() as server:
        server.serving = False
        with trio.fail_after(REAL_LIMIT), no_resource_warnings():
            transport = await open_transport(f"{server.url}/websocket", max_message_size=MAX)
            try:
                await server.connected.wait()
                connection = server.connections[0]
                snowman = "\u2603".encode()
                await connection.send_raw(
                    frame(0x1, b"a" + snowman[:1], fin=False)
                    + frame(0x9, b"ping")  # a control frame between fragments
                    + frame(0x0, snowman[1:], fin=False)
                    + frame(0x0, b"z")
                    + frame(0x2, b"\x00", fin=False)
                    + frame(0x0, b"\x01")
                )
                received: list[object] = []
                while len(received) < 2:
                    received += await transport.receive_batch()
                assert received == ["a\u2603z", b"\x00\x01"]
                assert await connection.read_frame() == (0xA, b"ping")
            finally:
                await transport.abort()


# -- fail-fast UTF-8: a text frame that spans reads ---------------------------------------------
#
# In memory (``in_memory_transport``), so that each send of the server is one read of the
# client's.

SNOWMAN = "\u2603".encode()


def close_code(data: bytes | bytearray) -> int:
    """The code of the client's (masked) close frame, after its pongs."""
    while data[0] == 0x8A:
        data = data[6 + (data[1] & 0x7F) :]
    assert data[0] == 0x88, data
    mask = data[2:6]
    return int.from_bytes(bytes(b ^ mask[i] for i, b in enumerate(data[6:8])))


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        (frame(0x1, b"valid \xff" + b"x" * 100)[:10], "invalid start byte"),
        (frame(0x1, b"valid \xff" + b"x" * 1000)[:12], "invalid start byte"),
        (frame(0x1, b"valid \xff" + b"x" * 70_000)[:18], "invalid start byte"),
        # A continuation that does not continue the character its message began.
        (
            frame(0x1, b"a" + SNOWMAN[:1], fin=False)
            + frame(0x9, b"")
            + frame(0x0, b"b" * 200)[:5],
            "invalid continuation byte",
        ),
    ],
    ids=["7-bit", "16-bit", "64-bit", "continuation"],
)
async def test_invalid_utf8_closes_with_1007_before_the_frame_is_complete(
    sent: bytes, reason: str, autojump_clock: trio.abc.Clock
) -> None:
    """The rest of the frame never comes: the client must not wait for it."""
    transport, server = in_memory_transport()
    with trio.fail_after(LIMIT):
        await server.send_all(sent)
        with pytest.raises(TransportClosed) as closed:
            await transport.receive_batch()
        assert (closed.value.code, closed.value.reason) == (1007, f"invalid UTF-8: {reason}")
        assert close_code(await server.receive_some()) == 1007
        assert trio.current_time() == 0


async def test_valid_text_cut_anywhere_is_delivered(autojump_clock: trio.abc.Clock) -> None:
    """A character split between reads, a fragment's character finished by a continuation,
    and a binary message's bytes (never UTF-8) are no reason to close."""
    message = b"a" + SNOWMAN * 100
    data = (
        frame(0x1, message)
        + frame(0x1, SNOWMAN[:1], fin=False)
        + frame(0x0, SNOWMAN[1:] + b"b" * 200)
        + frame(0x2, b"\xff" * 300)
    )
    transport, server = in_memory_transport()
    received: list[object] = []

    async def read() -> None:
        while len(received) < 3:
            received.extend(await transport.receive_batch())

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for start in range(0, len(data), 101):  # 101 bytes a read: cuts characters
                await server.send_all(data[start : start + 101])
                await trio.testing.wait_all_tasks_blocked()
                assert transport.closed is None
    assert received == [message.decode(), "\u2603" + "b" * 200, b"\xff" * 300]


async def test_frames_that_come_with_the_101_are_watched_too() -> None:
    """The bytes after the response head are where the frame boundaries start."""
    async with open_raw_server() as server:
        server.greeting = frame(0x1, b"first") + frame(0x1, b"ok \xff" + b"x" * 500)[:20]
        server.serving = False
        with trio.fail_after(REAL_LIMIT), no_resource_warnings():
            transport = await open_transport(f"{server.url}/websocket", max_message_size=MAX)
            try:
                assert await transport.receive_batch() == ["first"]
                with pytest.raises(TransportClosed) as closed:
                    await transport.receive_batch()
                assert closed.value.code == 1007
                opcode, data = await server.connections[0].read_frame()
                assert (opcode, int.from_bytes(data[:2])) == (0x8, 1007)
            finally:
                await transport.abort()


# -- the fast path of whole data frames, against the protocol's own parsing --------------------


class _Chunks(trio.abc.Stream):
    """A stream that returns the given chunks from ``receive_some``, one per call, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.sent = bytearray()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


_MIXED = [
    frame(0x1, b"small"),
    frame(0x2, b"\x00" * 200),  # a 16-bit length
    frame(0x1, b"y" * 70_000),  # a 64-bit length
    frame(0x9, b"ping"),
    frame(0x1, "\u2603".encode()),
    frame(0x1, b"frag", fin=False),
    frame(0x0, b"ment"),
    frame(0x1, b""),
    frame(0x2, b""),
    frame(0x1, b"last"),
]
_MIXED_MESSAGES = ["small", b"\x00" * 200, "y" * 70_000, "\u2603", "fragment", "", b"", "last"]


async def _received(chunks: list[bytes], *, fast: bool, limit: int = MAX) -> tuple[list[Any], Any]:
    """Every message and the end of a transport reading ``chunks`` (then a close frame)."""
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.uri import parse_uri

    stream = _Chunks(chunks)
    protocol = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=limit)
    transport = Transport(
        stream, protocol, None, receive_buffer_size=65536, max_message_size=limit
    )
    transport._fast = fast
    messages: list[Any] = []
    while True:
        try:
            messages += await transport.receive_batch()
        except TransportClosed as closed:
            return messages, (closed.code, closed.reason, bool(stream.sent))


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 9, 11, 64, 199, 1000, 65536, 10**6])
async def test_the_fast_path_reads_what_the_protocol_reads_at_any_cut(cut: int) -> None:
    data = b"".join(_MIXED) + frame(0x8, (1000).to_bytes(2, "big") + b"bye")
    chunks = [data[index : index + cut] for index in range(0, len(data), cut)]
    fast = await _received(list(chunks), fast=True)
    assert fast == await _received(list(chunks), fast=False)
    assert fast == (_MIXED_MESSAGES, (1000, "bye", True))


@pytest.mark.parametrize(
    "bad",
    [
        bytes([0x81, 0x85]) + b"mask" + b"hello",  # masked
        frame(0x1, b"\xff"),  # invalid UTF-8
        frame(0x1, b"x" * 2000),  # over the limit
        frame(0x1, b"a", fin=False) + frame(0x1, b"b"),  # a new message inside a fragmented one
        bytes([0xC1, 0]),  # RSV bits
        bytes([0x83, 0]),  # a reserved opcode
    ],
    ids=["masked", "utf-8", "too-big", "no-continuation", "rsv", "opcode"],
)
@pytest.mark.parametrize("cut", [1, 3, 65536])
async def test_the_fast_path_fails_what_the_protocol_fails(bad: bytes, cut: int) -> None:
    data = frame(0x1, b"before") + bad + frame(0x1, b"after")
    chunks = [data[index : index + cut] for index in range(0, len(data), cut)]
    fast = await _received(list(chunks), fast=True, limit=1024)
    assert fast == await _received(list(chunks), fast=False, limit=1024)
    assert fast[0] == ["before"]


@pytest.mark.parametrize("fast", [True, False])
async def test_frames_sent_are_what_a_server_parses(fast: bool) -> None:
    from websockets.client import ClientProtocol
    from websockets.frames import Frame as WsFrame
    from websockets.protocol import State
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    stream = _Chunks([])
    protocol = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=MAX)
    transport = Transport(stream, protocol, None, receive_buffer_size=65536, max_message_size=MAX)
    transport._fast = fast
    frames: list[str | bytes] = ["", "\u2603", b"", b"\x00" * 125]
    frames += ["x" * 126, b"\x01" * 65535, "y" * 65536]
    await transport.send_many(frames)
    server = ServerProtocol(state=State.OPEN, max_size=MAX)
    server.receive_data(bytes(stream.sent))
    received: list[str | bytes] = []
    for event in server.events_received():
        assert isinstance(event, WsFrame)
        data = bytes(event.data)
        received.append(data.decode() if event.opcode == 1 else data)
    assert received == frames
    assert server.parser_exc is None
