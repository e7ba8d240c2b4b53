"""The demo endpoint: a chat room with presence, and an echo channel for tests.

``room:*`` (`RoomChannel`): join with ``{"user": name}`` (default ``"anonymous"``); the reply is
``{"topic": topic, "user": name}``. After the join the user is tracked in presence (meta
``{"online_at": unix seconds}``) and ``presence_state`` is pushed. Events:

* ``new_msg`` ``{"body": ...}`` → broadcast ``new_msg`` ``{"body": ..., "user": name}`` to the
  room, reply ok ``{}``;
* ``set_status`` ``{"status": ...}`` → presence update of the user's meta, reply ok ``{}``;
* anything else → reply error ``{"reason": "unknown event"}``.

``echo:*`` (`EchoChannel`): join params ``{"reject": reason}`` → error ``{"reason": reason}``;
``{"crash": true}`` → the join raises (``{"reason": "join crashed"}``); otherwise ok with the
join params as reply. Events:

======================  ===============================================================
``echo``                reply ok with the payload (bytes in → binary reply out)
``error``               reply error with the payload
``noreply``             no reply at all
``crash``               raise → ``phx_error`` ``{"reason": "channel_crash"}``
``stop``                stop normally, no reply → ``phx_close``
``stop_reply``          reply ok ``{}``, then stop → ``phx_close``
``push``                push ``payload["event"]`` with ``payload["payload"]``, reply ok
``broadcast``           broadcast ``payload["event"]`` with ``payload["payload"]``, reply ok
``push_binary``         push ``payload["event"]`` with ``bytes(payload["bytes"])``, reply ok
``broadcast_binary``    broadcast likewise with bytes, reply ok
``reply_later``         reply ok ``payload["payload"]`` after ``payload["delay"]`` seconds
anything else           reply error ``{"reason": "unknown event"}``
======================  ===============================================================

`demo_connect` names each connection after its ``user`` connect param (socket id
``user_socket:<user>``), so a test can drop one user's connections. The chat demo
(``trio_phoenix.demo``: ``make demo``, ``trio-phoenix demo``, ``examples/chat.py``) runs a
server with these channels and adds simulated users.
"""

from __future__ import annotations

import time
from typing import Any, Final

import trio

from ._channel import ChannelSocket, SocketRef
from ._handlers import ChannelFactory, ChannelHandler, HandleInResult, Reply, Stop
from ._handshake import ConnectInfo

__all__ = [
    "DEMO_ROOM",
    "EchoChannel",
    "RoomChannel",
    "demo_channels",
    "demo_connect",
    "demo_socket_id",
]

_UNKNOWN = Reply.error({"reason": "unknown event"})


def demo_channels() -> dict[str, ChannelFactory]:
    """The demo routes: ``{"room:*": RoomChannel, "echo:*": EchoChannel}``."""
    return {"room:*": RoomChannel, "echo:*": EchoChannel}


class RoomChannel(ChannelHandler):
    """``room:*``: chat with presence (see the module docstring)."""

    def __init__(self) -> None:
        self.user = "anonymous"
        self.meta: dict[str, Any] = {}

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        """Accept everyone; remember the user name from the join params."""
        await trio.lowlevel.checkpoint()
        if isinstance(payload, dict) and payload.get("user") is not None:
            self.user = str(payload["user"])
        return Reply.ok({"topic": topic, "user": self.user})

    async def after_join(self, socket: ChannelSocket) -> None:
        """Track the user and push the presence state, as the Phoenix guide does."""
        await trio.lowlevel.checkpoint()
        self.meta = {"online_at": int(time.time())}
        socket.server.presence.track(socket, self.user, self.meta)
        socket.server.presence.push_state(socket)

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        """Chat messages and status updates."""
        await trio.lowlevel.checkpoint()
        body = payload if isinstance(payload, dict) else {}
        if event == "new_msg":
            socket.broadcast("new_msg", {"body": body.get("body"), "user": self.user})
            return Reply.ok()
        if event == "set_status":
            self.meta = {**self.meta, "status": body.get("status")}
            socket.server.presence.update(socket, self.user, self.meta)
            return Reply.ok()
        return _UNKNOWN


class EchoChannel(ChannelHandler):
    """``echo:*``: every server behaviour on demand (see the module docstring)."""

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        """Refuse or crash when asked to; else accept, echoing the join params."""
        await trio.lowlevel.checkpoint()
        params = payload if isinstance(payload, dict) else {}
        if "reject" in params:
            return Reply.error({"reason": params["reject"]})
        if params.get("crash"):
            raise RuntimeError("join crash requested")
        return Reply.ok(params)

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        """Dispatch on the event name."""
        await trio.lowlevel.checkpoint()
        if event == "echo":
            return Reply.ok(payload)
        if event == "error":
            return Reply.error(payload)
        if event == "noreply":
            return None
        if event == "crash":
            raise RuntimeError("crash requested")
        if event == "stop":
            return Stop()
        if event == "stop_reply":
            return Stop(reply=Reply.ok())
        params = payload if isinstance(payload, dict) else {}
        if event in ("push", "push_binary"):
            socket.push(str(params["event"]), _outgoing(event, params))
            return Reply.ok()
        if event in ("broadcast", "broadcast_binary"):
            socket.broadcast(str(params["event"]), _outgoing(event, params))
            return Reply.ok()
        if event == "reply_later":
            delay = float(params.get("delay", 0))
            socket.start_soon(_reply_later, socket.socket_ref(), delay, params.get("payload", {}))
            return None
        return _UNKNOWN


def _outgoing(event: str, params: dict[str, Any]) -> Any:
    if event.endswith("_binary"):
        return bytes(params["bytes"])
    return params["payload"]


async def _reply_later(ref: SocketRef, delay: float, payload: Any) -> None:
    await trio.sleep(delay)
    ref.reply(Reply.ok(payload))


#: The chat room of the demo endpoint (the topic of the Phoenix channels guide).
DEMO_ROOM: Final = "room:lobby"


def demo_socket_id(user: str) -> str:
    """The socket id `demo_connect` gives ``user``'s connections: ``"user_socket:<user>"``."""
    return f"user_socket:{user}"


def demo_connect(params: dict[str, Any], info: ConnectInfo) -> str | None:
    """The demo's connect hook: accept everyone; the ``user`` connect param names the socket.

    Like a Phoenix app's ``id/1``, the socket id (`demo_socket_id`) lets the server reach all of
    one user's connections, e.g. with ``server.disconnect(demo_socket_id("ann"))``.
    """
    user = params.get("user")
    return demo_socket_id(str(user)) if user else None
