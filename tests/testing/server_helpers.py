"""What the tests of the in-process Phoenix server (``tests/testing/test_server_*.py``) share.

A raw client (`RawClient`, opened with `connect`) that writes Phoenix frames by hand and
nothing automatic, `rejected_status` for upgrades that must be refused, the reply payloads
``ok``/``error``, and a channel handler that broadcasts (`Shouter`). The ``server`` fixture
(the demo channels on a fresh server) is in ``tests/testing/conftest.py``.

Each test checks one row of Phoenix's behaviour (protocol reference §1.2, §3, §4, §7, §9, §10)
on the wire, with clients that write frames by hand. Every wait has a deadline (``WAIT``);
anything timed runs under ``autojump_clock``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, wrap_client_stream

from trio_phoenix._groups import raise_preferred
from trio_phoenix.proto._message import Message
from trio_phoenix.proto._serializer import V1JSONSerializer, V2JSONSerializer
from trio_phoenix.testing import ChannelHandler, ChannelSocket, HandleInResult, Reply, TestServer

WAIT = 5.0  # seconds any single wait may take before the test fails
V2 = V2JSONSerializer(role="client")


class RawClient:
    """A Phoenix client written by hand: frames in, frames out, nothing automatic."""

    def __init__(self, ws: WebSocketConnection, *, v1: bool = False) -> None:
        self.ws = ws
        self.serializer = V1JSONSerializer(role="client") if v1 else V2

    async def send(
        self, join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
    ) -> None:
        message = Message(join_ref=join_ref, ref=ref, topic=topic, event=event, payload=payload)
        await self.ws.send_message(self.serializer.encode(message))

    async def recv_raw(self) -> str | bytes:
        with trio.fail_after(WAIT):
            return await self.ws.get_message()

    async def recv(self) -> Any:
        """The next frame: a JSON value for text, a decoded `Message` for binary."""
        frame = await self.recv_raw()
        if isinstance(frame, bytes):
            return V2.decode(frame)
        return json.loads(frame)

    async def recv_nothing_before_heartbeat(self, ref: str = "hb") -> None:
        """Prove that nothing was sent: the next frame is the reply to a fresh heartbeat."""
        await self.send(None, ref, "phoenix", "heartbeat", {})
        assert await self.recv() == [None, ref, "phoenix", "phx_reply", ok({})]

    async def join(self, topic: str, join_ref: str, payload: Any = None) -> Any:
        await self.send(join_ref, join_ref, topic, "phx_join", {} if payload is None else payload)
        return await self.recv()

    async def closed(self, patience: float = WAIT) -> CloseReason:
        """Wait for the server to close the connection; return the close code and reason."""
        with trio.fail_after(patience):
            while True:
                try:
                    await self.ws.get_message()
                except ConnectionClosed as exc:
                    reason = exc.reason
                    break
        assert reason is not None
        return reason


def ok(response: Any) -> dict[str, Any]:
    return {"response": response, "status": "ok"}


def error(response: Any) -> dict[str, Any]:
    return {"response": response, "status": "error"}


@asynccontextmanager
async def connect(
    server: TestServer,
    query: str = "vsn=2.0.0",
    *,
    subprotocols: Sequence[str] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    path: str = "/websocket",
) -> AsyncIterator[RawClient]:
    """A trio-websocket client on a TCP stream we own.

    trio-websocket's own client never closes its socket when the server closes first, which
    pytest reports as an unclosed-socket ResourceWarning; owning the stream avoids that.
    """
    resource = f"{server.path}{path}" + (f"?{query}" if query else "")
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    user_error: BaseException | None = None
    try:
        async with stream, trio.open_nursery() as nursery:
            with trio.fail_after(WAIT):
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    f"127.0.0.1:{server.port}",
                    resource,
                    subprotocols=subprotocols,
                    extra_headers=headers,
                )
            try:
                yield RawClient(ws, v1="vsn=2" not in query)
            except BaseException as exc:
                user_error = exc
                raise
            finally:
                with trio.move_on_after(WAIT):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_preferred(group, user_error)


async def rejected_status(
    server: TestServer,
    query: str = "vsn=2.0.0",
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[bytes, bytes]] = (),
    path: str = "/websocket",
) -> int:
    """Send an upgrade request by hand and return the HTTP status of the answer.

    (trio-websocket's client leaks its socket when an upgrade is rejected, so we do not use
    it here.)
    """
    lines = [
        f"GET /socket{path}?{query} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    lines += [f"{name.decode()}: {value.decode()}" for name, value in headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with trio.fail_after(WAIT):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(request)
            response = b""
            while b"\r\n" not in response:
                chunk = await stream.receive_some()
                assert chunk, "the server closed without answering"
                response += chunk
    status = int(response.split()[1])
    assert status != 101, "the upgrade was accepted"
    return status


class Shouter(ChannelHandler):
    """Broadcasts from the channel; pushes with a bad payload on request."""

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        await trio.lowlevel.checkpoint()
        if event == "from":
            socket.broadcast_from("shout", payload)
        elif event == "bad_push":
            socket.push("x", cast(Any, ["not", "a", "map"]))
        return Reply.ok()
