"""The chat demo: the chat client of ``examples/chat.py``, and a room to run it in.

`chat` is the whole client: it connects, joins ``room:lobby``, prints the room's
``new_msg`` broadcasts and who comes and goes, pushes every line it is given as ``new_msg``
(``/who`` lists who is online) and leaves when the lines end. Reconnecting and rejoining after
a dropped connection is the socket's job: the client only reports it. ``examples/chat.py``
runs it on the command line; ``trio-phoenix demo`` and ``make demo`` run `run_chat_demo`.

`open_chat_demo` is the room: the test server of ``trio_phoenix.testing`` with its demo
channels, plus simulated users (alice and bob) who join with trio_phoenix itself and answer some
messages. `ChatDemo.script` is what the scripted user types; it paces itself on what the server
sees and makes the server drop the user's connection half-way, so the transcript shows a
reconnect and a rejoin. No Phoenix is needed: it all runs in-process.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias, Unpack, final

import attrs
import trio

from ._channel import Channel
from ._exceptions import PhoenixError
from ._groups import owning_nursery
from ._lifecycle import ChannelJoined, Connected, Disconnected, LifecycleEvent
from ._open import open_socket
from ._subscription import Subscription
from .proto import Message, PresenceChange, PresenceJoin, PresenceLeave, PresenceSynced
from .testing import (
    DEMO_ROOM,
    ConnectHook,
    ConnectInfo,
    ConnectResult,
    Reject,
    TestServer,
    TestServerOptions,
    demo_channels,
    demo_connect,
    demo_socket_id,
    open_test_server,
)

__all__ = [
    "DEMO_USERS",
    "ChatClient",
    "ChatDemo",
    "chat",
    "open_chat_demo",
    "run_chat_demo",
]


# -- the client ---------------------------------------------------------------------------------


async def chat(url: str, name: str, lines: AsyncIterable[str]) -> None:
    """Chat in ``room:lobby`` as ``name``: push each line, print what happens; leave when the
    lines end."""
    async with open_socket(url, params={"user": name}) as socket:
        print(f"* connected to {url}")
        channel = socket.channel(DEMO_ROOM, {"user": name})
        # Subscribe before joining: nothing the server sends right after the join is missed.
        async with (
            socket.lifecycle() as events,
            channel.subscribe("new_msg") as messages,
            channel.presence().changes() as changes,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_show_connection, events)
            nursery.start_soon(_show_messages, messages)
            nursery.start_soon(_show_presence, changes, channel, name)
            async with channel:  # joins here; leaves at the end of the block
                print(f"* joined {DEMO_ROOM}: {channel.join_response}")
                async for line in lines:
                    if line == "/who":
                        print("* online:", ", ".join(channel.presence().list(lambda key, _: key)))
                    elif line:
                        try:
                            await channel.push("new_msg", {"body": line})  # the ok reply
                        except PhoenixError as exc:  # error reply, timeout, reply lost...
                            print(f"! not sent: {exc}")
            print(f"* left {DEMO_ROOM}")
            nursery.cancel_scope.cancel()  # stop the printers


async def _show_messages(messages: Subscription[Message]) -> None:
    """Print the room's chat messages (everyone's, ours included)."""
    async for message in messages:
        print(f"<{message.payload.get('user', '?')}> {message.payload.get('body')}")


async def _show_presence(changes: Subscription[PresenceChange], channel: Channel, me: str) -> None:
    """Print who is online once the first presence state is in, then who comes and goes."""
    synced = False
    async for change in changes:
        if isinstance(change, PresenceSynced):
            if not synced:
                print("* online:", ", ".join(channel.presence().list(lambda key, _: key)))
            synced = True
        elif not synced or change.key == me:
            continue
        elif isinstance(change, PresenceJoin) and change.current is None:
            print(f"* {change.key} joined")
        elif isinstance(change, PresenceLeave) and not change.current["metas"]:
            print(f"* {change.key} left")


async def _show_connection(events: Subscription[LifecycleEvent]) -> None:
    """Report the socket's ups and downs; the socket reconnects and rejoins by itself."""
    async for event in events:
        if isinstance(event, Disconnected):
            print(f"* connection closed (code {event.code}); reconnecting")
        elif isinstance(event, Connected) and event.connects > 1:
            print("* reconnected")
        elif isinstance(event, ChannelJoined) and event.rejoin:
            print(f"* rejoined {event.topic}")


# -- the embedded side: a server with simulated users, and the script -------------------------

#: The simulated users of the chat demo.
DEMO_USERS: Final = ("alice", "bob")

#: A chat client as the demo runs it: ``chat(url, name, lines)`` (see `chat`).
ChatClient: TypeAlias = Callable[[str, str, AsyncIterable[str]], Awaitable[None]]

# What the simulated users answer: (user, any of these words, answer); the words are matched
# against the lower-cased words of a message, and {user} / {room} are filled in.
_ANSWERS: Final = (
    ("alice", frozenset({"hello", "hi", "hey"}), "hi {user}, welcome to {room}!"),
    ("bob", frozenset({"trio"}), "{user}: yes, structured concurrency all the way down"),
    ("alice", frozenset({"back"}), "welcome back, {user}!"),
)
_WAIT_LIMIT: Final = 10.0  # seconds the script waits for the server before giving up


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
    _nursery: trio.Nursery | None = attrs.field(default=None, kw_only=True, alias="nursery")
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
    async with open_test_server(demo_channels(), **options) as server, owning_nursery() as nursery:
        demo = ChatDemo(server, token=token, nursery=nursery)
        for user in users:
            await demo.add_user(user)
        try:
            yield demo
        finally:
            demo._nursery = None


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
    client: ChatClient | None = None, *, name: str = "you", pace: float = 0.4
) -> None:
    """The scripted chat demo (``trio-phoenix demo``): ``chat`` (default `chat`, the client of
    ``examples/chat.py``) on `open_chat_demo`."""
    async with open_chat_demo() as demo:
        print(
            f"# an embedded Phoenix-protocol server on {demo.url},"
            f" with {' and '.join(demo.users)} in {demo.room}"
        )
        await (client or chat)(demo.url, name, demo.script(name, pace=pace))
    print("# done: that was trio_phoenix on an in-process server (no Phoenix needed)")
