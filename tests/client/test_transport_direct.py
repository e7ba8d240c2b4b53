"""The pump's direct write (``Transport.write_now``): on a plain TCP socket, the first frames
since the last read or write go out from the pushing task at once, without the writer.

The transport keeps what the kernel does not take (a partial write, ``EAGAIN``) in ``unsent``
and every later write sends it first, so frames keep their order and are never cut by another
frame (a pong, the close). A failed direct write leaves the loss to the writer and reader to
report. TLS, LongPoll and trio-websocket only ever use the writer. The transport tests run on a
socket pair (the other end parses what it reads as a server would); the socket tests on the
test server, counting which path each write took.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import ssl
import types
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trustme
from websockets.frames import Frame as WsFrame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from tests.helpers import LIMIT, REAL_LIMIT, in_memory_transport, terminate_tls, wire
from trio_phoenix import Disconnected, ReplyLost, _transport as transport_module, open_socket
from trio_phoenix._handshake import _ClientProtocol
from trio_phoenix._transport import Transport, TransportClosed
from trio_phoenix.proto import Frame
from trio_phoenix.testing import TestServer, demo_channels, open_test_server

MAX = 100_000_000
BIG = "x" * 4_000_000  # far more than a small socket buffer holds


@asynccontextmanager
async def socket_transport(
    *, small: bool = False
) -> AsyncIterator[tuple[Transport, trio.SocketStream]]:
    """An open client transport on one end of a socket pair, and the other end (``small``:
    buffers of a few kB, so that a big write is partial); both closed after."""
    ours, theirs = trio.socket.socketpair()
    if small:
        ours.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
        theirs.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    protocol = _ClientProtocol(parse_uri("ws://test/"), state=State.OPEN, max_size=MAX)
    transport = Transport(
        trio.SocketStream(ours), protocol, None, receive_buffer_size=65536, max_message_size=MAX
    )
    peer = trio.SocketStream(theirs)
    try:
        yield transport, peer
    finally:
        await transport.abort()
        await trio.aclose_forcefully(peer)


def taking(frames: Sequence[Frame]) -> Callable[[], Sequence[Frame]]:
    """A ``take`` for ``write_now`` that gives ``frames`` once."""
    given = [list(frames)]
    return lambda: given.pop()


def never() -> Sequence[Frame]:
    raise AssertionError("write_now took frames when it could not write them")


def encoded_size(frames: Sequence[Frame]) -> int:
    sizes = [len(f.encode()) if isinstance(f, str) else len(f) for f in frames]
    return sum(
        2 + 4 + size + (2 if 126 <= size < 65536 else 8 if size >= 65536 else 0) for size in sizes
    )


async def read_frames(peer: trio.SocketStream, count: int) -> list[tuple[Opcode, Frame]]:
    """Read until ``count`` frames came, parsed as a server parses them (masks checked)."""
    server = ServerProtocol(state=State.OPEN, max_size=MAX)
    frames: list[tuple[Opcode, Frame]] = []
    while len(frames) < count:
        data = await peer.receive_some(1 << 20)
        assert data, "the connection ended"
        server.receive_data(data)
        for event in server.events_received():
            assert isinstance(event, WsFrame)
            body = bytes(event.data)
            frames.append((event.opcode, body.decode() if event.opcode is Opcode.TEXT else body))
    assert server.parser_exc is None
    return frames


# -- the transport ----------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
async def test_write_now_writes_at_once_what_the_writer_would(fast: bool) -> None:
    async with socket_transport() as (transport, peer):
        transport._fast = fast  # False: through the protocol, as with an extension
        frames: list[Frame] = ["hello", b"\x00\x01", "\u2603" * 100, b"z" * 70_000]
        assert transport.write_now(taking(frames)) == encoded_size(frames)
        assert transport.unsent == b""
        assert [frame for _, frame in await read_frames(peer, 4)] == frames


async def test_write_now_takes_nothing_when_it_cannot_write() -> None:
    async with socket_transport(small=True) as (transport, peer), trio.open_nursery() as nursery:
        nursery.start_soon(transport.send_many, [BIG])  # a write in progress (the writer)
        await trio.testing.wait_all_tasks_blocked()
        assert transport.write_now(never) is None
        await read_frames(peer, 1)
        await trio.testing.wait_all_tasks_blocked()
        transport.unsent = b"\x81"  # leftovers: they go first, with the writer's next write
        assert transport.write_now(never) is None
        transport.unsent = b""
        transport._held = b""  # the connection is ending
        assert transport.write_now(never) is None
        transport._held = None
        await transport.abort()
        assert transport.write_now(never) is None
        memory, _ = in_memory_transport()  # not a socket (as TLS: an SSLStream)
        assert memory.write_now(never) is None


async def test_writes_wait_their_turn_in_order() -> None:
    """A write (the reader's pong, the writer's next frames) that finds one in progress waits
    for it, in the order they came; one cancelled while waiting leaves the rest in order."""
    async with socket_transport(small=True) as (transport, peer), trio.open_nursery() as nursery:
        nursery.start_soon(transport.send_many, [BIG])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(transport.send_many, ["second"])
        await trio.testing.wait_all_tasks_blocked()
        dropped = trio.CancelScope()

        async def cancelled() -> None:
            with dropped:
                await transport.send_many(["dropped"])

        nursery.start_soon(cancelled)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(transport.send_many, ["third"])
        await trio.testing.wait_all_tasks_blocked()
        dropped.cancel()
        received = [frame for _, frame in await read_frames(peer, 3)]
        assert received == [BIG, "second", "third"]
        await trio.testing.wait_all_tasks_blocked()
        assert not transport._writing  # free again: the next write goes at once
        assert transport.write_now(taking(["after"])) == encoded_size(["after"])
        assert [frame for _, frame in await read_frames(peer, 1)] == ["after"]


async def test_close_now_writes_the_frames_then_the_close_at_once() -> None:
    """aclose()'s handover: the leaves and the close frame go out without a task waiting;
    the reader gets the server's close."""
    async with socket_transport() as (transport, peer):
        assert transport.close_now(1000, "", ["leave"])
        assert transport.unsent == b""
        (first, leave), (second, _) = await read_frames(peer, 2)
        assert (first, leave, second) == (Opcode.TEXT, "leave", Opcode.CLOSE)
        assert not transport.close_now(1000, "", ["again"])  # the handshake is under way
        await peer.send_all(b"\x88\x02\x03\xe8")  # the server's close (1000)
        with pytest.raises(TransportClosed) as closed:
            await transport.receive_batch()
        assert closed.value.code == 1000


