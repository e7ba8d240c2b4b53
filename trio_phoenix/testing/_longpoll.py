"""The test server's LongPoll transport, as ``Phoenix.Transports.LongPoll`` serves it.

``GET``/``POST``/``OPTIONS`` on ``<path>/longpoll`` over plain HTTP/1.1 (h11, keep-alive).
Every answer is HTTP 200 with a JSON body ``{"status": N, ...}``, as Phoenix sends it:

* ``GET`` without a live session's ``token`` (query param, or Phoenix 1.9's
  ``x-phoenix-longpoll-token`` header) starts a session: the origin check, the ``vsn``, the
  connect hook (any refusal is ``403``: Phoenix's LongPoll has no custom status; a crash in
  the hook is an HTTP 500), then ``{"status": 410, "token": T, "messages": []}``.
* ``GET`` with a live token waits up to ``longpoll_window`` seconds (Phoenix ``window_ms``,
  10 s) for messages: ``200`` with ``messages`` (each a serialized message, a string), or
  ``204``. A server-to-client binary message is put in the list as Phoenix does (its bytes as
  a string), and a poll that would carry bytes that are not UTF-8 fails with HTTP 500 (Jason
  cannot encode them), losing that poll's messages.
* ``POST`` with a live token: an ``application/x-ndjson`` body is split into lines (at most
  100 are read); a line starting with ``[`` is a text message, any other is base64 of a binary
  one; any other content type is one text message. Each is handed to the session, which routes
  it like a WebSocket connection's (a join blocks it); the answer waits for that, at most
  ``longpoll_window`` (then ``408``). ``410`` when the session is gone.
* A session (a `ServerConnection` whose ``transport`` is ``"longpoll"``) stops when no poll has
  come for 1.5 times ``longpoll_window`` (Phoenix's inactivity shutdown), on a ``disconnect``
  broadcast, a malformed message, `ServerConnection.close` or server shutdown.

Faster than Phoenix, on purpose: when a session stops, a poll waiting on it is answered ``204``
at once (Phoenix lets it run out its window) and the next ``GET`` gets the new session's
``410`` at once (Phoenix first waits ``pubsub_timeout_ms``, 2 s, for the dead session).
``stall()`` holds the session's answers back; ``drop()`` stops the session.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import secrets
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import urlsplit

import attrs
import h11
import trio

from trio_phoenix.proto._serializer import Frame

from ._faults import Gate, GatedStream
from ._handshake import ConnectInfo, Reject, origin_allowed, parse_params, serializer_for_vsn
from ._upgrade import call_connect
from ._websocket import WebSocketEnded

if TYPE_CHECKING:
    from ._connection import ServerConnection
    from ._server import TestServer

__all__ = ["LongPollSession", "is_longpoll_request", "serve_http"]

logger: Final = logging.getLogger("trio_phoenix.testing")

#: Phoenix reads at most this many lines of a POST (``@max_poll_batch_size``).
MAX_POST_LINES: Final = 100
#: Plug's ``read_body`` default limit (8 MB): a larger body is a 400.
MAX_BODY: Final = 8_000_000
#: The most bytes of a request head the server reads.
MAX_HEAD: Final = 65536


def is_longpoll_request(head: bytes, path: str) -> bool:
    """Whether the request line in ``head`` targets ``path + "/longpoll"``."""
    line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(line) < 2:
        return False
    target = urlsplit(line[1].decode("latin-1")).path
    return target.rstrip("/") == path + "/longpoll"


@final
class _SessionLink:
    """What `ServerConnection` uses of a TCP stream (gate, last activity, drop), for a
    session."""

    def __init__(self, session: LongPollSession) -> None:
        self._session = session
        self.gate = Gate()
        self.last_received = trio.current_time()

    def drop(self) -> None:
        self._session.end(1006)


@final
class _SessionWire:
    """What `ServerConnection` uses of a WebSocket, for a session: messages in from POSTs,
    messages out to polls, and stopping."""

    def __init__(self, session: LongPollSession) -> None:
        self._session = session
        self._last_ack: trio.Event | None = None

    async def get_message(self) -> Frame:
        if self._last_ack is not None:  # the previous message has been routed
            self._last_ack.set()
            self._last_ack = None
        try:
            frame, ack = await self._session._inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise WebSocketEnded(self._session.end_code or 1000) from None
        self._last_ack = ack
        return frame

    async def send_message(self, data: str | bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._session._push(data)

    async def close(self, code: int, reason: str = "") -> None:
        await trio.lowlevel.checkpoint()
        self._session.end(code)


@final
class LongPollSession:
    """One LongPoll session: Phoenix's ``LongPoll.Server`` process."""

    def __init__(self, server: TestServer, token: str) -> None:
        self.server = server
        self.token = token
        self.link = _SessionLink(self)
        self.wire = _SessionWire(self)
        self.end_code: int | None = None
        self.connection: ServerConnection | None = None
        self._buffer: list[str | bytes] = []
        self._available = trio.lowlevel.ParkingLot()
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[Frame, trio.Event]](
            math.inf
        )
        self._ended = trio.Event()

    @property
    def ended(self) -> bool:
        """Whether the session has stopped."""
        return self._ended.is_set()

    def end(self, code: int) -> None:
        """Stop the session: polls waiting on it get 204, later requests find it gone."""
        if self._ended.is_set():
            return
        self.end_code = code
        self._ended.set()
        self._inbox_send.close()
        self._available.unpark_all()
        self.server._longpoll_sessions.pop(self.token, None)
        if self.connection is not None and not self.connection.closed:
            self.connection._request_close(code)

    def _push(self, data: str | bytes) -> None:
        if not self._ended.is_set():
            self._buffer.append(data)
            self._available.unpark_all()

    # -- requests -------------------------------------------------------------------------------

    async def poll(self) -> tuple[int, dict[str, Any]]:
        """Answer a GET: wait for messages up to the window."""
        self.link.last_received = trio.current_time()
        window = self.server.longpoll_window
        with trio.move_on_after(window):
            while not self._buffer and not self._ended.is_set():
                await self._available.park()
        self.link.last_received = trio.current_time()
        if not self._buffer or self._ended.is_set():
            return 200, {"status": 204, "token": self.token, "messages": []}
        buffer, self._buffer = self._buffer, []
        messages: list[str] = []
        for item in buffer:
            if isinstance(item, str):
                messages.append(item)
                continue
            try:
                messages.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                logger.warning("a LongPoll poll carried binary that JSON cannot encode: HTTP 500")
                return 500, {}
        return 200, {"status": 200, "token": self.token, "messages": messages}

    async def publish(self, frames: list[Frame]) -> int:
        """Answer a POST: hand ``frames`` to the session one by one, each acknowledged once
        routed; the JSON status."""
        for frame in frames:
            ack = trio.Event()
            try:
                self._inbox_send.send_nowait((frame, ack))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return 410
            with trio.move_on_after(self.server.longpoll_window) as scope:
                async with trio.open_nursery() as nursery:

                    async def watch_end(nursery: trio.Nursery = nursery) -> None:
                        await self._ended.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(watch_end)
                    await ack.wait()
                    nursery.cancel_scope.cancel()
            if scope.cancelled_caught:
                return 408
            if not ack.is_set():
                return 200  # the message stopped the session (Phoenix answers 200 then)
        return 200


