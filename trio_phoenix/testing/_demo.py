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

The chat demo (``make demo``, ``trio-phoenix demo``, ``examples/chat.py``) runs on
`open_chat_demo`: a server with these channels and `demo_connect` (socket id
``user_socket:<user>``), plus simulated users who join ``room:lobby`` with trio_phoenix itself
and answer some messages. `ChatDemo.script` is what the scripted user types; it paces itself on
what the server sees and makes the server drop the user's connection half-way, so the transcript
shows a reconnect and rejoin. `run_chat_demo` puts it all together with `demo_chat`, the chat
client of ``examples/chat.py``.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias, Unpack, final

import attrs
import trio

from .._channel import Channel
from .._groups import raise_preferred
from .._lifecycle import ChannelJoined, Connected, Disconnected, LifecycleEvent
from .._open import open_socket
from .._subscription import Subscription
from ..proto import (
    Message,
    PhoenixError,
    PresenceChange,
    PresenceJoin,
    PresenceLeave,
    PresenceSynced,
)
from ._channel import ChannelSocket, SocketRef
from ._handlers import ChannelFactory, ChannelHandler, HandleInResult, Reply, Stop
from ._handshake import ConnectHook, ConnectInfo, ConnectResult, Reject
from ._server import TestServer, TestServerOptions, open_test_server

