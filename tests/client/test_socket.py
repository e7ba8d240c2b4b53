"""The socket: connecting (params, auth token, headers, rejections, refusals, timeouts,
serializers). Heartbeats and reconnects are in ``test_socket_heartbeat.py``.

Real client, real in-process server, real loopback WebSockets; anything timed runs on
``autojump_clock`` and every test has an absolute deadline.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from tests.client.socket_helpers import PHOENIX_BACKOFF
from tests.conftest import client_tasks
from tests.helpers import LIMIT, next_events
from trio_phoenix import (
    Connected,
    ConnectError,
    ConnectFailed,
    Disconnected,
    EncodeError,
    Message,
    PushError,
    ReconnectScheduled,
    Socket,
    SocketState,
    V1JSONSerializer,
    V2JSONSerializer,
    open_socket,
)
from trio_phoenix.testing import (
    ConnectInfo,
    PhoenixServerFactory,
    Reject,
    TestServer,
    demo_channels,
    open_test_server,
)

# -- connecting ------------------------------------------------------------------------------


async def test_params_go_in_the_query_before_vsn(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        params = {"token": "abc", "user": {"name": "ann b"}}
        async with open_socket(phoenix_server.url, params=params):
            connection = phoenix_server.accepted_connections[0]
            assert connection.connect_info.path == "/socket/websocket"
            assert connection.connect_info.query_string == (
                "token=abc&user%5Bname%5D=ann%20b&vsn=2.0.0"
            )
            assert connection.params == {"token": "abc", "user": {"name": "ann b"}, "vsn": "2.0.0"}


def _sync_tokens() -> Callable[[], dict[str, str]]:
    issued = iter(["t1", "t2", "t3"])
    return lambda: {"token": next(issued)}


def _async_tokens() -> Callable[[], Awaitable[dict[str, str]]]:
    issued = iter(["t1", "t2", "t3"])

    async def params() -> dict[str, str]:
        await trio.sleep(0.001)
        return {"token": next(issued)}

    return params


@pytest.mark.parametrize("make_params", [_sync_tokens, _async_tokens], ids=["sync", "async"])
async def test_params_callable_is_evaluated_on_every_connect(
    phoenix_server: TestServer,
    make_params: Callable[[], Any],
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, params=make_params()) as socket:
            channel = socket.channel("echo:p")
            await channel.join()
            phoenix_server.accepted_connections[0].drop()
            await phoenix_server.wait_connections(2)
            await channel.wait_joined()
            tokens = [c.params["token"] for c in phoenix_server.accepted_connections]
            assert tokens == ["t1", "t2"]
            assert phoenix_server.accepted_connections[1].connect_info.query_string == (
                "token=t2&vsn=2.0.0"
            )


def _b64(token: str) -> str:
    return base64.b64encode(token.encode()).decode().rstrip("=")


async def _async_token(tokens: Iterator[str]) -> str:
    await trio.lowlevel.checkpoint()
    return next(tokens)


@pytest.mark.parametrize("kind", ["string", "sync", "async"])
async def test_auth_token_travels_as_a_subprotocol(
    phoenix_server_factory: PhoenixServerFactory, kind: str, autojump_clock: trio.abc.Clock
) -> None:
    server = await phoenix_server_factory(demo_channels(), auth_token=True)
    tokens = iter(["first-token", "second-token?"])
    source: Any = {
        "string": "first-token",
        "sync": lambda: next(tokens),
        "async": partial(_async_token, tokens),
    }[kind]
    expected = ["first-token", "first-token" if kind == "string" else "second-token?"]
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, auth_token=source) as socket:
            await socket.channel("echo:t").join()
            server.accepted_connections[0].drop()
            await server.wait_connections(2)
            await socket.wait_connected()
        infos = [c.connect_info for c in server.accepted_connections]
        assert [info.auth_token for info in infos] == expected
        assert [info.subprotocols for info in infos] == [
            ("phoenix", f"base64url.bearer.phx.{_b64(token)}") for token in expected
        ]
        # Never in the URL.
        assert [info.query_string for info in infos] == ["vsn=2.0.0", "vsn=2.0.0"]


@pytest.mark.parametrize(
    "headers",
    [{"X-Trace": "t-1", "X-Other": "o"}, [("X-Trace", "t-1"), ("X-Other", "o")]],
    ids=["mapping", "pairs"],
)
async def test_extra_headers_are_sent(
    phoenix_server: TestServer, headers: Any, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, headers=headers):
            info = phoenix_server.accepted_connections[0].connect_info
            assert info.header("x-trace") == "t-1"
            assert info.header("x-other") == "o"


class _Vsn3:
    """A serializer that asks for a protocol version no Phoenix server speaks."""

    vsn = "3.0.0"

    def __init__(self) -> None:
        self._v2 = V2JSONSerializer()

    def encode(self, message: Message) -> str | bytes:
        return self._v2.encode(message)

    def decode(self, frame: str | bytes) -> Message:
        return self._v2.decode(frame)


def _reject(status: int) -> Callable[[dict[str, Any], ConnectInfo], Reject]:
    return lambda params, info: Reject(status)


@pytest.mark.parametrize(
    ("server_options", "socket_options", "server_rejects", "status"),
    [
        ({"connect": _reject(403)}, {}, None, 403),
        ({"connect": _reject(401)}, {}, None, 401),
        ({}, {"serializer": _Vsn3()}, None, 403),
        ({}, {}, 429, 429),
    ],
    ids=["connect-403", "connect-401", "bad-vsn", "reject-upgrades-429"],
)
async def test_a_rejected_first_connect_raises_connect_error(
    phoenix_server_factory: PhoenixServerFactory,
    server_options: dict[str, Any],
    socket_options: dict[str, Any],
    server_rejects: int | None,
    status: int,
    autojump_clock: trio.abc.Clock,
) -> None:
    server = await phoenix_server_factory(demo_channels(), **server_options)
    server.reject_upgrades(server_rejects)
    with trio.fail_after(LIMIT):
        with pytest.raises(ConnectError) as info:
            async with open_socket(server.url, params={"token": "s3cret"}, **socket_options):
                pytest.fail("the block must not run")
    assert type(info.value) is ConnectError
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert trio.current_time() == 0  # no retry, no backoff
    assert server.statistics().upgrades_rejected == 1
    assert server.accepted_connections == []


async def test_a_rejection_after_a_connection_is_retried_with_backoff(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket, socket.lifecycle() as events:
            phoenix_server.reject_upgrades(403)
            phoenix_server.accepted_connections[0].drop()
            assert await next_events(events, 2) == [
                Disconnected(code=1006, reason=None),
                ReconnectScheduled(delay=0.01, attempt=1),
            ]
            failed_at = []
            for attempt in range(2, 5):
                failure = await events.receive()
                assert isinstance(failure, ConnectFailed)
                assert failure.error.status == 403
                failed_at.append(trio.current_time())
                assert await events.receive() == ReconnectScheduled(
                    delay=PHOENIX_BACKOFF[attempt - 1], attempt=attempt
                )
                assert socket.state is SocketState.WAITING
            assert failed_at == pytest.approx([0.01, 0.06, 0.16])
            phoenix_server.reject_upgrades(None)
            assert await events.receive() == Connected(connects=2)
            assert trio.current_time() == pytest.approx(0.16 + 0.15)
            assert phoenix_server.statistics().upgrades_rejected == 3


async def test_refused_connections_are_retried_until_the_server_is_up(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    attempts: list[float] = []

    def params() -> dict[str, str]:
        attempts.append(trio.current_time())
        return {}

    async def serve_later(task_status: trio.TaskStatus[TestServer]) -> None:
        await trio.sleep(5)
        async with open_test_server(demo_channels(), port=closed_port) as server:
            task_status.started(server)
            await trio.sleep_forever()

    url = f"ws://127.0.0.1:{closed_port}/socket"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(nursery.start, serve_later))
            async with open_socket(url, params=params) as socket:
                # open_socket returned once the first connection opened.
                assert socket.state is SocketState.CONNECTED
                assert socket.statistics().connects == 1
                channel = socket.channel("echo:r")
                assert await channel.join() == {}
            nursery.cancel_scope.cancel()
    # Attempts follow phoenix.js's backoff: 10, 50, 100, 150, 200, 250, 500 ms, 1 s, 2 s, 5 s.
    delays = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert delays == pytest.approx(PHOENIX_BACKOFF[:10])
    assert attempts[-1] == pytest.approx(9.26)


async def test_the_caller_bounds_the_wait_for_a_first_connection(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket"

    async def connect_within_a_second() -> None:
        with trio.fail_after(1):
            async with open_socket(url):
                pytest.fail("never connected")

    with trio.fail_after(LIMIT):
        with pytest.raises(trio.TooSlowError):
            await connect_within_a_second()
        assert trio.current_time() == 1


async def test_refused_connections_show_in_the_lifecycle(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket"
    with trio.fail_after(LIMIT):
        async with (
            open_socket(url, wait_connected=False) as socket,
            socket.lifecycle() as events,
        ):
            for attempt in range(1, 6):
                failure = await events.receive()
                assert isinstance(failure, ConnectFailed)
                assert failure.error.status is None
                assert "cannot connect" in str(failure.error)
                assert await events.receive() == ReconnectScheduled(
                    delay=PHOENIX_BACKOFF[attempt - 1], attempt=attempt
                )
            assert socket.state is SocketState.WAITING
            # A join waits for the connection; the caller's scope bounds the wait.
            with trio.move_on_after(1) as scope:
                await socket.channel("echo:never").join()
            assert scope.cancelled_caught
        assert socket.statistics().state is SocketState.CLOSED


@pytest.mark.parametrize("reconnect_after", [None, 3600.0])
async def test_leaving_the_block_right_after_a_connect_failure_raises_the_callers_error(
    closed_port: int, reconnect_after: float | None, autojump_clock: trio.abc.Clock
) -> None:
    """The block ends while the socket is still handling its first failure (no checkpoint in
    between, as ``trio-phoenix push`` to a closed port does): the caller's own exception comes
    out, and the socket closes without an internal error."""

    class Gave(Exception):
        pass

    url = f"ws://127.0.0.1:{closed_port}/socket"
    sockets: list[Socket] = []

    async def give_up_on_the_first_failure() -> None:
        async with (
            open_socket(
                url, wait_connected=False, reconnect_after=lambda attempt: reconnect_after
            ) as socket,
            socket.lifecycle() as events,
        ):
            sockets.append(socket)
            async for event in events:
                if isinstance(event, ConnectFailed):
                    raise Gave

    with trio.fail_after(LIMIT), pytest.raises(Gave):
        await give_up_on_the_first_failure()
    assert sockets[0].state is SocketState.CLOSED
    assert client_tasks() == []


async def test_http_urls_are_mapped_to_ws(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    url = phoenix_server.url.replace("ws://", "http://")
    with trio.fail_after(LIMIT):
        async with open_socket(url) as socket:
            assert socket.url == url
            assert await socket.channel("echo:http").join() == {}


async def test_the_v1_serializer_end_to_end(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, serializer=V1JSONSerializer()) as socket:
            connection = phoenix_server.accepted_connections[0]
            assert connection.params["vsn"] == "1.0.0"
            assert isinstance(connection.serializer, V1JSONSerializer)
            channel = socket.channel("echo:v1", {"old": True})
            async with channel, channel.subscribe("note") as notes:
                assert channel.join_response == {"old": True}
                assert await channel.push("echo", {"n": 1}) == {"n": 1}
                with pytest.raises(PushError):
                    await channel.push("error", {})
                await channel.push("push", {"event": "note", "payload": {"v": 1}})
                note = await notes.receive()
                # V1 frames from the server carry no join_ref.
                assert (note.join_ref, note.payload) == (None, {"v": 1})
                with pytest.raises(EncodeError):
                    await channel.push("echo", b"binary needs V2")
                connection.drop()
                await phoenix_server.wait_connections(2)
                await channel.wait_joined()
                assert await channel.push("echo", {"n": 2}) == {"n": 2}
            assert [(m.join_ref, m.ref, m.event) for m in connection.received] == [
                ("1", "1", "phx_join"),
                ("1", "2", "echo"),
                ("1", "3", "error"),
                ("1", "4", "push"),
            ]


async def _garbage_then_heartbeats(request: WebSocketRequest) -> None:
    """A broken server: sends junk, a message for an unknown topic, then answers heartbeats."""
    ws = await request.accept()
    try:
        await ws.send_message("this is not JSON")
        await ws.send_message('[null,null,"nowhere","event",{}]')
        while True:
            _, ref, topic, event, _ = json.loads(await ws.get_message())
            if (topic, event) == ("phoenix", "heartbeat"):
                reply = [None, ref, "phoenix", "phx_reply", {"response": {}, "status": "ok"}]
                await ws.send_message(json.dumps(reply))
    except ConnectionClosed:
        pass


async def test_malformed_frames_are_counted_and_logged_not_fatal(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                serve_websocket, _garbage_then_heartbeats, "127.0.0.1", 0, None
            )
            async with open_socket(f"ws://127.0.0.1:{server.port}/socket") as socket:
                assert await socket.ping() >= 0
                stats = socket.statistics()
                assert (stats.malformed_frames, stats.dropped_messages) == (1, 1)
                assert (stats.connects, stats.disconnects) == (1, 0)
            nursery.cancel_scope.cancel()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("malformed frame" in message for message in warnings)


async def test_an_unanswered_handshake_times_out_and_is_retried(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A listener that never accepts: the kernel completes the TCP handshake, nobody answers
    # the upgrade request.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        with trio.fail_after(LIMIT):
            async with (
                open_socket(
                    f"ws://127.0.0.1:{port}/socket", wait_connected=False, connect_timeout=3
                ) as socket,
                socket.lifecycle() as events,
            ):
                failed_at = []
                for attempt in (1, 2):
                    failure = await events.receive()
                    assert isinstance(failure, ConnectFailed)
                    assert failure.error.status is None
                    assert "timed out" in str(failure.error)
                    failed_at.append(trio.current_time())
                    assert await events.receive() == ReconnectScheduled(
                        delay=PHOENIX_BACKOFF[attempt - 1], attempt=attempt
                    )
                assert failed_at == pytest.approx([3, 6.01])
    finally:
        for listener in listeners:
            await listener.aclose()