# -- HTTP ---------------------------------------------------------------------------------------


@attrs.frozen
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _json(data: dict[str, Any]) -> _Answer:
    return _Answer(
        200,
        json.dumps(data, separators=(",", ":")).encode(),
        (("content-type", "application/json; charset=utf-8"),),
    )


async def serve_http(server: TestServer, stream: GatedStream, initial: bytes) -> None:
    """Serve LongPoll requests on one keep-alive HTTP connection until it closes."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(initial)
    while True:
        try:
            request, body = await _read_request(conn, stream)
        except h11.RemoteProtocolError as exc:
            logger.warning("bad LongPoll request: %s", exc)
            answer: _Answer | None = _Answer(exc.error_status_hint, b"")
            request = None
        except _BodyTooLarge:
            answer, request = _Answer(400, b""), None
        else:
            if request is None:
                return
            answer = None
        if answer is None:
            assert request is not None
            try:
                answer = await _dispatch(server, stream, request, body)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
        try:
            await _send_answer(conn, stream, answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


class _BodyTooLarge(Exception):
    pass


async def _read_request(
    conn: h11.Connection, stream: GatedStream
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            conn.receive_data(data)
            if not data and conn.their_state is h11.IDLE:
                return None, b""
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise _BodyTooLarge
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""


async def _send_answer(conn: h11.Connection, stream: GatedStream, answer: _Answer) -> None:
    headers = [
        ("content-length", str(len(answer.body))),
        ("access-control-allow-origin", "*"),
        *answer.headers,
    ]
    data = conn.send(h11.Response(status_code=answer.status, headers=headers))
    assert data is not None
    data += conn.send(h11.Data(data=answer.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


def _header(request: h11.Request, name: bytes) -> str | None:
    for key, value in request.headers:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _dispatch(
    server: TestServer, stream: GatedStream, request: h11.Request, body: bytes
) -> _Answer:
    """Phoenix's ``LongPoll.call/2``: origin, then the method."""
    target = urlsplit(request.target.decode("latin-1"))
    headers = tuple(
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in request.headers
    )
    origin = _header(request, b"origin")
    if origin is not None and not origin_allowed(origin, server._check_origin, server.host):
        logger.error("rejecting a LongPoll request from origin %r", origin)
        return _json({"status": 403})
    method = request.method
    if method == b"OPTIONS":
        requested = _header(request, b"access-control-request-headers")
        return _Answer(
            200,
            b"",
            (
                ("access-control-allow-headers", requested or ""),
                ("access-control-allow-methods", "get, post, options"),
                ("access-control-max-age", "3600"),
            ),
        )
    params = parse_params(target.query)
    token = params.get("token")
    if not isinstance(token, str):
        token = _header(request, b"x-phoenix-longpoll-token")
    session = server._longpoll_sessions.get(token) if isinstance(token, str) else None
    if method == b"GET":
        if session is None:
            return await _new_session(server, stream, target.path, target.query, params, headers)
        await session.link.gate.wait_open()
        status, data = await session.poll()
        await session.link.gate.wait_open()
        return _json(data) if status == 200 else _Answer(status, b"")
    if method == b"POST":
        if session is None:
            return _json({"status": 410})
        try:
            frames = _split_body(body, _header(request, b"content-type"))
        except _BodyTooLarge:
            return _Answer(400, b"")
        except ValueError:
            return _Answer(500, b"")  # Base.decode64! raises: the request crashes
        await session.link.gate.wait_open()
        return _json({"status": await session.publish(frames)})
    return _Answer(400, b"")