__all__ = [
    "DEMO_ROOM",
    "DEMO_USERS",
    "ChatClient",
    "ChatDemo",
    "EchoChannel",
    "RoomChannel",
    "demo_channels",
    "demo_chat",
    "demo_connect",
    "demo_socket_id",
    "open_chat_demo",
    "run_chat_demo",
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


# -- the chat demo -----------------------------------------------------------------------------

#: The room of the chat demo (the topic of the Phoenix channels guide).
DEMO_ROOM: Final = "room:lobby"
#: The simulated users of the chat demo.
DEMO_USERS: Final = ("alice", "bob")

#: A chat client as the demo runs it: ``chat(url, name, lines)`` (see `demo_chat`).
ChatClient: TypeAlias = Callable[[str, str, AsyncIterable[str]], Awaitable[None]]

# What the simulated users answer: (user, any of these words, answer); the words are matched
# against the lower-cased words of a message, and {user} / {room} are filled in.
_ANSWERS: Final = (
    ("alice", frozenset({"hello", "hi", "hey"}), "hi {user}, welcome to {room}!"),
    ("bob", frozenset({"trio"}), "{user}: yes, structured concurrency all the way down"),
    ("alice", frozenset({"back"}), "welcome back, {user}!"),
)
_WAIT_LIMIT: Final = 10.0  # seconds the script waits for the server before giving up


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


def _answer(user: str, payload: Any, room: str) -> str | None:
    if not isinstance(payload, dict):
        return None
    words = set(re.findall(r"[a-z']+", str(payload.get("body") or "").lower()))
    sender = str(payload.get("user") or "someone")
    for who, triggers, answer in _ANSWERS:
        if who == user and words & triggers:
            return answer.format(user=sender, room=room)
    return None


@final
@attrs.define(eq=False)
class ChatDemo:
    """The embedded side of the chat demo: the server, its simulated users, and the script.

    Get one from `open_chat_demo`. Point a chat client at `url`; use `script` as its input for
    the scripted demo.
    """

    #: The running test server (demo channels, `demo_connect`).
    server: TestServer
    #: The chat room.
    room: str = DEMO_ROOM
    _token: str | None = attrs.field(default=None, kw_only=True, alias="token")
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _users: dict[str, trio.CancelScope] = attrs.field(factory=dict, init=False)
    _channels: dict[str, Channel] = attrs.field(factory=dict, init=False)
    _gone: dict[str, trio.Event] = attrs.field(factory=dict, init=False)
    _answers: int = attrs.field(default=0, init=False)
    _changed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot, init=False)

    @property
    def url(self) -> str:
        """The socket's mount URL, for ``open_socket``."""
        return self.server.url

    @property
    def users(self) -> list[str]:
        """The simulated users that are in the room now."""
        return list(self._channels)

    def online(self) -> list[str]:
        """Who the server tracks as present in the room, in key order."""
        return list(self.server.presence.list(self.room))

    def disconnect(self, user: str) -> None:
        """Close every connection of ``user`` with 1001, as a redeploy would."""
        self.server.disconnect(demo_socket_id(user))

    async def add_user(self, name: str) -> None:
        """Start a simulated user who joins the room; returns once it has joined.

        Raises:
            RuntimeError: the demo is not running (use `open_chat_demo`).
        """
        if self._nursery is None:
            raise RuntimeError("the chat demo is not running")
        await self._nursery.start(self._run_user, name)

    async def say(self, user: str, body: str) -> None:
        """Make the simulated ``user`` send ``body`` to the room."""
        await self._channels[user].push("new_msg", {"body": body})

    async def remove_user(self, user: str) -> None:
        """Make the simulated ``user`` leave the room and disconnect; returns once it has."""
        self._users[user].cancel()
        await self._gone[user].wait()

    async def _run_user(self, name: str, *, task_status: trio.TaskStatus[None]) -> None:
        self._gone[name] = gone = trio.Event()
        try:
            with trio.CancelScope() as self._users[name]:
                async with open_socket(
                    self.url, params={"user": name}, auth_token=self._token
                ) as socket:
                    channel = socket.channel(self.room, {"user": name})
                    async with channel.subscribe("new_msg") as messages, channel:
                        self._channels[name] = channel
                        task_status.started()
                        async for message in messages:
                            if message.payload.get("user") in self._users:
                                continue  # simulated users do not talk to each other
                            answer = _answer(name, message.payload, self.room)
                            if answer is None:
                                continue
                            try:
                                await channel.push("new_msg", {"body": answer})
                            except PhoenixError:  # e.g. the reply was lost in a reconnect
                                continue
                            self._answers += 1
                            self._changed.unpark_all()
        finally:
            self._users.pop(name, None)
            self._channels.pop(name, None)
            gone.set()

    async def _wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        try:
            with trio.fail_after(_WAIT_LIMIT):
                while not condition():
                    with trio.move_on_after(0.01):
                        await self._changed.park()
        except trio.TooSlowError:
            raise RuntimeError(f"the chat demo waited in vain for {what}") from None

    async def script(self, name: str = "you", *, pace: float = 0.4) -> AsyncIterator[str]:
        """The lines the scripted user ``name`` types, each printed as ``> line``.

        The script waits for what it expects the server to see (the user's join, the answers
        of the default simulated users, the rejoin) and ``pace`` seconds more before each line,
        so that the transcript reads in order. Half-way it makes the server drop the user's
        connection: the client should reconnect and rejoin on its own. It ends with ``/quit``:
        the printed line is the end of the input, the line itself is not yielded.
        """
        start = self._answers
        await self._wait_for(f"{name} to join", lambda: name in self.online())
        for answers, line in enumerate(("hello everyone!", "anyone here using Trio?"), 1):
            await trio.sleep(pace)
            yield self._typed(line)
            await self._wait_for("an answer", self._answered(start + answers))
        if "bob" in self._channels:
            await trio.sleep(pace)
            await self.say("bob", "gotta run, bye!")
            await self.remove_user("bob")
        await trio.sleep(pace)
        print(
            "# the server drops our connection (code 1001, as on a redeploy):"
            " the client reconnects and rejoins on its own"
        )
        rejoined = self._rejoined(name)
        self.disconnect(name)
        await self._wait_for(f"{name} to rejoin", rejoined)
        await trio.sleep(pace)
        yield self._typed("/who")
        await trio.sleep(pace)
        yield self._typed("back again!")
        await self._wait_for("an answer", self._answered(start + 3))
        await trio.sleep(pace)
        self._typed("/quit")  # the end of the input: the client leaves

    def _answered(self, count: int) -> Callable[[], bool]:
        """A condition: the simulated users have answered ``count`` messages in all."""
        return lambda: self._answers >= count

    def _rejoined(self, name: str) -> Callable[[], bool]:
        """A condition: ``name`` joined the room on a connection accepted from now on."""
        first = len(self.server.accepted_connections)
        socket_id = demo_socket_id(name)

        def condition() -> bool:
            return any(
                connection.id == socket_id and self.room in connection.topics
                for connection in self.server.accepted_connections[first:]
            )

        return condition

    @staticmethod
    def _typed(line: str) -> str:
        print(f"> {line}")
        return line


