"""Helpers shared by the test modules of every layer, written once.

Paths (``ROOT``, ``JS_DIR``), time limits (``LIMIT`` on ``autojump_clock``, ``REAL_LIMIT`` on the
real clock), ``msg`` for a ``Message``, what the test server received (``wire``), the next
lifecycle events (``next_events``, ``next_of``), one side of a TCP relay (``pipe``), a TLS
terminator in front of the plain test server (``terminate_tls``) and a WebSocket transport on
a memory stream (``in_memory_transport``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from trio_phoenix.proto import Message

if TYPE_CHECKING:
    from trio_phoenix import LifecycleEvent, Subscription
    from trio_phoenix._transport import Transport
    from trio_phoenix.testing import TestServer

#: The root of the repository, and the npm packages of tests/js (phoenix.js, ws).
ROOT: Final = Path(__file__).resolve().parents[1]
JS_DIR: Final = ROOT / "tests" / "js"

#: Virtual seconds any test on ``autojump_clock`` may take.
LIMIT: Final = 120
#: Real seconds any test on the real clock (loopback sockets, TLS) may take.
REAL_LIMIT: Final = 30

#: A message as ``wire`` gives it: (join_ref, ref, topic, event, payload).
Wire = tuple[str | None, str | None, str, str, Any]


def msg(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> Message:
    return Message(join_ref=join_ref, ref=ref, topic=topic, event=event, payload=payload)


def wire(server: TestServer, index: int = 0, *, heartbeats: bool = False) -> list[Wire]:
    """What the client sent on connection ``index``, heartbeats left out unless asked for."""
    return [
        (m.join_ref, m.ref, m.topic, m.event, m.payload)
        for m in server.accepted_connections[index].received
        if heartbeats or m.topic != "phoenix"
    ]


async def next_events(events: Subscription[LifecycleEvent], count: int) -> list[LifecycleEvent]:
    """The next ``count`` lifecycle events."""
    return [await events.receive() for _ in range(count)]


async def next_of(events: Subscription[LifecycleEvent], kind: type[LifecycleEvent]) -> float:
    """Skip to the next event of ``kind``; return when it arrived."""
    while not isinstance(await events.receive(), kind):
        pass
    return trio.current_time()


async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope) -> None:
    """Copy ``source`` to ``sink`` until either ends, then cancel ``done`` (one way of a relay)."""
    try:
        async for chunk in source:
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done.cancel()


async def terminate_tls(target_port: int, client: trio.SSLStream[trio.SocketStream]) -> None:
    """Finish the TLS handshake of ``client``, then relay it to the plain server on loopback.

    A handler for ``trio.serve_ssl_over_tcp``: the test server speaks plain TCP, this puts TLS
    (with a ``trustme`` certificate) in front of it.
    """
    try:
        await client.do_handshake()
        upstream = await trio.open_tcp_stream("127.0.0.1", target_port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, upstream, nursery.cancel_scope)
            nursery.start_soon(pipe, upstream, client, nursery.cancel_scope)
        await trio.aclose_forcefully(upstream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client refused our certificate
    finally:
        await trio.aclose_forcefully(client)


def in_memory_transport(
    *, compressed: bool = False, max_message_size: int = 10_000_000
) -> tuple[Transport, trio.abc.Stream]:
    """The client's WebSocket transport, open, on one end of a memory stream pair; the other
    end is the server's. Each ``send_all`` of the server is one read of the client's (when the
    client reads before the next one). ``compressed``: permessage-deflate negotiated."""
    import trio.testing
    from websockets.extensions.permessage_deflate import PerMessageDeflate
    from websockets.protocol import State
    from websockets.uri import parse_uri

    from trio_phoenix._handshake import _ClientProtocol
    from trio_phoenix._transport import Transport

    client, server = trio.testing.memory_stream_pair()
    protocol = _ClientProtocol(
        parse_uri("ws://test/"), state=State.OPEN, max_size=max_message_size
    )
    if compressed:
        protocol.extensions = [PerMessageDeflate(False, False, 15, 15)]
    transport = Transport(
        client, protocol, None, receive_buffer_size=65536, max_message_size=max_message_size
    )
    return transport, server
