"""The LongPoll transport: Phoenix's HTTP fallback for networks that block WebSockets.

The exchange (Phoenix's ``Phoenix.Transports.LongPoll``, phoenix.js's ``LongPoll``): every
response is HTTP 200 with a JSON body ``{"status": N, "token"?, "messages"?}``, and the status
that matters is the one in the body.

* The first ``GET …/longpoll?<params>&vsn=2.0.0`` starts a session on the server (its
  ``connect/3`` runs) and answers ``410`` with the session ``token``: the transport is open.
  ``403`` is a refusal (a bad token), like a rejected WebSocket upgrade.
* Each further ``GET`` (with ``token``) waits on the server up to its ``window_ms`` (10 s) and
  answers ``200`` with ``messages`` (a list of serialized messages, each a string) or ``204``
  (nothing). A ``410`` while holding a token means the session is gone (the server stopped it:
  a ``disconnect``, an idle timeout, a crash): the transport closes with 3410 and the socket
  reconnects and rejoins, as phoenix.js 1.8.2+ does.
* Outgoing messages are ``POST``-ed as ``application/x-ndjson``, one message a line, at most
  100 a request (Phoenix ignores the rest), one request in flight at a time: the socket's
  writer hands over every frame queued meanwhile, which is phoenix.js's batching. Binary
  messages go base64-encoded on their line; a V1 JSON message (an object, which Phoenix would
  take for base64) goes alone, as ``application/json``.

The socket sees the same interface as the WebSocket transport: ``receive_batch()`` (one poll's
messages), ``send_many(frames)``, ``aclose()``, ``abort()``, ``closed``. The close codes it
reports (``TransportClosed.code``) follow phoenix.js: 1008 for 403, 1011 for a 500, a failed
``POST`` or an answer that is not what Phoenix sends, 1005 when a request takes longer than
``longpoll_timeout``, 3410 for a lost session, 1009 for a poll larger than the bound, 1006 when
the HTTP connection fails.

Everything the server controls is bounded: a response body is read up to a byte limit (and no
further), the number of messages in one poll is capped, the token's length too, and every
request has a deadline. httpx (an optional extra, ``trio-phoenix[longpoll]``) does HTTP; it is
imported when a LongPoll socket is created.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import trio

from ._exceptions import ConnectError
from ._transport import TransportClosed
from .proto import Frame, redact_url

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MAX_POLL_MESSAGES",
    "MAX_POST_BATCH",
    "LongPollTransport",
    "longpoll_url",
    "open_longpoll",
    "require_httpx",
]

#: Phoenix reads at most this many lines of one POST (``@max_poll_batch_size``).
MAX_POST_BATCH: Final = 100
#: The most messages one poll may carry; a larger answer closes the transport (1009).
MAX_POLL_MESSAGES: Final = 100_000
#: The longest session token accepted (Phoenix's signed tokens are a few hundred bytes).
MAX_TOKEN: Final = 4096
#: How much of a POST's answer (``{"status": 200}``) or of a refusal is read.
MAX_SMALL_BODY: Final = 65536

CLOSE_NO_STATUS: Final = 1005
CLOSE_ABNORMAL: Final = 1006
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_SESSION_GONE: Final = 3410

_EXTRA_HINT: Final = "pip install 'trio-phoenix[longpoll]'"


class _RedactLongPollURLs(logging.Filter):
    """httpx logs every request's URL at INFO; a LongPoll URL carries the connect params and
    the session token, which must never reach a log line: redact its query values."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 1:
            url = str(args[1])
            if urlsplit(url).path.endswith("/longpoll"):
                record.args = (args[0], redact_url(url), *args[2:])
        return True


_REDACT: Final = _RedactLongPollURLs()


def require_httpx() -> None:
    """Check that httpx, which the LongPoll transport needs, is installed.

    Raises:
        ImportError: it is not; the message names the extra to install.
    """
    try:
        import httpx  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "the LongPoll transport (transport='longpoll' or longpoll_fallback=...) needs "
            f"httpx: {_EXTRA_HINT}"
        ) from exc


