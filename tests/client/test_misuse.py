"""Bad input from the user: each misuse raises a clear, typed error and sends nothing.

Two tables. Misuses of a connected socket and its channels are checked against the server's
record of what it received: after the misuse, a ping goes out and must be the only frame the
server saw since the misuse began (its reply proves everything sent before it has arrived).
Misuses of ``open_socket`` itself must fail before any connection is made. Every error is a
``PhoenixError`` subclass, and its message names the problem.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio

from trio_phoenix import (
    Channel,
    ChannelClosed,
    EncodeError,
    InvalidHeader,
    InvalidParams,
    InvalidURL,
    LocalProtocolError,
    PhoenixError,
    Socket,
    SocketClosed,
    V1JSONSerializer,
    open_socket,
)
from trio_phoenix.testing import ServerConnection, TestServer, demo_channels, open_test_server

TOPIC = "echo:misuse"


@attrs.define(eq=False)
class Setup:
    """A connected socket with ``TOPIC`` joined, and the server's view of the connection."""

    server: TestServer
    socket: Socket
    channel: Channel
    connection: ServerConnection
    mark: int | None = None

    def nothing_sent_from_here(self) -> None:
        self.mark = len(self.connection.received)


@pytest.fixture
async def setup(phoenix_server: TestServer) -> AsyncIterator[Setup]:
    async with open_socket(phoenix_server.url) as socket, socket.channel(TOPIC) as channel:
        yield Setup(phoenix_server, socket, channel, phoenix_server.connections[0])


# -- misuses of a connected socket and its channels -----------------------------------------


