"""The WebSocket upgrade of one TCP connection, wired to Phoenix's checks.

`upgrade` reads the upgrade request of a TCP connection that `TestServer` routed here (its first
line already read), decides it with `decide` (Phoenix's checks, in Phoenix's order; the pure
pieces are in ``_handshake``), answers it, and hands back the `ServerConnection` for the server
to serve.
`call_connect` runs the application's connect hook, for WebSocket and LongPoll alike: a
handler exception is a 500, recorded in `TestServer.crashes`, never an exception here.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import attrs
import trio

from trio_phoenix.proto._serializer import Serializer

from ._connection import ServerConnection
from ._faults import GatedStream
from ._handshake import (
    Accept,
    ConnectInfo,
    Reject,
    origin_allowed,
    parse_params,
    serializer_for_vsn,
    split_auth_token,
)
from ._websocket import Upgrade, read_upgrade

if TYPE_CHECKING:
    from ._server import TestServer

__all__ = ["call_connect", "decide", "upgrade"]

logger: Final = logging.getLogger("trio_phoenix.testing")


@attrs.frozen(kw_only=True)
class _Accepted:
    socket_id: str | None
    assigns: dict[str, Any]
    params: dict[str, Any]
    info: ConnectInfo
    serializer: Serializer
    subprotocol: str | None


async def upgrade(server: TestServer, stream: GatedStream, head: bytes) -> ServerConnection | None:
    """Read, decide and answer an upgrade request; the accepted connection, else ``None``."""
    request: Upgrade | None = None
    with trio.move_on_after(server.handshake_timeout):
        try:
            request = await read_upgrade(stream, head)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
    if request is None:
        return None
    try:
        decision = await decide(server, request, stream)
        if isinstance(decision, Reject):
            server._upgrades_rejected += 1
            await request.reject(decision.status_code, decision.body)
            return None
        websocket = await request.accept(decision.subprotocol, server.max_frame_size)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return None
    return ServerConnection(
        server,
        websocket,
        stream,
        id=decision.socket_id,
        params=decision.params,
        connect_info=decision.info,
        serializer=decision.serializer,
        assigns=decision.assigns,
        idle_timeout=server.idle_timeout,
    )


async def decide(server: TestServer, request: Upgrade, stream: GatedStream) -> _Accepted | Reject:
    """Phoenix's upgrade checks, in Phoenix's order (see ``_handshake``)."""
    if server._reject_status is not None:
        return Reject(server._reject_status)
    target = urlsplit(request.path)
    if target.path.rstrip("/") != server.path + "/websocket":
        return Reject(404)
    params = parse_params(target.query)
    headers = tuple(
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in request.headers
    )
    origin = next((value for name, value in headers if name == "origin"), None)
    if origin is not None and not origin_allowed(origin, server._check_origin, server.host):
        logger.error("rejecting a WebSocket upgrade from origin %r", origin)
        return Reject(403)
    offered = list(request.proposed_subprotocols)
    token: str | None = None
    remaining = offered
    if server._auth_token:
        try:
            token, remaining = split_auth_token(offered)
        except ValueError as exc:
            server._record_crash(exc, "auth token decoding")
            return Reject(500)
    allowed = (["phoenix"] if server._auth_token else []) + list(server._subprotocols)
    subprotocol = None
    if allowed and remaining:
        subprotocol = next((entry for entry in remaining if entry in allowed), None)
        if subprotocol is None:
            return Reject(403)
    serializer = serializer_for_vsn(params.get("vsn"))
    if serializer is None:
        logger.warning("the client requested an unsupported vsn %r", params.get("vsn"))
        return Reject(403)
    try:
        peer = stream.peer()
    except OSError:
        peer = ("", 0)
    info = ConnectInfo(
        path=target.path,
        query_string=target.query,
        headers=headers,
        peer=peer,
        subprotocols=tuple(offered),
        auth_token=token,
    )
    result = await call_connect(server, params, info)
    if isinstance(result, Reject):
        return result
    return _Accepted(
        socket_id=result.id,
        assigns=dict(result.assigns),
        params=params,
        info=info,
        serializer=serializer,
        subprotocol=subprotocol,
    )


async def call_connect(
    server: TestServer, params: dict[str, Any], info: ConnectInfo
) -> Accept | Reject:
    """Run the server's connect hook (sync or async) and read what it answers."""
    if server._connect is None:
        await trio.lowlevel.checkpoint()
        return Accept()
    try:
        result: object = server._connect(params, info)
        if inspect.isawaitable(result):
            result = await result
    except Reject as reject:
        return reject
    except Exception as exc:
        server._record_crash(exc, "connect")
        return Reject(500)
    if isinstance(result, Accept | Reject):
        return result
    if result is None or isinstance(result, str):
        return Accept(id=result)
    logger.error("connect returned %r; expected a socket id, Accept or Reject", result)
    return Reject(403)