async def test_close_now_during_a_write_goes_out_after_it() -> None:
    async with socket_transport(small=True) as (transport, peer), trio.open_nursery() as nursery:
        nursery.start_soon(transport.send_many, [BIG])
        await trio.testing.wait_all_tasks_blocked()
        assert transport.close_now(1000, "", ["leave"])
        assert transport.unsent  # behind the write in progress, for the writer
        nursery.start_soon(transport.send_unsent)
        received = await read_frames(peer, 3)
        assert [frame for _, frame in received[:2]] == [BIG, "leave"]
        assert received[2][0] is Opcode.CLOSE


async def test_close_now_leaves_the_other_cases_to_aclose() -> None:
    memory, _ = in_memory_transport()  # not a socket (as TLS: an SSLStream)
    assert not memory.close_now(1000, "", [])
    async with socket_transport() as (transport, _peer):
        await transport.abort()  # the connection ended
        assert not transport.close_now(1000, "", [])


async def test_a_partial_write_is_sent_first_by_the_next_write(
    autojump_clock: trio.abc.Clock,
) -> None:
    """What the kernel did not take stays unsent; the writer's next write sends it before its
    own frames, and nothing else is written meanwhile."""
    async with socket_transport(small=True) as (transport, peer):
        written = transport.write_now(taking([BIG]))
        assert written is not None
        assert 0 < written < len(BIG)
        assert len(transport.unsent) == encoded_size([BIG]) - written
        assert transport.write_now(never) is None  # leftovers: the next frames wait for them
        received: list[tuple[Opcode, Frame]] = []
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    received.extend(await read_frames(peer, 3))

                nursery.start_soon(read)
                await transport.send_many(["second", b"third"])
                assert transport.unsent == b""
        assert [frame for _, frame in received] == [BIG, "second", b"third"]