def longpoll_url(websocket_url: str) -> str:
    """The LongPoll endpoint for a socket's WebSocket URL, as phoenix.js derives it.

    Example:
        >>> longpoll_url("wss://example.com/socket/websocket?vsn=2.0.0")
        'https://example.com/socket/longpoll?vsn=2.0.0'
    """
    parts = urlsplit(websocket_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path
    if path.endswith("/websocket"):
        path = path[: -len("websocket")] + "longpoll"
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


def _with_token(url: str, token: str | None) -> str:
    if token is None:
        return url
    parts = urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + urlencode({"token": token})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class _Refused(Exception):
    """An answer that ends the exchange: ``code``/``reason`` close the transport; ``status``
    is the HTTP or body status when there was one."""

    def __init__(self, code: int, reason: str, status: int | None = None) -> None:
        super().__init__(code, reason, status)
        self.code = code
        self.reason = reason
        self.status = status


def _decode_body(data: bytes) -> tuple[int, str | None, list[str] | None]:
    """``(status, token, messages)`` of a LongPoll answer; ``_Refused`` (1011) when the body
    is not what Phoenix sends."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise _Refused(CLOSE_INTERNAL_ERROR, "LongPoll answer is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused(CLOSE_INTERNAL_ERROR, "LongPoll answer is not a JSON object")
    status = body.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise _Refused(CLOSE_INTERNAL_ERROR, "LongPoll answer has no integer status")
    token = body.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
        raise _Refused(CLOSE_INTERNAL_ERROR, "LongPoll answer has a bad token", status)
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
            raise _Refused(CLOSE_INTERNAL_ERROR, "LongPoll messages are not strings", status)
        if len(messages) > MAX_POLL_MESSAGES:
            raise _Refused(CLOSE_TOO_BIG, f"more than {MAX_POLL_MESSAGES} messages in a poll")
    return status, token, messages


class LongPollTransport:
    """One LongPoll session (client side), with the WebSocket transport's interface."""

    subprotocol: str | None = None

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        token: str,
        *,
        headers: Sequence[tuple[str, str]],
        max_message_size: int,
        timeout: float,
        pending: list[str],
    ) -> None:
        self._client = client
        self._url = url
        self._token = token
        self._headers = list(headers)
        self._max_message_size = max_message_size
        self._timeout = timeout
        self._pending: list[Frame] = list(pending)
        self._closed: TransportClosed | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._idle = trio.Event()  # no request in flight
        self._idle.set()
        self._client_closed = False

    @property
    def closed(self) -> TransportClosed | None:
        return self._closed

    @property
    def _poll_limit(self) -> int:
        # Each message is a JSON string inside the JSON answer: escaping may double it.
        return 2 * self._max_message_size + MAX_SMALL_BODY

    # -- requests ------------------------------------------------------------------------------

    async def _request(
        self, method: str, limit: int, content: bytes | None = None, content_type: str = ""
    ) -> bytes:
        """One request with the session token; the body of its 200 answer (at most ``limit``
        bytes). Raises ``_Refused`` for anything else, or ``TransportClosed`` once closed."""
        if self._closed is not None:
            raise self._closed
        headers = [*self._headers, ("accept-encoding", "identity")]
        if content_type:
            headers.append(("content-type", content_type))
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            if self._idle.is_set():
                self._idle = trio.Event()
            try:
                with trio.fail_after(self._timeout):
                    return await _exchange(
                        self._client,
                        method,
                        _with_token(self._url, self._token),
                        headers,
                        content,
                        limit,
                    )
            except trio.TooSlowError:
                raise _Refused(CLOSE_NO_STATUS, "timeout") from None
            finally:
                self._scopes.discard(scope)
                if not self._scopes:
                    self._idle.set()
        # Cancelled by close(): report how the transport ended.
        assert self._closed is not None
        raise self._closed

    def _close(self, code: int, reason: str | None) -> TransportClosed:
        if self._closed is None:
            self._closed = TransportClosed(code, reason)
        for scope in self._scopes:
            scope.cancel()
        return self._closed

    # -- receiving -----------------------------------------------------------------------------

    async def receive_batch(self) -> list[Frame]:
        """The messages of the next poll that brings any (at least one).

        Raises:
            TransportClosed: the session ended (after the messages that preceded the end).
        """
        if self._pending:
            pending, self._pending = self._pending, []
            return pending
        while True:
            try:
                data = await self._request("GET", self._poll_limit)
                status, token, messages = _decode_body(data)
            except _Refused as refused:
                raise self._close(refused.code, refused.reason) from None
            if token is not None:
                self._token = token
            if status == 200 and messages:
                frames: list[Frame] = []
                frames.extend(messages)
                return frames
            if status in (200, 204):
                continue
            if status == 410:
                raise self._close(CLOSE_SESSION_GONE, "session_gone")
            if status == 403:
                raise self._close(CLOSE_POLICY, "forbidden")
            raise self._close(CLOSE_INTERNAL_ERROR, f"LongPoll status {status}")

    # -- sending -------------------------------------------------------------------------------

    async def send_many(self, frames: Sequence[Frame]) -> None:
        """POST ``frames`` in order: ndjson batches of up to 100, each after the last is
        acknowledged.

        Raises:
            TransportClosed: the transport is closed, or the server did not accept a batch
                (the transport closes then).
        """
        if self._closed is not None:
            raise self._closed
        for body, content_type in _batches(frames):
            try:
                data = await self._request("POST", MAX_SMALL_BODY, body, content_type)
                status, _, _ = _decode_body(data)
            except _Refused as refused:
                raise self._close(refused.code, refused.reason) from None
            if status == 410:
                raise self._close(CLOSE_SESSION_GONE, "session_gone")
            if status != 200:
                raise self._close(CLOSE_INTERNAL_ERROR, f"LongPoll POST status {status}")

    # -- closing -------------------------------------------------------------------------------

    async def aclose(
        self, code: int = 1000, reason: str | None = None, frames: Sequence[Frame] = ()
    ) -> None:
        """Send ``frames``, then end the session on our side (LongPoll has no closing
        handshake: the server stops the session when it is no longer polled)."""
        if frames and self._closed is None:
            try:
                await self.send_many(frames)
            except TransportClosed:
                pass
        self._close(code, reason or None)
        await self._idle.wait()
        await self._close_client()

    async def abort(self) -> None:
        """Stop every request and close the HTTP connections."""
        self._close(CLOSE_ABNORMAL, None)
        await self._idle.wait()
        await self._close_client()

    async def _close_client(self) -> None:
        if not self._client_closed:
            self._client_closed = True
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await self._client.aclose()