@asynccontextmanager
async def open_chat_demo(
    users: tuple[str, ...] = DEMO_USERS,
    *,
    token: str | None = None,
    **options: Unpack[TestServerOptions],
) -> AsyncIterator[ChatDemo]:
    """Run the chat demo's server, with ``users`` joined to ``room:lobby``, for the block.

    ``token`` makes the server refuse connections without that auth token (Phoenix's
    ``auth_token: true`` socket option; the simulated users present it). Other options are
    `TestServer`'s (``host``, ``port``, ...); ``connect`` defaults to `demo_connect`.

    Example:
        >>> async with open_chat_demo() as demo:
        ...     await demo_chat(demo.url, "you", demo.script("you"))
    """
    connect = options.get("connect") or demo_connect
    if token is not None:
        connect = _require_token(token, connect)
        options["auth_token"] = True
    options["connect"] = connect
    user_error: BaseException | None = None
    try:
        async with open_test_server(demo_channels(), **options) as server:
            demo = ChatDemo(server, token=token)
            async with trio.open_nursery() as nursery:
                demo._nursery = nursery
                for user in users:
                    await demo.add_user(user)
                try:
                    yield demo
                except BaseException as exc:
                    user_error = exc
                    raise
                finally:
                    demo._nursery = None
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_preferred(group, user_error)


def _require_token(token: str, connect: ConnectHook) -> ConnectHook:
    """Wrap ``connect`` so that connections without the auth token ``token`` get a 403."""

    async def check(params: dict[str, Any], info: ConnectInfo) -> ConnectResult:
        await trio.lowlevel.checkpoint()
        if info.auth_token != token:
            return Reject(403)
        result = connect(params, info)
        return await result if inspect.isawaitable(result) else result

    return check


async def run_chat_demo(
    chat: ChatClient | None = None, *, name: str = "you", pace: float = 0.4
) -> None:
    """The scripted chat demo: ``chat`` (default `demo_chat`) on `open_chat_demo`."""
    async with open_chat_demo() as demo:
        print(
            f"# an embedded Phoenix-protocol server on {demo.url},"
            f" with {' and '.join(demo.users)} in {demo.room}"
        )
        await (chat or demo_chat)(demo.url, name, demo.script(name, pace=pace))
    print("# done: that was trio_phoenix on an in-process server (no Phoenix needed)")


async def demo_chat(url: str, name: str, lines: AsyncIterable[str]) -> None:
    """The chat client of ``examples/chat.py`` (same behaviour and output), for the CLI demo.

    Joins ``room:lobby`` as ``name``, prints the room's messages, arrivals and departures and
    the connection's ups and downs, pushes each line as ``new_msg`` (``/who`` lists who is
    online) and leaves when the lines end.
    """
    async with open_socket(url, params={"user": name}) as socket:
        print(f"* connected to {url}")
        channel = socket.channel(DEMO_ROOM, {"user": name})
        async with (
            socket.lifecycle() as events,
            channel.subscribe("new_msg") as messages,
            channel.presence().changes() as changes,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_show_connection, events)
            nursery.start_soon(_show_messages, messages)
            nursery.start_soon(_show_presence, changes, channel, name)
            async with channel:
                print(f"* joined {DEMO_ROOM}: {channel.join_response}")
                async for line in lines:
                    if line == "/who":
                        print("* online:", ", ".join(channel.presence().list(lambda key, _: key)))
                    elif line:
                        try:
                            await channel.push("new_msg", {"body": line})
                        except PhoenixError as exc:
                            print(f"! not sent: {exc}")
            print(f"* left {DEMO_ROOM}")
            nursery.cancel_scope.cancel()


async def _show_messages(messages: Subscription[Message]) -> None:
    async for message in messages:
        print(f"<{message.payload.get('user', '?')}> {message.payload.get('body')}")


async def _show_presence(
    changes: Subscription[PresenceChange], channel: Channel, name: str
) -> None:
    synced = False
    async for change in changes:
        if isinstance(change, PresenceSynced):
            if not synced:
                print("* online:", ", ".join(channel.presence().list(lambda key, _: key)))
            synced = True
        elif not synced or change.key == name:
            continue
        elif isinstance(change, PresenceJoin) and change.current is None:
            print(f"* {change.key} joined")
        elif isinstance(change, PresenceLeave) and not change.current["metas"]:
            print(f"* {change.key} left")


async def _show_connection(events: Subscription[LifecycleEvent]) -> None:
    async for event in events:
        if isinstance(event, Disconnected):
            print(f"* connection closed (code {event.code}); reconnecting")
        elif isinstance(event, Connected) and event.connects > 1:
            print("* reconnected")
        elif isinstance(event, ChannelJoined) and event.rejoin:
            print(f"* rejoined {event.topic}")