async def test_a_pong_waits_for_the_unsent_end_of_a_frame(autojump_clock: trio.abc.Clock) -> None:
    """The reader's answer to a ping goes after the unsent rest of a frame, never inside it."""
    async with socket_transport(small=True) as (transport, peer):
        written = transport.write_now(taking([BIG]))
        assert written is not None
        assert written < len(BIG)
        received: list[tuple[Opcode, Frame]] = []
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    await peer.send_all(b"\x89\x02hi" + b"\x81\x05hello")  # a ping, then a message
                    received.extend(await read_frames(peer, 2))

                nursery.start_soon(serve)
                assert await transport.receive_batch() == ["hello"]
        assert received == [(Opcode.TEXT, BIG), (Opcode.PONG, b"hi")]


@pytest.fixture
def eagain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's buffer is full: the transport's ``os.write`` raises ``BlockingIOError``."""

    def write(fd: int, data: bytes) -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(transport_module, "os", types.SimpleNamespace(write=write))


async def test_eagain_leaves_every_byte_to_the_writer(
    eagain: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with socket_transport() as (transport, peer):
        assert transport.write_now(taking(["first"])) == 0
        assert len(transport.unsent) == encoded_size(["first"])
        monkeypatch.undo()
        await transport.send_many(["second"])
        assert [frame for _, frame in await read_frames(peer, 2)] == ["first", "second"]


async def test_a_failed_direct_write_is_left_to_the_writer_and_reader() -> None:
    """``EPIPE``: nothing is raised to the caller; the writer's write and the reader then end
    with ``TransportClosed`` (1006), and the leftovers go with the connection."""
    async with socket_transport() as (transport, peer):
        await peer.aclose()
        assert transport.write_now(taking(["lost"])) == 0
        assert transport.unsent
        with pytest.raises(TransportClosed) as info:
            await transport.send_many([])
        assert info.value.code == 1006
        assert transport.unsent == b""
        with pytest.raises(TransportClosed):
            await transport.receive_batch()
        await transport.abort()


# -- the socket -----------------------------------------------------------------------------


class Paths:
    """Counts the writes of every ``Transport``: by ``write_now`` (bytes taken at once) and by
    the writer's ``send_many``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.direct: list[int | None] = []
        self.writer: list[int] = []
        write_now, send_many = Transport.write_now, Transport.send_many

        def spy_write_now(transport: Transport, take: Callable[[], Sequence[Frame]]) -> Any:
            result = write_now(transport, take)
            self.direct.append(result)
            return result

        async def spy_send_many(transport: Transport, frames: Sequence[Frame]) -> None:
            self.writer.append(len(frames))
            await send_many(transport, frames)

        monkeypatch.setattr(Transport, "write_now", spy_write_now)
        monkeypatch.setattr(Transport, "send_many", spy_send_many)

    @property
    def taken(self) -> list[int]:
        return [n for n in self.direct if n is not None]

    def reset(self) -> None:
        self.direct.clear()
        self.writer.clear()


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    return Paths(monkeypatch)