def _batches(frames: Sequence[Frame]) -> list[tuple[bytes, str]]:
    """The POST bodies for ``frames``: consecutive V2 text and binary frames as ndjson, up to
    ``MAX_POST_BATCH`` lines each; any other text frame alone as JSON."""
    bodies: list[tuple[bytes, str]] = []
    lines: list[str] = []

    def flush() -> None:
        if lines:
            bodies.append(("\n".join(lines).encode(), "application/x-ndjson"))
            lines.clear()

    for frame in frames:
        if isinstance(frame, bytes | bytearray | memoryview):
            lines.append(base64.b64encode(bytes(frame)).decode("ascii"))
        elif frame.startswith("["):
            lines.append(frame)
        else:
            flush()
            bodies.append((frame.encode(), "application/json"))
            continue
        if len(lines) == MAX_POST_BATCH:
            flush()
    flush()
    return bodies


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    content: bytes | None,
    limit: int,
) -> bytes:
    """Send one request; return the body of an HTTP 200 answer, read up to ``limit`` bytes.

    Raises ``_Refused``: another HTTP status (``status`` set), a body over ``limit`` (1009),
    or a failed connection (1006).
    """
    import httpx

    try:
        async with client.stream(method, url, headers=headers, content=content) as response:
            if response.status_code != 200:
                raise _Refused(
                    CLOSE_INTERNAL_ERROR,
                    f"HTTP {response.status_code}",
                    response.status_code,
                )
            data = await _read_at_most(response, limit)
            if data is None:
                raise _Refused(CLOSE_TOO_BIG, f"LongPoll answer over {limit} bytes")
            return data
    except httpx.HTTPError as exc:
        raise _Refused(CLOSE_ABNORMAL, f"LongPoll request failed: {exc!r}") from None