async def push_non_json(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.channel.push("echo", {"when": object()})


async def push_nan(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.channel.push("echo", {"ratio": math.nan})


async def push_binary_with_a_long_event(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.channel.push("e" * 300, b"binary payload")


async def push_binary_on_a_long_topic(s: Setup) -> None:
    channel = s.socket.channel("echo:" + "t" * 300)
    await channel.join()  # a long topic is fine in JSON frames
    s.nothing_sent_from_here()
    await channel.push("echo", b"binary payload")


async def push_binary_with_the_v1_serializer(s: Setup) -> None:
    s.nothing_sent_from_here()  # on the fixture's socket; this one is checked here
    async with open_socket(s.server.url, serializer=V1JSONSerializer()) as socket:
        channel = socket.channel("echo:v1")
        await channel.join()
        connection = s.server.connections[-1]
        before = len(connection.received)
        try:
            await channel.push("echo", b"binary payload")
        finally:
            await socket.ping()
            assert [m.event for m in connection.received[before:]] == ["heartbeat"]


async def join_with_non_json_params(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.socket.channel("echo:params", {"when": object()}).join()


async def push_before_join(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.socket.channel("echo:never").push("echo", {})


async def push_after_leave(s: Setup) -> None:
    channel = s.socket.channel("echo:left")
    await channel.join()
    await channel.leave()
    s.nothing_sent_from_here()
    await channel.push("echo", {})


async def join_twice(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.channel.join()


async def join_a_topic_another_channel_holds(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.socket.channel(TOPIC).join()


async def channel_with_negative_timeout(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.socket.channel("echo:negative", timeout=-1).join()


async def subscribe_on_a_closed_channel(s: Setup) -> None:
    channel = s.socket.channel("echo:closed")
    await channel.join()
    await channel.leave()
    s.nothing_sent_from_here()
    async with channel.subscribe():
        pytest.fail("subscribed to a closed channel")


async def push_a_reserved_event(s: Setup) -> None:
    s.nothing_sent_from_here()
    await s.channel.push("phx_leave", {})


async def push_a_non_string_event(s: Setup) -> None:
    s.nothing_sent_from_here()
    event: Any = 42
    await s.channel.push(event, {})


async def channel_with_a_non_string_topic(s: Setup) -> None:
    s.nothing_sent_from_here()
    topic: Any = ("room", 1)
    await s.socket.channel(topic).join()


async def push_on_a_closed_socket(s: Setup) -> None:
    async with open_socket(s.server.url) as socket:
        channel = socket.channel("echo:closing")
        await channel.join()
        s.connection = s.server.connections[-1]
    # aclose() returns once the client is done, maybe before the server's side has ended.
    await s.connection.wait_closed()
    s.nothing_sent_from_here()
    await channel.push("echo", {})


Misuse = Callable[[Setup], Awaitable[None]]
# Misuse of state is a PhoenixError (LocalProtocolError, ChannelClosed, ...); a bad argument
# value is a plain ValueError / TypeError, as in trio.
CHANNEL_MISUSES: list[tuple[Misuse, type[Exception], str]] = [
    (push_non_json, EncodeError, r"not JSON-serializable"),
    (push_nan, EncodeError, r"not JSON-serializable.*float"),
    (push_binary_with_a_long_event, EncodeError, r"event.*255 bytes.*300 bytes"),
    (push_binary_on_a_long_topic, EncodeError, r"topic.*255 bytes"),
    (push_binary_with_the_v1_serializer, EncodeError, r"V1 serializer.*binary"),
    (join_with_non_json_params, EncodeError, r"not JSON-serializable"),
    (push_before_join, LocalProtocolError, r"before joining"),
    (push_after_leave, ChannelClosed, r"'echo:left' is closed \(left\)"),
    (join_twice, LocalProtocolError, r"joined once"),
    (join_a_topic_another_channel_holds, LocalProtocolError, r"'echo:misuse' already has"),
    (channel_with_negative_timeout, ValueError, r"timeout must be a non-negative"),
    (subscribe_on_a_closed_channel, ChannelClosed, r"'echo:closed' is closed"),
    (push_a_reserved_event, LocalProtocolError, r"'phx_leave' is reserved"),
    (push_a_non_string_event, TypeError, r"event must be a string, got int"),
    (channel_with_a_non_string_topic, TypeError, r"topic must be a string"),
    (push_on_a_closed_socket, SocketClosed, r"socket is closed"),
]


@pytest.mark.parametrize(
    ("misuse", "error", "message"),
    CHANNEL_MISUSES,
    ids=[m.__name__ for m, _, _ in CHANNEL_MISUSES],
)
async def test_channel_misuse_raises_a_typed_error_and_sends_nothing(
    setup: Setup, misuse: Misuse, error: type[Exception], message: str
) -> None:
    with trio.fail_after(10):
        with pytest.raises(error, match=message) as raised:
            await misuse(setup)
        bad_argument = error in (ValueError, TypeError)
        assert isinstance(raised.value, PhoenixError) is not bad_argument
        assert setup.mark is not None
        if setup.connection.closed:
            assert setup.connection.received[setup.mark :] == []
            return
        await setup.socket.ping()
        sent = [(m.topic, m.event) for m in setup.connection.received[setup.mark :]]
        assert sent == [("phoenix", "heartbeat")]
        # The socket and the joined channel carry on.
        assert await setup.channel.push("echo", {"ok": True}) == {"ok": True}


# -- misuses of open_socket ------------------------------------------------------------------

WS = "ws://{host}/socket"
# Bad option values are ValueError / TypeError (as in trio), naming the option; the URL,
# params and headers have PhoenixError subclasses that are ValueError / TypeError too.
SOCKET_MISUSES: dict[str, tuple[Any, dict[str, Any], type[Exception], str]] = {
    "ftp-scheme": ("ftp://{host}/socket", {}, InvalidURL, r"must start with ws://"),
    "no-scheme": ("{host}/socket", {}, InvalidURL, r"must start with ws://"),
    "no-host": ("ws:///socket", {}, InvalidURL, r"no host"),
    "bad-port": ("ws://{host}:99999/socket", {}, InvalidURL, r"[Pp]ort"),
    "negative-timeout": (WS, {"timeout": -1}, ValueError, r"timeout must be >= 0 seconds"),
    "nan-timeout": (WS, {"timeout": math.nan}, ValueError, r"timeout must be >= 0"),
    "string-timeout": (WS, {"timeout": "5"}, TypeError, r"timeout must be a number.*str '5'"),
    "bool-timeout": (WS, {"timeout": True}, TypeError, r"timeout must be a number"),
    "heartbeat-interval": (WS, {"heartbeat_interval": 0}, ValueError, r"heartbeat_interval.*> 0"),
    "connect-timeout": (WS, {"connect_timeout": -1}, ValueError, r"connect_timeout"),
    "close-timeout": (WS, {"close_timeout": None}, TypeError, r"close_timeout.*number of sec"),
    "max-message-size": (WS, {"max_message_size": 0}, ValueError, r"max_message_size.*1024"),
    "max-message-size-float": (WS, {"max_message_size": 1e6}, TypeError, r"max_message_size"),
    "reconnect-after": (WS, {"reconnect_after": 1.0}, TypeError, r"reconnect_after.*callable"),
    "rejoin-after": (WS, {"rejoin_after": None}, TypeError, r"rejoin_after.*callable"),
    "clean-close": (WS, {"reconnect_on_clean_close": 1}, TypeError, r"True or False"),
    "serializer": (WS, {"serializer": "v1"}, TypeError, r"serializer must be"),
    "ssl-context": (WS, {"ssl_context": True}, TypeError, r"ssl_context must be"),
    "auth-token": (WS, {"auth_token": b"abc"}, TypeError, r"auth_token must be"),
    "url-type": (b"ws://{host}/socket", {}, TypeError, r"url must be a str"),
    "params-string": (WS, {"params": "token=abc"}, InvalidParams, r"mapping.*not a query string"),
    "params-list": (WS, {"params": [("token", "abc")]}, InvalidParams, r"mapping or a callable"),
    "header-crlf": (WS, {"headers": {"X-A": "1\r\nX-B: 2"}}, InvalidHeader, r"'X-A'.*CR, LF"),
    "header-latin-1": (WS, {"headers": {"X-A": "\u2713"}}, InvalidHeader, r"outside Latin-1"),
    "header-name": (WS, {"headers": [("X A", "1")]}, InvalidHeader, r"valid HTTP header name"),
    "transport": (WS, {"transport": "longpol"}, ValueError, r'transport must be one of "websock'),
    "compress": (WS, {"compress": 1}, TypeError, r"compress must be True or False"),
    "compress-transport": (
        WS,
        {"compress": True, "transport": "trio-websocket"},
        ValueError,
        r'compress=True needs transport="websocket"',
    ),
    "password-with-slash": ("ws://ann:pa/ss@{host}/socket", {}, InvalidURL, r"percent-encode"),
}


@pytest.mark.parametrize(
    ("url", "options", "error", "message"), SOCKET_MISUSES.values(), ids=SOCKET_MISUSES
)
async def test_open_socket_misuse_raises_a_typed_error_before_connecting(
    url: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    async with open_test_server(demo_channels()) as server:
        host = f"127.0.0.1:{server.port}"
        target: Any = (
            url.replace(b"{host}", host.encode())
            if isinstance(url, bytes)
            else url.format(host=host)
        )
        with trio.fail_after(10), pytest.raises(error, match=message) as raised:
            async with open_socket(target, **options):
                pass
        assert isinstance(raised.value, ValueError | TypeError)
        assert server.accepted_connections == []


async def test_params_from_a_callable_must_be_a_mapping() -> None:
    async with open_test_server(demo_channels()) as server:
        bad_params: Any = lambda: "token=abc"  # noqa: E731 (the type checker would catch it)
        with trio.fail_after(10), pytest.raises(InvalidParams, match="must return a mapping"):
            async with open_socket(server.url, params=bad_params):
                pass
        assert server.accepted_connections == []


# -- calls from the wrong place --------------------------------------------------------------


async def test_a_directly_built_socket_raises_at_once() -> None:
    with pytest.raises(TypeError, match=r"no public constructor.*open_socket\(\)"):
        Socket("ws://127.0.0.1:1/socket")


async def test_calls_from_another_thread_or_event_loop_raise_and_leave_the_socket_usable(
    setup: Setup,
) -> None:
    channel = setup.channel

    def wrong_run() -> None:
        trio.run(channel.push, "echo", {"from": "another trio run"})

    def other_loop() -> None:
        asyncio.run(channel.push("echo", {"from": "asyncio"}))

    with trio.fail_after(10):
        for call in (wrong_run, other_loop):
            with pytest.raises(RuntimeError, match=r"trio\.from_thread\.run") as raised:
                await trio.to_thread.run_sync(call)
            assert "Channel.push()" in str(raised.value)
        with pytest.raises(RuntimeError, match=r"Socket\.ping\(\).*from_thread"):
            await trio.to_thread.run_sync(trio.run, setup.socket.ping)
        # The right way works, at once (the socket is not wedged).
        reply = await trio.to_thread.run_sync(
            trio.from_thread.run, channel.push, "echo", {"from": "thread"}
        )
        assert reply == {"from": "thread"}
        assert await channel.push("echo", {"ok": True}) == {"ok": True}