async def test_sequential_pushes_are_written_at_once(
    server: TestServer, paths: Paths, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:d") as channel:
            paths.reset()
            for index in range(20):
                assert await channel.push("echo", {"i": index}) == {"i": index}
            assert len(paths.taken) == 20
            assert all(paths.taken)
            assert paths.writer == []


async def test_a_burst_is_batched_by_the_writer(
    server: TestServer, paths: Paths, autojump_clock: trio.abc.Clock
) -> None:
    """Pushes made before the writer or the reader ran again: the first is written at once,
    the others go out together, after it, in the core's order."""
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:b") as channel:
            paths.reset()
            async with trio.open_nursery() as nursery:
                for index in range(30):
                    nursery.start_soon(partial(channel.push, "echo", {"i": index}))
            assert len(paths.taken) == 1
            assert sum(paths.writer) == 29
            echoes = [
                (int(ref or 0), payload["i"])
                for _, ref, _, event, payload in wire(server)
                if event == "echo"
            ]
            assert [ref for ref, _ in echoes] == sorted(ref for ref, _ in echoes)  # core order
            assert sorted(index for _, index in echoes) == list(range(30))


async def test_after_the_writer_wrote_the_next_push_is_written_at_once(
    server: TestServer, paths: Paths, autojump_clock: trio.abc.Clock
) -> None:
    """Without a read in between (no reply yet), the writer's finished write makes the
    socket quiet again."""
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:w") as channel:
            connection = server.accepted_connections[0]
            paths.reset()
            async with trio.open_nursery() as nursery:
                for index in range(3):
                    nursery.start_soon(channel.push, "noreply", {"i": index})
                await connection.wait_message(lambda m: len(connection.received) == 4)
                assert (len(paths.taken), sum(paths.writer)) == (1, 2)
                nursery.start_soon(channel.push, "noreply", {"i": 3})
                await connection.wait_message(lambda m: len(connection.received) == 5)
                assert (len(paths.taken), sum(paths.writer)) == (2, 2)
                nursery.cancel_scope.cancel()


async def test_a_stalled_server_leaves_the_rest_to_the_writer_within_deadlines(
    server: TestServer, paths: Paths, autojump_clock: trio.abc.Clock
) -> None:
    """A server that stops reading: the direct write takes what fits and the push still
    ends at its deadline; once the server reads again, everything arrives whole and in
    order."""
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:s") as channel:
            connection = server.accepted_connections[0]
            connection.stall()
            paths.reset()
            for index in range(10):
                start = trio.current_time()
                with trio.move_on_after(1):
                    await channel.push("echo", {"i": index, "b": BIG})
                assert trio.current_time() - start == pytest.approx(1.0)
            assert 0 < paths.taken[0] < len(BIG)  # partial: the writer has the rest
            connection.resume()
            assert await channel.push("echo", {"after": True}) == {"after": True}
            sent = [payload.get("i") for *_, event, payload in wire(server) if event == "echo"]
            assert sent == [*range(10), None]
            assert socket.statistics().malformed_frames == 0


async def test_a_failed_direct_write_is_a_connection_loss(
    server: TestServer, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """The direct write fails (the server reset the connection): the push is not raised the
    ``OSError``; it ends with ``ReplyLost`` when the reader sees the loss, and the socket
    reconnects."""
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:e") as channel,
        ):

            def reset(fd: int, data: bytes) -> int:
                server.accepted_connections[0].drop()
                raise ConnectionResetError(104, "Connection reset by peer")

            monkeypatch.setattr(
                transport_module, "os", types.SimpleNamespace(write=reset, read=os.read)
            )
            with pytest.raises(ReplyLost):
                await channel.push("echo", {"lost": True})
            monkeypatch.undo()
            while not isinstance(event := await events.receive(), Disconnected):
                pass
            assert event.code == 1006
            assert await channel.push("echo", {"again": True}) == {"again": True}


def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.mark.parametrize("transport", ["tls", "trio-websocket", "longpoll"])
async def test_other_transports_use_the_writer_only(transport: str, paths: Paths) -> None:
    """TLS must write through its stream; the trio-websocket and LongPoll transports have
    no direct write: every frame goes through the writer."""
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=transport == "longpoll") as server,
            trio.open_nursery() as nursery,
        ):
            url, options = server.url, dict[str, Any]()
            if transport == "tls":
                ca = trustme.CA()
                listeners = await nursery.start(
                    partial(
                        trio.serve_ssl_over_tcp,
                        partial(terminate_tls, server.port),
                        0,
                        tls_server_context(ca),
                        host="127.0.0.1",
                    )
                )
                port = listeners[0].transport_listener.socket.getsockname()[1]
                url = f"wss://127.0.0.1:{port}/socket"
                context = ssl.create_default_context()
                ca.configure_trust(context)
                options = {"ssl_context": context}
            else:
                options = {"transport": transport}
            async with open_socket(url, **options) as socket, socket.channel("echo:t") as channel:
                for index in range(5):
                    assert await channel.push("echo", {"i": index}) == {"i": index}
            if transport == "tls":
                assert paths.direct  # asked, never written
                assert paths.taken == []
                assert paths.writer
            else:
                assert paths.direct == paths.writer == []  # not a Transport
            nursery.cancel_scope.cancel()
