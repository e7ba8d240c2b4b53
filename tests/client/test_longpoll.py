"""The LongPoll transport: the client against the test server (status codes, sessions, batching,
heartbeats, reconnect and rejoin, the fallback from WebSocket), the test server's LongPoll
endpoint seen with plain HTTP requests, and the client against a hostile HTTP server of our
own (oversized, endless, slow and garbled answers, bad statuses) for the bounds.

Timed tests run on ``autojump_clock`` with an absolute deadline.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from tests.helpers import LIMIT
from trio_phoenix import (
    ChannelJoined,
    Connected,
    ConnectError,
    Disconnected,
    TransportFallback,
    V1JSONSerializer,
    open_socket,
)
from trio_phoenix._longpoll import (
    MAX_POLL_MESSAGES,
    LongPollTransport,
    _batches,
    longpoll_url,
    open_longpoll,
)
from trio_phoenix._transport import TransportClosed
from trio_phoenix.testing import (
    ChannelSocket,
    ConnectInfo,
    EchoChannel,
    Reject,
    Reply,
    TestServer,
    demo_channels,
    open_test_server,
)


def lp_url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}{server.path}/longpoll"


# -- the client against the test server -------------------------------------------------------


async def test_push_reply_and_broadcast(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(server.url, transport="longpoll") as socket,
            socket.channel("echo:a", {"x": 1}) as channel,
            channel.subscribe("news") as news,
        ):
            assert channel.join_response == {"x": 1}
            assert await channel.push("echo", {"hello": "world"}) == {"hello": "world"}
            server.broadcast("echo:a", "news", {"n": 1})
            message = await news.receive()
            assert (message.event, message.payload) == ("news", {"n": 1})
            assert await socket.ping() >= 0
            (connection,) = server.accepted_connections
            assert connection.transport == "longpoll"
            assert [m.event for m in connection.received if m.topic == "echo:a"] == [
                "phx_join",
                "echo",
            ]


async def test_many_pushes_are_batched_in_order(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(server.url, transport="longpoll") as socket,
            socket.channel("echo:a") as channel,
        ):
            results: dict[int, Any] = {}

            async def one(n: int) -> None:
                results[n] = await channel.push("echo", {"n": n})

            async with trio.open_nursery() as nursery:
                for n in range(250):
                    nursery.start_soon(one, n)
            assert results == {n: {"n": n} for n in range(250)}
            received = [
                m.payload["n"]
                for m in server.accepted_connections[0].received
                if m.event == "echo"
            ]
            assert sorted(received) == list(range(250))


def test_batches_split_at_100_lines_and_send_v1_alone() -> None:
    frames: list[str | bytes] = [f'["1","{n}","t","e",{{}}]' for n in range(150)]
    bodies = _batches(frames)
    assert [(len(body.split(b"\n")), kind) for body, kind in bodies] == [
        (100, "application/x-ndjson"),
        (50, "application/x-ndjson"),
    ]
    mixed = _batches(['["a"]', b"\x00\x01", '{"topic":"t"}', '["b"]'])
    assert mixed == [
        (b'["a"]\nAAE=', "application/x-ndjson"),
        (b'{"topic":"t"}', "application/json"),
        (b'["b"]', "application/x-ndjson"),
    ]


def test_longpoll_url() -> None:
    assert longpoll_url("ws://h:4000/socket/websocket?token=a&vsn=2.0.0") == (
        "http://h:4000/socket/longpoll?token=a&vsn=2.0.0"
    )
    assert longpoll_url("wss://h/ws/websocket") == "https://h/ws/longpoll"


async def test_v1_serializer(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(server.url, transport="longpoll", serializer=V1JSONSerializer()) as socket,
            socket.channel("echo:v1") as channel,
        ):
            assert await channel.push("echo", {"v": 1}) == {"v": 1}


async def test_lost_session_reconnects_and_rejoins(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(server.url, transport="longpoll") as socket,
            socket.lifecycle() as events,
            socket.channel("echo:a") as channel,
        ):
            server.accepted_connections[0].close()
            seen: list[Any] = []
            async for event in events:
                seen.append(event)
                if isinstance(event, ChannelJoined) and event.rejoin:
                    break
            disconnected = next(e for e in seen if isinstance(e, Disconnected))
            assert (disconnected.code, disconnected.reason) == (3410, "session_gone")
            assert any(isinstance(e, Connected) and e.connects == 2 for e in seen)
            assert await channel.push("echo", {"again": True}) == {"again": True}
            # The poll that found the session gone started one (as on Phoenix), which the
            # client leaves to time out: it reconnects afresh, as phoenix.js does.
            assert [c.transport for c in server.accepted_connections] == ["longpoll"] * 3
            assert server.accepted_connections[1].topics == {}


async def test_heartbeats_are_answered(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(server.url, transport="longpoll") as socket,
        ):
            await trio.sleep(95)  # three heartbeats, and many empty polls
            stats = socket.statistics()
            assert (stats.heartbeats_sent, stats.heartbeat_timeouts) == (3, 0)
            assert stats.connects == 1
            assert len(server.accepted_connections) == 1


async def test_refused_connect_is_403(autojump_clock: trio.abc.Clock) -> None:
    def connect(params: dict[str, Any], info: ConnectInfo) -> None:
        raise Reject(429)  # Phoenix's LongPoll answers every refusal with 403

    with trio.fail_after(LIMIT):
        async with open_test_server(demo_channels(), connect=connect, longpoll=True) as server:
            with pytest.raises(ConnectError) as caught:
                async with open_socket(server.url, transport="longpoll"):
                    pass  # pragma: no cover
            assert caught.value.status == 403


async def test_auth_token_header(autojump_clock: trio.abc.Clock) -> None:
    tokens: list[str | None] = []

    def connect(params: dict[str, Any], info: ConnectInfo) -> None:
        tokens.append(info.auth_token)

    with trio.fail_after(LIMIT):
        async with (
            open_test_server(
                demo_channels(), connect=connect, auth_token=True, longpoll=True
            ) as server,
            open_socket(server.url, transport="longpoll", auth_token="s3cret"),
        ):
            assert tokens == ["s3cret"]


async def test_longpoll_disabled_is_404(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with open_test_server(demo_channels(), longpoll=False) as server:
            with pytest.raises(ConnectError) as caught:
                async with open_socket(server.url, transport="longpoll"):
                    pass  # pragma: no cover
            assert caught.value.status == 404
            assert "is LongPoll enabled" in str(caught.value)


async def test_params_and_session_token_are_never_logged(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(
                server.url, transport="longpoll", params={"token": "hunter2"}, auth_token="s3c"
            ) as socket,
            socket.channel("echo:a") as channel,
        ):
            assert await channel.push("echo", {}) == {}
            session = next(iter(server._longpoll_sessions))
    assert "HTTP Request: GET" in caplog.text  # httpx logged the requests ...
    for secret in ("hunter2", "s3c", session):
        assert secret not in caplog.text  # ... with every query value redacted


# -- the fallback -----------------------------------------------------------------------------


async def test_fallback_when_the_websocket_is_refused(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with open_test_server(demo_channels(), longpoll=True) as server:
            server.reject_upgrades(403)  # e.g. a proxy that refuses upgrades
            async with (
                open_socket(server.url, longpoll_fallback=2.5, wait_connected=False) as socket,
                socket.lifecycle() as events,
                socket.channel("echo:a") as channel,
            ):
                event = await events.receive()
                assert socket.transport == "longpoll"
                assert isinstance(event, TransportFallback)
                assert event.transport == "longpoll"
                assert event.error is not None
                assert event.error.status == 403
                assert await channel.push("echo", {}) == {}
                # Remembered for the socket's life: a reconnect uses LongPoll again.
                server.reject_upgrades(None)
                server.accepted_connections[0].close()
                async for event in events:
                    if isinstance(event, ChannelJoined) and event.rejoin:
                        break
                # (The middle one is the session the 410 started, left to time out.)
                assert [c.transport for c in server.accepted_connections] == ["longpoll"] * 3


async def test_fallback_when_the_websocket_takes_too_long(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def connect(params: dict[str, Any], info: ConnectInfo) -> None:
        if info.path.endswith("/websocket"):
            await trio.sleep(1000)  # the upgrade hangs

    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), connect=connect, longpoll=True) as server,
            open_socket(server.url, longpoll_fallback=2.5, wait_connected=False) as socket,
            socket.lifecycle() as events,
        ):
            start = trio.current_time()
            event = await events.receive()
            assert isinstance(event, TransportFallback)
            assert trio.current_time() - start == pytest.approx(2.5, abs=0.1)
            assert event.error is not None
            assert "did not open within 2.5 s" in str(event.error)
            await socket.wait_connected()
            assert server.accepted_connections[0].transport == "longpoll"


async def test_fallback_when_the_websocket_does_not_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    """phoenix.js's health check: a WebSocket that opens must answer a ping within the
    fallback time."""
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(server.url, longpoll_fallback=2.5, wait_connected=False) as socket,
            socket.lifecycle() as events,
        ):
            (await server.wait_connections(1)).stall()  # e.g. a proxy that buffers
            seen: list[Any] = []
            async for event in events:
                seen.append((trio.current_time(), event))
                if isinstance(event, Connected) and event.connects == 2:
                    break
            kinds = [type(event).__name__ for _, event in seen]
            assert kinds[:4] == [
                "Connected",
                "TransportFallback",
                "Disconnected",
                "ReconnectScheduled",
            ]
            opened, fallback = seen[0][0], seen[1][0]
            assert fallback - opened == pytest.approx(2.5, abs=0.1)
            assert seen[1][1].error is None
            assert (seen[2][1].code, seen[2][1].reason) == (1001, "falling back to LongPoll")
            assert [c.transport for c in server.accepted_connections] == [
                "websocket",
                "longpoll",
            ]
            assert await socket.ping() >= 0


async def test_no_fallback_when_the_websocket_works(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            open_socket(server.url, longpoll_fallback=2.5) as socket,
            socket.lifecycle() as events,
        ):
            # Once a WebSocket has opened, a later failure does not fall back.
            server.reject_upgrades(503)
            server.accepted_connections[0].close(1011)
            async for event in events:
                assert not isinstance(event, TransportFallback)
                if isinstance(event, Disconnected):
                    break
            server.reject_upgrades(None)
            await socket.wait_connected()
            await trio.sleep(1)
            assert [c.transport for c in server.accepted_connections] == ["websocket"] * 2
            assert socket.transport == "websocket"


# -- options and the extra --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transport": "http"}, "transport must be one of .*longpoll"),
        ({"longpoll_fallback": 0}, "longpoll_fallback must be > 0"),
        ({"longpoll_fallback": "1"}, "longpoll_fallback must be a number"),
        ({"longpoll_timeout": 0}, "longpoll_timeout must be > 0"),
        ({"transport": "longpoll", "longpoll_fallback": 1.0}, "only applies to"),
    ],
)
async def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        async with open_socket("ws://127.0.0.1:1/socket", **options):
            pass  # pragma: no cover


@pytest.mark.parametrize("options", [{"transport": "longpoll"}, {"longpoll_fallback": 1.0}])
async def test_missing_httpx_names_the_extra(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"pip install 'trio-phoenix\[longpoll\]'"):
        async with open_socket("ws://127.0.0.1:1/socket", **options):
            pass  # pragma: no cover


# -- the test server's endpoint, with plain HTTP ----------------------------------------------


async def test_server_session_exchange(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True, longpoll_window=5.0) as server,
            httpx.AsyncClient(timeout=60) as http,
        ):
            url = lp_url(server)
            first = (await http.get(url, params={"vsn": "2.0.0"})).json()
            assert (first["status"], first["messages"]) == (410, [])
            token = first["token"]
            lines = [f'["1","{n}","echo:a","phx_join",{{}}]' for n in range(1, 3)] + [
                f'["1","{n}","echo:a","echo",{{"n":{n}}}]' for n in range(3, 153)
            ]
            posted = await http.post(
                url,
                params={"vsn": "2.0.0", "token": token},
                content="\n".join(lines),
                headers={"content-type": "application/x-ndjson"},
            )
            assert posted.json() == {"status": 200}
            # Only the first 100 lines are read, as Phoenix does.
            assert len(server.accepted_connections[0].received) == 100
            poll = (await http.get(url, params={"vsn": "2.0.0", "token": token})).json()
            assert (poll["status"], poll["token"]) == (200, token)
            assert all(isinstance(m, str) for m in poll["messages"])
            # Two join replies, the phx_close of the first join (the second replaced it) and
            # 98 echo replies.
            assert len(poll["messages"]) == 101
            start = trio.current_time()
            empty = (await http.get(url, params={"vsn": "2.0.0", "token": token})).json()
            assert empty == {"status": 204, "token": token, "messages": []}
            assert trio.current_time() - start == pytest.approx(5.0, abs=0.1)
            # Not polled for 1.5 windows: the session stops; the next GET starts another.
            await trio.sleep(8)
            again = (await http.get(url, params={"vsn": "2.0.0", "token": token})).json()
            assert again["status"] == 410
            assert again["token"] != token
            gone = await http.post(url, params={"token": token}, content="[]")
            assert gone.json() == {"status": 410}


async def test_server_refusals_and_cors(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(
                demo_channels(), longpoll=True, check_origin=["https://ok.example"]
            ) as server,
            httpx.AsyncClient(timeout=60) as http,
        ):
            url = lp_url(server)
            assert (await http.get(url, params={"vsn": "3.0.0"})).json() == {"status": 403}
            origin = {"origin": "https://evil.example"}
            assert (await http.get(url, headers=origin)).json() == {"status": 403}
            options = await http.options(
                url, headers={"access-control-request-headers": "content-type"}
            )
            assert options.status_code == 200
            assert options.headers["access-control-allow-headers"] == "content-type"
            assert options.headers["access-control-allow-origin"] == "*"
            assert (await http.put(url)).status_code == 400
            first = (await http.get(url, params={"vsn": "2.0.0"})).json()
            bad = await http.post(
                url,
                params={"token": first["token"]},
                content="not base64!",
                headers={"content-type": "application/x-ndjson"},
            )
            assert bad.status_code == 500


class SlowJoin(EchoChannel):
    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        await trio.sleep(10)
        return Reply.ok()


async def test_server_post_waits_at_most_a_window(autojump_clock: trio.abc.Clock) -> None:
    channels = {**demo_channels(), "slow:*": SlowJoin}
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(channels, longpoll=True, longpoll_window=2.0) as server,
            httpx.AsyncClient(timeout=60) as http,
        ):
            url = lp_url(server)
            ndjson = {"content-type": "application/x-ndjson"}
            # A malformed message stops the session (1011); Phoenix still answers 200.
            token = (await http.get(url, params={"vsn": "2.0.0"})).json()["token"]
            params = {"vsn": "2.0.0", "token": token}
            bad = await http.post(url, params=params, content='["x"]', headers=ndjson)
            assert bad.json() == {"status": 200}
            await server.accepted_connections[0].wait_closed()
            assert server.accepted_connections[0].close_code == 1011
            # A join that takes longer than the window: the POST answers 408.
            token = (await http.get(url, params={"vsn": "2.0.0"})).json()["token"]
            params = {"vsn": "2.0.0", "token": token}
            join = '["1","1","slow:a","phx_join",{}]'
            slow = await http.post(url, params=params, content=join, headers=ndjson)
            assert slow.json() == {"status": 408}


# -- the client against a hostile HTTP server ---------------------------------------------------

Handler = Callable[[str, str, bytes, trio.SocketStream], Awaitable[None]]


def http_response(body: bytes, status: int = 200, extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n".encode() + extra + b"\r\n" + body
    )


def session(token: str = "T") -> bytes:
    return http_response(json.dumps({"status": 410, "token": token, "messages": []}).encode())


@asynccontextmanager
async def hostile(answers: list[bytes | Handler]) -> AsyncIterator[str]:
    """An HTTP server that answers request ``i`` with ``answers[i]`` (bytes, or a handler that
    writes what it likes); yields the socket URL to give the client."""
    queue = list(answers)

    async def serve(stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                body, buffer = buffer[:length], buffer[length:]
                answer = queue.pop(0) if queue else b""
                if isinstance(answer, bytes):
                    if not answer:
                        await trio.sleep_forever()
                    await stream.send_all(answer)
                else:
                    await answer(method, target, body, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0"
        nursery.cancel_scope.cancel()


async def poll_forever(transport: LongPollTransport) -> None:
    while True:
        await transport.receive_batch()


async def poll_end(answers: list[bytes | Handler], **options: Any) -> TransportClosed:
    """Open a transport on the hostile server, poll until it ends; how it ended."""
    async with hostile([session(), *answers]) as url:
        transport = await open_longpoll(url, max_message_size=1024, **options)
        try:
            with pytest.raises(TransportClosed) as caught:
                await poll_forever(transport)
        finally:
            await transport.abort()
    assert transport.closed is caught.value
    return caught.value


def status(value: Any, **extra: Any) -> bytes:
    return http_response(json.dumps({"status": value, **extra}).encode())


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (status(500), 1011),
        (status(418), 1011),
        (status(403), 1008),
        (status(410, token="U"), 3410),
        (status("200"), 1011),
        (status(True), 1011),
        (http_response(b"<html>bad gateway</html>", 502), 1011),
        (http_response(b"not json"), 1011),
        (http_response(b"[1, 2]"), 1011),
        (http_response(b"[" * 60_000), 1011),
        (status(200, messages=[1]), 1011),
        (status(200, messages="x"), 1011),
        (status(200, token="x" * 5000), 1011),
        (http_response(b"x" * 70_000), 1009),
    ],
)
async def test_hostile_answers_close_the_transport(
    answer: bytes, code: int, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        closed = await poll_end([status(204, token="T"), answer])
    assert closed.code == code


async def test_too_many_messages_in_a_poll(autojump_clock: trio.abc.Clock) -> None:
    body = json.dumps({"status": 200, "messages": [""] * (MAX_POLL_MESSAGES + 1)}).encode()
    with trio.fail_after(LIMIT):
        async with hostile([session(), http_response(body)]) as url:
            transport = await open_longpoll(url, max_message_size=1_000_000)
            with pytest.raises(TransportClosed) as caught:
                await transport.receive_batch()
            await transport.abort()
    assert caught.value.code == 1009


async def endless(method: str, target: str, body: bytes, stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    while True:
        await stream.send_all(chunk)


async def silent(method: str, target: str, body: bytes, stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
    await trio.sleep_forever()


async def test_endless_body_is_cut_at_the_bound(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        closed = await poll_end([endless])
    assert closed.code == 1009


async def test_stalled_answer_times_out(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        start = trio.current_time()
        closed = await poll_end([silent], request_timeout=7.0)
    assert (closed.code, closed.reason) == (1005, "timeout")
    assert trio.current_time() - start == pytest.approx(7.0, abs=0.1)


async def test_post_to_a_lost_session(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with hostile([session(), status(410)]) as url:
            transport = await open_longpoll(url, max_message_size=1024)
            with pytest.raises(TransportClosed) as caught:
                await transport.send_many(['["1","1","t","e",{}]'])
            await transport.abort()
    assert (caught.value.code, caught.value.reason) == (3410, "session_gone")


async def test_unreachable_and_silent_servers(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        with pytest.raises(ConnectError) as caught:
            await open_longpoll(
                f"ws://127.0.0.1:{closed_port}/socket/websocket", max_message_size=1024
            )
        assert caught.value.status is None
        assert "LongPoll request failed" in str(caught.value)
        async with hostile([b""]) as url:
            with pytest.raises(ConnectError, match="timed out"):
                await open_longpoll(url, max_message_size=1024, request_timeout=3)


async def test_failed_post_closes_the_transport(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with hostile([session(), status(408)]) as url:
            transport = await open_longpoll(url, max_message_size=1024)
            with pytest.raises(TransportClosed) as caught:
                await transport.send_many(['["1","1","t","e",{}]'])
            assert caught.value.code == 1011
            with pytest.raises(TransportClosed):
                await transport.receive_batch()
            await transport.aclose()


async def test_close_stops_a_waiting_poll(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with hostile([session(), b""]) as url:
            transport = await open_longpoll(url, max_message_size=1024)
            async with trio.open_nursery() as nursery:

                async def poll() -> None:
                    with pytest.raises(TransportClosed):
                        await transport.receive_batch()

                nursery.start_soon(poll)
                await trio.sleep(1)
                await transport.aclose(1000, "bye")
            assert transport.closed is not None
            assert (transport.closed.code, transport.closed.reason) == (1000, "bye")
            with pytest.raises(TransportClosed):
                await transport.send_many(["[]"])


@pytest.mark.parametrize(
    ("answer", "status_code", "permanent"),
    [
        (status(403), 403, True),
        (http_response(b"nothing here", 404), 404, True),
        (http_response(b"garbage"), None, False),
        (status(500), None, False),
        (status(200, messages=[]), None, False),
    ],
)
async def test_refused_or_garbled_open(
    answer: bytes, status_code: int | None, permanent: bool, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with hostile([answer]) as url:
            with pytest.raises(ConnectError) as caught:
                await open_longpoll(url, max_message_size=1024)
    assert caught.value.status == status_code


async def test_messages_of_the_opening_answer_are_kept(autojump_clock: trio.abc.Clock) -> None:
    opening = status(410, token="T", messages=['["1",null,"t","e",{}]'])
    with trio.fail_after(LIMIT):
        async with hostile([opening]) as url:
            transport = await open_longpoll(url, max_message_size=1024)
            assert isinstance(transport, LongPollTransport)
            assert await transport.receive_batch() == ['["1",null,"t","e",{}]']
            await transport.abort()