async def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body of ``response``, or ``None`` once it passes ``limit`` bytes (the connection is
    closed then, and nothing more is read)."""
    import httpx

    chunks = response.aiter_raw()
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            break
    else:
        return bytes(data)
    # Close the connection, then let the (now failing) read end httpx's and httpcore's
    # generators under this one: left suspended, they would only be finalized by the GC.
    await response.aclose()
    try:
        while True:
            await chunks.__anext__()
    except (StopAsyncIteration, httpx.HTTPError, httpx.StreamError):
        pass
    return None


def _new_client(ssl_context: ssl.SSLContext | None, proxy: str | None) -> httpx.AsyncClient:
    import httpx

    httpx_logger = logging.getLogger("httpx")
    if _REDACT not in httpx_logger.filters:
        httpx_logger.addFilter(_REDACT)

    # The socket resolved the proxy (its option, or the environment) already: httpx must not
    # read the environment again, or ``proxy=None`` would not mean "direct".
    return httpx.AsyncClient(
        proxy=proxy,
        verify=ssl_context if ssl_context is not None else True,
        timeout=None,  # every request is bounded by the transport's own deadline
        trust_env=False,
        follow_redirects=False,
    )


async def open_longpoll(
    url: str,
    *,
    auth_token: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int,
    request_timeout: float = 20.0,
    proxy: str | None = None,
) -> LongPollTransport:
    """Start a LongPoll session at ``url`` (the socket's WebSocket URL, params included).

    ``auth_token`` is sent as the ``X-Phoenix-AuthToken`` header (Phoenix 1.8 ``auth_token:
    true``); ``request_timeout`` bounds every request (phoenix.js ``longpollerTimeout``);
    ``proxy`` is the proxy URL to go through (``_network.proxy_for``), or ``None``.

    Raises:
        ConnectError: the server refused the session (``status`` 403, or the HTTP status of an
            answer that is not LongPoll's, such as 404 where LongPoll is not enabled), or could
            not be reached.
    """
    endpoint = longpoll_url(url)
    where = redact_url(endpoint)
    request_headers = list(headers)
    if auth_token:
        request_headers.append(("x-phoenix-authtoken", auth_token))
    client = _new_client(ssl_context, proxy)
    handed_over = False
    try:
        try:
            with trio.fail_after(request_timeout):
                data = await _exchange(
                    client,
                    "GET",
                    endpoint,
                    [*request_headers, ("accept-encoding", "identity")],
                    None,
                    2 * max_message_size + MAX_SMALL_BODY,
                )
            status, token, messages = _decode_body(data)
        except trio.TooSlowError:
            raise ConnectError(f"LongPoll connection to {where} timed out") from None
        except _Refused as refused:
            if refused.status is not None and refused.code == CLOSE_INTERNAL_ERROR:
                hint = " (is LongPoll enabled on this socket?)" if refused.status == 404 else ""
                raise ConnectError(
                    f"the server refused the LongPoll connection to {where}: "
                    f"HTTP {refused.status}{hint}",
                    status=refused.status,
                ) from None
            raise ConnectError(
                f"LongPoll connection to {where} failed: {refused.reason}"
            ) from None
        if status == 403:
            raise ConnectError(
                f"the server refused the LongPoll connection to {where}: status 403",
                status=403,
            )
        if status != 410 or token is None:
            raise ConnectError(
                f"LongPoll connection to {where} failed: status {status} without a session"
            )
        transport = LongPollTransport(
            client,
            endpoint,
            token,
            headers=request_headers,
            max_message_size=max_message_size,
            timeout=request_timeout,
            pending=messages or [],
        )
        handed_over = True
        return transport
    finally:
        if not handed_over:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await client.aclose()