def _split_body(body: bytes, content_type: str | None) -> list[Frame]:
    if content_type != "application/x-ndjson":
        return [body.decode("utf-8", "replace")]
    frames: list[Frame] = []
    for line in body.replace(b"\r\n", b"\n").split(b"\n")[:MAX_POST_LINES]:
        if line.startswith(b"["):
            frames.append(line.decode("utf-8", "replace"))
            continue
        if len(line) > 10_000_000:
            raise _BodyTooLarge
        try:
            frames.append(base64.b64decode(line, validate=True))
        except binascii.Error as exc:
            raise ValueError("bad base64") from exc
    return frames


async def _new_session(
    server: TestServer,
    stream: GatedStream,
    path: str,
    query: str,
    params: dict[str, Any],
    headers: tuple[tuple[str, str], ...],
) -> _Answer:
    """Phoenix's ``new_session``: connect (any refusal is 403), then 410 with the token."""
    serializer = serializer_for_vsn(params.get("vsn"))
    if serializer is None:
        logger.warning("the client requested an unsupported vsn %r", params.get("vsn"))
        return _json({"status": 403})
    try:
        peer = stream.peer()
    except OSError:
        peer = ("", 0)
    token = None
    if server._auth_token:
        token = next((v for k, v in headers if k == "x-phoenix-authtoken"), None)
    info = ConnectInfo(
        path=path,
        query_string=query,
        headers=headers,
        peer=peer,
        subprotocols=(),
        auth_token=token,
    )
    crashes = len(server.crashes)
    result = await call_connect(server, params, info)
    if isinstance(result, Reject):
        # Phoenix's LongPoll answers any refusal with 403; a crash in connect is a 500.
        return _Answer(500, b"") if len(server.crashes) > crashes else _json({"status": 403})
    session = LongPollSession(server, secrets.token_urlsafe(32))
    server._start_longpoll_session(session, result, params, info, serializer)
    return _json({"status": 410, "token": session.token, "messages": []})
