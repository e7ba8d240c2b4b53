"""The scenario app for `trio_phoenix.testing`: the same channels as ``tests/phoenix_app``.

Both servers implement one protocol so that one scenario suite runs against both:

* the socket accepts a missing token or ``"secret"`` (param ``token`` or ``auth_token``) and
  refuses any other with HTTP 403; a ``user`` param names the socket ``user_socket:<user>``;
* ``echo:*`` is the demo's `~trio_phoenix.testing.EchoChannel` plus ``bulk`` (broadcast
  ``count`` messages ``{"n": i}``), ``sleep`` (reply after ``ms`` milliseconds, blocking the
  channel) and ``disconnect`` (disconnect this socket's id, no reply);
* ``room:*`` is the demo's `~trio_phoenix.testing.RoomChannel` plus ``untrack`` (the user) and
  ``track`` (another key, ``{"key": k, "meta": {...}}``).
"""

from __future__ import annotations

from typing import Any

import trio

from trio_phoenix.testing import (
    Accept,
    ChannelFactory,
    ChannelSocket,
    ConnectInfo,
    EchoChannel,
    HandleInResult,
    Reject,
    Reply,
    RoomChannel,
)

TOKEN = "secret"


def connect(params: dict[str, Any], info: ConnectInfo) -> Accept:
    """``UserSocket.connect/3`` and ``id/1`` of the Phoenix app."""
    token = info.auth_token if info.auth_token is not None else params.get("token")
    if token not in (None, TOKEN):
        raise Reject(403)
    user = params.get("user")
    return Accept(id=f"user_socket:{user}" if user else None)


class ScenarioEcho(EchoChannel):
    """``echo:*`` with the scenario extras."""

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        """The extras, then the demo's events."""
        params = payload if isinstance(payload, dict) else {}
        if event == "bulk":
            for n in range(1, int(params["count"]) + 1):
                socket.broadcast(str(params["event"]), {"n": n})
            return Reply.ok({"count": params["count"]})
        if event == "sleep":
            await trio.sleep(params["ms"] / 1000)
            return Reply.ok({"slept": params["ms"]})
        if event == "disconnect":
            if socket.socket_id is not None:
                socket.server.disconnect(socket.socket_id)
            return None
        return await super().handle_in(event, payload, socket)


class ScenarioRoom(RoomChannel):
    """``room:*`` with ``untrack`` and ``track``."""

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        """The extras, then the demo's events."""
        params = payload if isinstance(payload, dict) else {}
        if event == "untrack":
            socket.server.presence.untrack(socket, self.user)
            return Reply.ok()
        if event == "track":
            socket.server.presence.track(socket, str(params["key"]), params.get("meta", {}))
            return Reply.ok()
        return await super().handle_in(event, payload, socket)


def channels() -> dict[str, ChannelFactory]:
    """The routes of the scenario app."""
    return {"echo:*": ScenarioEcho, "room:*": ScenarioRoom}
