"""The in-process Phoenix server, driven by raw trio-websocket clients writing frames by hand.

Each test checks one row of Phoenix's behaviour (protocol reference §1.2, §3, §4, §7, §9, §10)
on the wire. Every wait has a deadline; anything timed runs under ``autojump_clock``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
    wrap_client_stream,
)

from trio_phoenix._groups import raise_preferred
from trio_phoenix.proto._message import Message
from trio_phoenix.proto._serializer import V1JSONSerializer, V2JSONSerializer
from trio_phoenix.testing import (
    Accept,
    ChannelHandler,
    ChannelSocket,
    ConnectInfo,
    HandleInResult,
    PresenceTracker,
    Reject,
    Reply,
    ServerConnection,
    TestServer,
    demo_channels,
    open_test_server,
    serve_test_server,
)
from trio_phoenix.testing._handshake import (
    origin_allowed,
    parse_params,
    serializer_for_vsn,
    split_auth_token,
)
from trio_phoenix.testing._pytest_plugin import PhoenixServerFactory

WAIT = 5.0  # seconds any single wait may take before the test fails
V2 = V2JSONSerializer(role="client")


class RawClient:
    """A Phoenix client written by hand: frames in, frames out, nothing automatic."""

    def __init__(self, ws: WebSocketConnection, *, v1: bool = False) -> None:
        self.ws = ws
        self.serializer = V1JSONSerializer(role="client") if v1 else V2

    async def send(
        self, join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
    ) -> None:
        message = Message(join_ref=join_ref, ref=ref, topic=topic, event=event, payload=payload)
        await self.ws.send_message(self.serializer.encode(message))

    async def recv_raw(self) -> str | bytes:
        with trio.fail_after(WAIT):
            return await self.ws.get_message()

    async def recv(self) -> Any:
        """The next frame: a JSON value for text, a decoded `Message` for binary."""
        frame = await self.recv_raw()
        if isinstance(frame, bytes):
            return V2.decode(frame)
        return json.loads(frame)

    async def recv_nothing_before_heartbeat(self, ref: str = "hb") -> None:
        """Prove that nothing was sent: the next frame is the reply to a fresh heartbeat."""
        await self.send(None, ref, "phoenix", "heartbeat", {})
        assert await self.recv() == [None, ref, "phoenix", "phx_reply", _ok({})]

    async def join(self, topic: str, join_ref: str, payload: Any = None) -> Any:
        await self.send(join_ref, join_ref, topic, "phx_join", {} if payload is None else payload)
        return await self.recv()

    async def closed(self, patience: float = WAIT) -> CloseReason:
        """Wait for the server to close the connection; return the close code and reason."""
        with trio.fail_after(patience):
            while True:
                try:
                    await self.ws.get_message()
                except ConnectionClosed as exc:
                    reason = exc.reason
                    break
        assert reason is not None
        return reason


def _ok(response: Any) -> dict[str, Any]:
    return {"response": response, "status": "ok"}


def _error(response: Any) -> dict[str, Any]:
    return {"response": response, "status": "error"}


@asynccontextmanager
async def connect(
    server: TestServer,
    query: str = "vsn=2.0.0",
    *,
    subprotocols: Sequence[str] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    path: str = "/websocket",
) -> AsyncIterator[RawClient]:
    """A trio-websocket client on a TCP stream we own.

    trio-websocket's own client never closes its socket when the server closes first, which
    pytest reports as an unclosed-socket ResourceWarning; owning the stream avoids that.
    """
    resource = f"{server.path}{path}" + (f"?{query}" if query else "")
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    user_error: BaseException | None = None
    try:
        async with stream, trio.open_nursery() as nursery:
            with trio.fail_after(WAIT):
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    f"127.0.0.1:{server.port}",
                    resource,
                    subprotocols=subprotocols,
                    extra_headers=headers,
                )
            try:
                yield RawClient(ws, v1="vsn=2" not in query)
            except BaseException as exc:
                user_error = exc
                raise
            finally:
                with trio.move_on_after(WAIT):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_preferred(group, user_error)


async def rejected_status(
    server: TestServer,
    query: str = "vsn=2.0.0",
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[bytes, bytes]] = (),
    path: str = "/websocket",
) -> int:
    """Send an upgrade request by hand and return the HTTP status of the answer.

    (trio-websocket's client leaks its socket when an upgrade is rejected, so we do not use
    it here.)
    """
    lines = [
        f"GET /socket{path}?{query} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    lines += [f"{name.decode()}: {value.decode()}" for name, value in headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with trio.fail_after(WAIT):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(request)
            response = b""
            while b"\r\n" not in response:
                chunk = await stream.receive_some()
                assert chunk, "the server closed without answering"
                response += chunk
    status = int(response.split()[1])
    assert status != 101, "the upgrade was accepted"
    return status


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with open_test_server(demo_channels()) as running:
        yield running


# -- handshake ------------------------------------------------------------------------------


async def test_url_is_the_mount_point(server: TestServer) -> None:
    assert server.url == f"ws://127.0.0.1:{server.port}/socket"
    async with connect(server) as client:
        await client.recv_nothing_before_heartbeat()
    assert server.statistics().connections_accepted == 1


@pytest.mark.parametrize(
    ("query", "v1"),
    [("", True), ("vsn=1.0.0", True), ("vsn=2.0.0", False), ("vsn=2.0.5", False)],
)
async def test_vsn_selects_the_serializer(server: TestServer, query: str, v1: bool) -> None:
    async with connect(server, query) as client:
        await client.send(None, "1", "phoenix", "heartbeat", {})
        reply = await client.recv_raw()
    if v1:
        assert reply == (
            '{"event":"phx_reply","payload":{"response":{},"status":"ok"},'
            '"ref":"1","topic":"phoenix"}'
        )
    else:
        assert reply == '[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]'


@pytest.mark.parametrize("vsn", ["2.1.0", "3.0.0", "123.1.1", "garbage", "2.0", "2.0.0-rc.1"])
async def test_unmatched_vsn_is_403(server: TestServer, vsn: str) -> None:
    assert await rejected_status(server, f"vsn={vsn}") == 403
    assert server.statistics().upgrades_rejected == 1


def test_vsn_rules() -> None:
    assert isinstance(serializer_for_vsn(None), V1JSONSerializer)
    assert isinstance(serializer_for_vsn("1.0.9"), V1JSONSerializer)
    assert isinstance(serializer_for_vsn("2.0.1-rc.1"), V2JSONSerializer)
    assert isinstance(serializer_for_vsn("2.0.0+build.7"), V2JSONSerializer)
    for refused in ("02.0.0", "1.1.0", "2.0.0-dev", "", ["2.0.0"]):
        assert serializer_for_vsn(refused) is None


async def test_other_paths_are_404(server: TestServer) -> None:
    assert await rejected_status(server, path="/longpoll") == 404
    assert await rejected_status(server, path="") == 404


async def test_connect_hook_params_id_and_info() -> None:
    seen: list[tuple[dict[str, Any], ConnectInfo]] = []

    async def connect_hook(params: dict[str, Any], info: ConnectInfo) -> Accept:
        await trio.lowlevel.checkpoint()
        seen.append((params, info))
        return Accept(id=f"user:{params['user']['name']}", assigns={"role": "admin"})

    async with (
        open_test_server(demo_channels(), connect=connect_hook) as server,
        connect(
            server,
            "user%5Bname%5D=ann&tags[]=a&tags[]=b&vsn=2.0.0",
            headers=[(b"X-Trace", b"abc"), (b"User-Agent", b"raw-test")],
        ) as client,
    ):
        await client.recv_nothing_before_heartbeat()
        connection = await server.wait_connections(1)
    params, info = seen[0]
    assert params == {"user": {"name": "ann"}, "tags": ["a", "b"], "vsn": "2.0.0"}
    assert connection.id == "user:ann"
    assert connection.params == params
    assert connection.assigns == {"role": "admin"}
    assert info.peer[0] == "127.0.0.1"
    assert info.x_headers == (("x-trace", "abc"),)
    assert info.user_agent == "raw-test"
    assert info.header("X-TRACE") == "abc"
    assert info.path == "/socket/websocket"
    assert info.auth_token is None


@pytest.mark.parametrize(
    ("result", "status"),
    [(Reject(), 403), (Reject(429), 429), (42, 403), (RuntimeError("boom"), 500)],
)
async def test_connect_rejections(result: object, status: int) -> None:
    def connect_hook(params: dict[str, Any], info: ConnectInfo) -> Any:
        if isinstance(result, RuntimeError | Reject) and status != 403:
            raise result
        return result

    async with open_test_server(connect=connect_hook) as server:
        assert await rejected_status(server) == status
        assert server.connections == []
    if status == 500:
        assert server.crashes == [result]


async def test_connect_returning_a_string_or_none_accepts() -> None:
    ids = iter(["user:1", None])
    async with open_test_server(connect=lambda params, info: next(ids)) as server:
        for expected in ("user:1", None):
            async with connect(server) as client:
                await client.recv_nothing_before_heartbeat()
            assert server.accepted_connections[-1].id == expected


async def test_auth_token_in_subprotocols() -> None:
    tokens: list[str | None] = []

    def connect_hook(params: dict[str, Any], info: ConnectInfo) -> None:
        tokens.append(info.auth_token)
        if info.auth_token == "bad":
            raise Reject()

    async with open_test_server(auth_token=True, connect=connect_hook) as server:
        offered = ["phoenix", "base64url.bearer.phx.MTIzNA"]  # "1234", as phoenix.js sends it
        async with connect(server, subprotocols=offered) as client:
            assert client.ws.subprotocol == "phoenix"
            await client.recv_nothing_before_heartbeat()
        bad = ["phoenix", "base64url.bearer.phx.YmFk"]
        assert await rejected_status(server, subprotocols=bad) == 403
        assert await rejected_status(server, subprotocols=["chat"]) == 403
        assert await rejected_status(server, subprotocols=["base64url.bearer.phx.%%%"]) == 500
        async with connect(server) as client:  # no subprotocol offered: nothing checked
            assert client.ws.subprotocol is None
    assert tokens == ["1234", "bad", None]  # refused subprotocols never reach connect


def test_split_auth_token() -> None:
    assert split_auth_token(["phoenix", "base64url.bearer.phx.NTY3OA"]) == ("5678", ["phoenix"])
    assert split_auth_token(["phoenix"]) == (None, ["phoenix"])
    two = ["base64url.bearer.phx.MQ", "base64url.bearer.phx.Mg"]
    assert split_auth_token(two) == (None, two)
    assert split_auth_token(["base64url.bearer.phx.6Q"]) == ("é", [])  # Latin-1, as btoa
    with pytest.raises(ValueError, match="malformed"):
        split_auth_token(["base64url.bearer.phx.!"])


async def test_check_origin_only_when_an_origin_is_sent() -> None:
    allowed = ["https://example.com", "//*.other.com"]
    async with open_test_server(check_origin=allowed) as server:
        async with connect(server):
            pass
        async with connect(server, headers=[(b"Origin", b"https://sub.other.com")]):
            pass
        assert await rejected_status(server, headers=[(b"Origin", b"https://evil.com")]) == 403


def test_origin_rules() -> None:
    allowed = ["https://example.com", "//another.com:888", "//*.other.com"]
    assert origin_allowed("https://example.com", allowed, "h")
    assert not origin_allowed("http://example.com", allowed, "h")
    assert origin_allowed("http://another.com:888", allowed, "h")
    assert not origin_allowed("http://another.com:889", allowed, "h")
    assert origin_allowed("https://other.com", allowed, "h")
    assert origin_allowed("https://a.b.other.com", allowed, "h")
    assert not origin_allowed("https://notother.com", allowed, "h")
    assert not origin_allowed("null", allowed, "h")
    assert origin_allowed("http://localhost:4000", True, "localhost")
    assert not origin_allowed("http://example.com", True, "localhost")
    assert origin_allowed("anything", False, "h")
    assert origin_allowed("x", lambda origin: origin == "x", "h")


def test_params_are_parsed_like_plug() -> None:
    assert parse_params("a=1&a=2") == {"a": "2"}
    assert parse_params("a[b][c]=1&a[b][d]=2") == {"a": {"b": {"c": "1", "d": "2"}}}
    assert parse_params("l[][x]=1&l[][x]=2") == {"l": [{"x": "1"}, {"x": "2"}]}
    assert parse_params("q=a+b%20c&empty=&[odd]=1") == {"q": "a b c", "empty": "", "[odd]": "1"}


async def test_reject_upgrades_toggle(server: TestServer) -> None:
    server.reject_upgrades(503)
    assert await rejected_status(server) == 503
    server.reject_upgrades(None)
    async with connect(server) as client:
        await client.recv_nothing_before_heartbeat()


# -- routing table (protocol reference §3) ------------------------------------------------------


async def test_heartbeat_reply_is_exact(server: TestServer) -> None:
    async with connect(server) as client:
        await client.send(None, "1", "phoenix", "heartbeat", {})
        assert await client.recv_raw() == (
            '[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]'
        )


async def test_join_of_an_unmatched_topic(server: TestServer) -> None:
    async with connect(server) as client:
        reply = await client.join("nope:1", "3")
        assert reply == [None, "3", "nope:1", "phx_reply", _error({"reason": "unmatched topic"})]


async def test_join_ok_push_reply_and_server_push(server: TestServer) -> None:
    async with connect(server) as client:
        assert await client.join("echo:1", "3", {"a": 1}) == [
            "3",
            "3",
            "echo:1",
            "phx_reply",
            _ok({"a": 1}),
        ]
        await client.send("3", "4", "echo:1", "echo", {"x": [1, 2]})
        assert await client.recv() == ["3", "4", "echo:1", "phx_reply", _ok({"x": [1, 2]})]
        await client.send("3", "5", "echo:1", "error", {"why": "no"})
        assert await client.recv() == ["3", "5", "echo:1", "phx_reply", _error({"why": "no"})]
        await client.send("3", "6", "echo:1", "push", {"event": "ping", "payload": {"n": 1}})
        assert await client.recv() == ["3", None, "echo:1", "ping", {"n": 1}]
        assert await client.recv() == ["3", "6", "echo:1", "phx_reply", _ok({})]


async def test_noreply_sends_nothing(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "4", "echo:1", "noreply", {})
        await client.recv_nothing_before_heartbeat()


async def test_join_error_keeps_no_channel(server: TestServer) -> None:
    async with connect(server) as client:
        assert await client.join("echo:1", "3", {"reject": "unauthorized"}) == [
            "3",
            "3",
            "echo:1",
            "phx_reply",
            _error({"reason": "unauthorized"}),
        ]
        await client.send("3", "4", "echo:1", "echo", {})
        assert await client.recv() == [
            None,
            "4",
            "echo:1",
            "phx_reply",
            _error({"reason": "unmatched topic"}),
        ]


async def test_join_crash(server: TestServer) -> None:
    async with connect(server) as client:
        assert await client.join("echo:1", "3", {"crash": True}) == [
            "3",
            "3",
            "echo:1",
            "phx_reply",
            _error({"reason": "join crashed"}),
        ]
    assert [str(exc) for exc in server.crashes] == ["join crash requested"]


async def test_crash_sends_phx_error_and_drops_the_channel(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "4", "echo:1", "crash", {})
        assert await client.recv() == [
            "3",
            "3",
            "echo:1",
            "phx_error",
            {"reason": "channel_crash"},
        ]
        await client.send("3", "5", "echo:1", "echo", {})
        assert (await client.recv())[4] == _error({"reason": "unmatched topic"})
        # A rejoin after a crash is an ordinary join.
        assert (await client.join("echo:1", "6"))[4] == _ok({})
    assert [str(exc) for exc in server.crashes] == ["crash requested"]


async def test_stop_closes_the_channel(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "4", "echo:1", "stop", {})
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]
        await client.join("echo:2", "5")
        await client.send("5", "6", "echo:2", "stop_reply", {})
        assert await client.recv() == ["5", "6", "echo:2", "phx_reply", _ok({})]
        assert await client.recv() == ["5", "5", "echo:2", "phx_close", {}]
        await client.send("5", "7", "echo:2", "echo", {})
        assert (await client.recv())[4] == _error({"reason": "unmatched topic"})


async def test_leave_of_a_joined_topic(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "7", "echo:1", "phx_leave", {})
        assert await client.recv() == ["3", "7", "echo:1", "phx_reply", _ok({})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]
        await client.send("3", "8", "echo:1", "echo", {})
        assert (await client.recv())[:2] == [None, "8"]


async def test_leave_of_an_unknown_topic_echoes_the_refs(server: TestServer) -> None:
    async with connect(server) as client:
        await client.send("9", "10", "echo:1", "phx_leave", {})
        assert await client.recv() == ["9", "10", "echo:1", "phx_reply", _ok({})]


async def test_stale_join_refs_are_ignored_and_nil_is_accepted(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("99", "4", "echo:1", "echo", {})
        await client.send("99", "5", "echo:1", "phx_leave", {})
        await client.recv_nothing_before_heartbeat()
        await client.send(None, "6", "echo:1", "echo", {"nil": True})
        assert await client.recv() == ["3", "6", "echo:1", "phx_reply", _ok({"nil": True})]
        await client.send(None, "7", "echo:1", "phx_leave", {})
        assert await client.recv() == ["3", "7", "echo:1", "phx_reply", _ok({})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]


async def test_event_for_an_unjoined_topic(server: TestServer) -> None:
    async with connect(server) as client:
        await client.send("3", "4", "room:1", "new_msg", {})
        assert await client.recv() == [
            None,
            "4",
            "room:1",
            "phx_reply",
            _error({"reason": "unmatched topic"}),
        ]


async def test_duplicate_join_replies_then_closes_the_old_join(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("9", "9", "echo:1", "phx_join", {"second": True})
        assert await client.recv() == ["9", "9", "echo:1", "phx_reply", _ok({"second": True})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]
        await client.send("3", "10", "echo:1", "echo", {})  # the old join_ref is stale now
        await client.send("9", "11", "echo:1", "echo", {})
        assert await client.recv() == ["9", "11", "echo:1", "phx_reply", _ok({})]
        connection = await server.wait_connections(1)
        assert connection.topics == {"echo:1": "9"}


async def test_duplicate_join_that_fails_still_closes_the_old_join(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        reply = await client.join("echo:1", "9", {"reject": "no"})
        assert reply == ["9", "9", "echo:1", "phx_reply", _error({"reason": "no"})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]


async def test_the_101st_channel_is_refused(server: TestServer) -> None:
    async with connect(server) as client:
        for n in range(1, 101):
            await client.send(str(n), str(n), f"echo:{n}", "phx_join", {})
        for _ in range(100):
            assert (await client.recv())[4] == _ok({})
        assert await client.join("echo:101", "101") == [
            "101",
            "101",
            "echo:101",
            "phx_reply",
            _error({"reason": "too many channels joined"}),
        ]
        assert server.statistics().channels_joined == 100


async def test_max_channels_per_transport_is_configurable() -> None:
    async with (
        open_test_server(demo_channels(), max_channels_per_transport=1) as server,
        connect(server) as client,
    ):
        assert (await client.join("echo:1", "1"))[4] == _ok({})
        assert (await client.join("echo:2", "2"))[4] == _error(
            {"reason": "too many channels joined"}
        )
        assert (await client.join("echo:1", "3"))[4] == _ok({})  # a rejoin replaces


async def test_v1_frames_have_no_join_ref(server: TestServer) -> None:
    async with connect(server, "vsn=1.0.0") as client:
        await client.send("3", "3", "echo:1", "phx_join", {})
        assert await client.recv() == {
            "event": "phx_reply",
            "payload": _ok({}),
            "ref": "3",
            "topic": "echo:1",
        }
        await client.send("3", "4", "echo:1", "push", {"event": "e", "payload": {}})
        assert await client.recv() == {"event": "e", "payload": {}, "ref": None, "topic": "echo:1"}
        assert (await client.recv())["ref"] == "4"
        await client.send("3", "5", "echo:1", "crash", {})
        assert await client.recv() == {
            "event": "phx_error",
            "payload": {"reason": "channel_crash"},
            "ref": "3",
            "topic": "echo:1",
        }


async def test_v1_client_without_join_ref(server: TestServer) -> None:
    async with connect(server, "") as client:
        await client.ws.send_message(
            '{"topic":"echo:1","event":"phx_join","payload":{},"ref":"1"}'
        )
        assert (await client.recv())["payload"] == _ok({})
        await client.ws.send_message('{"topic":"echo:1","event":"echo","payload":{},"ref":"2"}')
        assert (await client.recv())["ref"] == "2"
        # A V1 reply with bytes cannot be encoded: the channel crashes, as in Phoenix.
        await client.ws.send_message(
            '{"topic":"echo:1","event":"push_binary","payload":{"event":"b","bytes":[1]},"ref":"3"}'
        )
        assert await client.recv() == {
            "event": "phx_error",
            "payload": {"reason": "channel_crash"},
            "ref": None,
            "topic": "echo:1",
        }


# -- binary frames ----------------------------------------------------------------------------


async def test_binary_push_reply_and_broadcast(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "12")
        await client.send("12", "123", "echo:1", "echo", b"efg")
        assert await client.recv_raw() == b"\x01\x02\x03\x06\x02" + b"12123echo:1ok" + b"efg"
        await client.send("12", "124", "echo:1", "push_binary", {"event": "bin", "bytes": [0, 1]})
        assert await client.recv() == Message(
            join_ref="12", ref=None, topic="echo:1", event="bin", payload=b"\x00\x01"
        )
        assert (await client.recv())[1] == "124"
        await client.send("12", "125", "echo:1", "broadcast_binary", {"event": "b", "bytes": [7]})
        assert await client.recv_raw() == b"\x02\x06\x01echo:1b\x07"
        assert (await client.recv())[1] == "125"
        await client.send("12", "126", "echo:1", "error", b"\xff")
        assert await client.recv() == Message(
            join_ref="12",
            ref="126",
            topic="echo:1",
            event="phx_reply",
            payload={"status": "error", "response": b"\xff"},
        )


# -- broadcasts and server pushes ---------------------------------------------------------------


class Shouter(ChannelHandler):
    """Broadcasts from the channel; pushes with a bad payload on request."""

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        await trio.lowlevel.checkpoint()
        if event == "from":
            socket.broadcast_from("shout", payload)
        elif event == "bad_push":
            socket.push("x", cast(Any, ["not", "a", "map"]))
        return Reply.ok()


async def test_broadcasts_reach_every_subscriber(server: TestServer) -> None:
    server.channel("shout:*", Shouter)
    async with connect(server) as a, connect(server) as b, connect(server, "") as c:
        await a.join("room:1", "1", {"user": "ann"})
        await b.join("room:1", "2", {"user": "bob"})
        await c.send("3", "3", "room:1", "phx_join", {"user": "cy"})
        for client, count in ((a, 4), (b, 3), (c, 3)):  # state and diffs (c: reply too)
            for _ in range(count):
                await client.recv()
        await a.send("1", "5", "room:1", "new_msg", {"body": "hi"})
        expected = [None, None, "room:1", "new_msg", {"body": "hi", "user": "ann"}]
        assert await a.recv() == expected
        assert await a.recv() == ["1", "5", "room:1", "phx_reply", _ok({})]
        assert await b.recv() == expected
        assert await c.recv() == {
            "event": "new_msg",
            "payload": {"body": "hi", "user": "ann"},
            "ref": None,
            "topic": "room:1",
        }
        server.broadcast("room:1", "news", {"n": 1})
        assert await a.recv() == [None, None, "room:1", "news", {"n": 1}]
        assert await b.recv() == [None, None, "room:1", "news", {"n": 1}]
        await a.join("shout:1", "7")
        await b.join("shout:1", "8")
        await a.send("7", "9", "shout:1", "from", {"x": 1})
        assert await a.recv() == ["7", "9", "shout:1", "phx_reply", _ok({})]
        assert await b.recv() == [None, None, "shout:1", "shout", {"x": 1}]
        await a.recv_nothing_before_heartbeat()


async def test_server_payloads_must_be_maps(server: TestServer) -> None:
    server.channel("shout:*", Shouter)
    with pytest.raises(ValueError, match="dict or bytes"):
        server.broadcast("room:1", "e", cast(Any, [1]))
    async with connect(server) as client:
        await client.join("shout:1", "1")
        await client.send("1", "2", "shout:1", "bad_push", {})
        assert await client.recv() == [
            "1",
            "1",
            "shout:1",
            "phx_error",
            {"reason": "channel_crash"},
        ]
    assert isinstance(server.crashes[0], ValueError)


class Eager(ChannelHandler):
    """Pushes inside join, which Phoenix forbids."""

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        await trio.lowlevel.checkpoint()
        socket.push("too_early", {})
        return None


async def test_push_during_join_crashes_the_join(server: TestServer) -> None:
    server.channel("eager", Eager)
    async with connect(server) as client:
        assert (await client.join("eager", "1"))[4] == _error({"reason": "join crashed"})
    assert isinstance(server.crashes[0], RuntimeError)


async def test_reply_later(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        start = trio.current_time()
        await client.send("1", "2", "echo:1", "reply_later", {"delay": 3, "payload": {"v": 1}})
        await client.recv_nothing_before_heartbeat()
        assert await client.recv() == ["1", "2", "echo:1", "phx_reply", _ok({"v": 1})]
        assert trio.current_time() - start >= 3


async def test_socket_ref_outside_handle_in_is_an_error(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        process = connection._channels["echo:1"]
        with pytest.raises(RuntimeError, match="socket_ref"):
            process.socket.socket_ref()
        assert process.socket.joined
        assert process.socket.ref is None
        assert process.socket.socket_id is None
        assert process.socket.params == {"vsn": "2.0.0"}


# -- presence ---------------------------------------------------------------------------------


async def test_presence_state_and_diffs_on_the_wire(server: TestServer) -> None:
    async with connect(server) as a:
        assert (await a.join("room:lobby", "1", {"user": "ann"}))[4] == _ok(
            {"topic": "room:lobby", "user": "ann"}
        )
        # The join's own diff first, as on a real server (presence_order="diff_first").
        diff = await a.recv()
        state = await a.recv()
        assert state[:4] == ["1", None, "room:lobby", "presence_state"]
        (meta,) = state[4]["ann"]["metas"]
        assert list(meta) == ["online_at", "phx_ref"]
        assert len(meta["phx_ref"]) == 16
        assert diff == [
            None,
            None,
            "room:lobby",
            "presence_diff",
            {"joins": {"ann": {"metas": [meta]}}, "leaves": {}},
        ]
        async with connect(server) as b:
            await b.join("room:lobby", "1", {"user": "bob"})
            assert list((await b.recv())[4]["joins"]) == ["bob"]
            assert set((await b.recv())[4]) == {"ann", "bob"}
            bob_join = (await a.recv())[4]
            assert list(bob_join["joins"]) == ["bob"]
            assert bob_join["leaves"] == {}
            await a.send("1", "2", "room:lobby", "set_status", {"status": "away"})
            diff = (await b.recv())[4]
            (new,) = diff["joins"]["ann"]["metas"]
            assert diff["leaves"] == {"ann": {"metas": [meta]}}
            assert new["phx_ref_prev"] == meta["phx_ref"]
            assert new["status"] == "away"
            assert new["phx_ref"] != meta["phx_ref"]
            assert server.presence.list("room:lobby")["ann"]["metas"] == [new]
        # b's connection ended: its presence leaves.
        messages = [await a.recv() for _ in range(3)]
        leave = [m for m in messages if m[3] == "presence_diff"]
        assert leave[-1][4]["joins"] == {}
        assert list(leave[-1][4]["leaves"]) == ["bob"]
    assert server.presence.list("room:lobby") == {}


def test_presence_tracker_shapes() -> None:
    sent: list[tuple[str, str, dict[str, Any]]] = []
    presence = PresenceTracker(lambda topic, event, payload: sent.append((topic, event, payload)))
    owner = cast(ChannelSocket, SimpleNamespace(topic="room:1"))
    other = cast(ChannelSocket, SimpleNamespace(topic="room:1"))
    connection = cast(ServerConnection, SimpleNamespace())
    ref1 = presence.track(owner, "u1", {"name": "a"})
    ref2 = presence.track(other, "u1", {"name": "b"})
    presence.track(connection, "c", {}, topic="room:2")
    with pytest.raises(ValueError, match="already tracked"):
        presence.track(owner, "u1", {})
    with pytest.raises(ValueError, match="explicit topic"):
        presence.track(connection, "c", {})
    assert presence.list("room:1") == {
        "u1": {"metas": [{"name": "a", "phx_ref": ref1}, {"name": "b", "phx_ref": ref2}]}
    }
    ref3 = presence.update(owner, "u1", {"name": "a2"})
    assert [m["phx_ref"] for m in presence.list("room:1")["u1"]["metas"]] == [ref2, ref3]
    with pytest.raises(KeyError):
        presence.update(owner, "nobody", {})
    presence.untrack(owner, "nobody")
    presence.owner_down(owner)
    presence.owner_down(connection)
    presence.untrack(other, "u1")
    assert presence.list("room:1") == {}
    assert presence.list("room:2") == {}
    # presence_order="diff_first": every diff went out at once.
    assert {event for _, event, _ in sent} == {"presence_diff"}
    diffs = [payload for _, _, payload in sent]
    assert diffs[3] == {
        "joins": {"u1": {"metas": [{"name": "a2", "phx_ref": ref3, "phx_ref_prev": ref1}]}},
        "leaves": {"u1": {"metas": [{"name": "a", "phx_ref": ref1}]}},
    }
    assert [sorted(d["leaves"]) for d in diffs[4:]] == [["u1"], ["c"], ["u1"]]


async def _join_order(server: TestServer, topic: str) -> list[str]:
    async with connect(server) as client:
        await client.join(topic, "1", {"user": "ann"})
        return [(await client.recv())[3] for _ in range(2)]


async def test_presence_order_state_first() -> None:
    async with open_test_server(demo_channels(), presence_order="state_first") as server:
        assert await _join_order(server, "room:1") == ["presence_state", "presence_diff"]


async def test_presence_order_random_gives_both_orders() -> None:
    async with open_test_server(
        demo_channels(), presence_order="random", presence_seed=11
    ) as server:
        orders = {tuple(await _join_order(server, f"room:{n}")) for n in range(20)}
    assert orders == {
        ("presence_state", "presence_diff"),
        ("presence_diff", "presence_state"),
    }


def test_presence_order_and_phoenix_version_are_checked() -> None:
    with pytest.raises(ValueError, match="presence order"):
        TestServer(presence_order=cast(Any, "sometimes"))
    with pytest.raises(ValueError, match="phoenix_version"):
        TestServer(phoenix_version=cast(Any, "1.6"))


# -- close codes --------------------------------------------------------------------------------


async def test_disconnect_closes_every_connection_of_the_id_with_1001() -> None:
    async with (
        open_test_server(connect=lambda params, info: params.get("id")) as server,
        connect(server, "id=u1&vsn=2.0.0") as one,
        connect(server, "id=u1&vsn=2.0.0") as two,
        connect(server, "id=u2&vsn=2.0.0") as other,
    ):
        server.disconnect("u1")
        assert (await one.closed()).code == 1001
        assert (await two.closed()).code == 1001
        await other.recv_nothing_before_heartbeat()
        server.broadcast("u2", "disconnect", {})
        assert (await other.closed()).code == 1001


async def test_phoenix_1_7_disconnects_with_1000_and_crashes_with_an_empty_payload() -> None:
    async with (
        open_test_server(
            demo_channels(), connect=lambda params, info: params.get("id"), phoenix_version="1.7"
        ) as server,
        connect(server, "id=u1&vsn=2.0.0") as one,
    ):
        await one.join("echo:1", "1")
        await one.send("1", "2", "echo:1", "crash", {})
        assert await one.recv() == ["1", "1", "echo:1", "phx_error", {}]
        server.disconnect("u1")
        assert (await one.closed()).code == 1000


async def test_drain_closes_with_1012(server: TestServer) -> None:
    async with connect(server) as client:
        await client.recv_nothing_before_heartbeat()
        server.drain()
        assert (await client.closed()).code == 1012


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1,2]", '{"topic":"t"}', "[1,2,3,4", b"\x05abc", b"\x00\x05\x01", b""],
)
async def test_malformed_frames_close_with_1011(server: TestServer, frame: str | bytes) -> None:
    async with connect(server) as client:
        await client.ws.send_message(frame)
        assert (await client.closed()).code == 1011
    connection = await server.wait_connections(1)
    await connection.wait_closed()
    assert connection.close_code == 1011


async def test_odd_field_types_are_routed_not_fatal(server: TestServer) -> None:
    async with connect(server) as client:
        await client.ws.send_message('[null,1,2,"phx_join",{}]')
        assert await client.recv() == [
            None,
            1,
            2,
            "phx_reply",
            _error({"reason": "unmatched topic"}),
        ]
        await client.ws.send_message('[null,"r",["t"],7,{}]')
        assert await client.recv() == [
            None,
            "r",
            ["t"],
            "phx_reply",
            _error({"reason": "unmatched topic"}),
        ]
    async with connect(server, "vsn=1.0.0") as client:
        await client.ws.send_message('{"topic":1,"event":"e","payload":{},"ref":2}')
        assert await client.recv() == {
            "event": "phx_reply",
            "payload": _error({"reason": "unmatched topic"}),
            "ref": 2,
            "topic": 1,
        }


async def test_oversized_frames_close_with_1009() -> None:
    async with open_test_server(max_frame_size=1000) as server:
        async with connect(server) as client:
            await client.send(None, "1", "phoenix", "heartbeat", {"pad": "x" * 900})
            assert (await client.recv())[1] == "1"
            await client.send(None, "2", "phoenix", "heartbeat", {"pad": "x" * 2000})
            assert (await client.closed()).code == 1009
        async with connect(server) as client:  # 600 characters, 1200 bytes
            await client.send(None, "1", "phoenix", "heartbeat", {"pad": "é" * 600})
            assert (await client.closed()).code == 1009


async def test_idle_timeout(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_server(idle_timeout=60) as server, connect(server) as client:
        start = trio.current_time()
        for _ in range(4):  # a heartbeat every 30 s keeps the connection alive
            await trio.sleep(30)
            await client.recv_nothing_before_heartbeat()
        assert (await client.closed(patience=120)).code == 1000
        assert trio.current_time() - start >= 180
    async with (
        open_test_server(idle_timeout=3, idle_close_code=1002) as server,
        connect(server) as client,
    ):
        assert (await client.closed()).code == 1002


async def test_leaving_open_test_server_closes_clients_with_1001() -> None:
    codes: list[int] = []
    async with trio.open_nursery() as nursery, open_test_server(demo_channels()) as server:
        joined = trio.Event()

        async def client_task() -> None:
            async with connect(server) as client:
                await client.join("echo:1", "1")
                joined.set()
                codes.append((await client.closed()).code)

        nursery.start_soon(client_task)
        await joined.wait()
    assert codes == [1001]
    assert server.connections == []


async def test_cancelling_serve_test_server_sends_1001() -> None:
    server_scope = trio.CancelScope()

    async def run_server(*, task_status: trio.TaskStatus[TestServer]) -> None:
        with server_scope:
            await serve_test_server(demo_channels(), task_status=task_status)

    async with trio.open_nursery() as nursery:
        server: TestServer = await nursery.start(run_server)
        async with connect(server) as client:
            await client.join("echo:1", "1")
            server_scope.cancel()
            assert (await client.closed()).code == 1001
    assert server.connections == []


async def test_user_exceptions_are_not_wrapped() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_test_server():
            raise KeyError("mine")


# -- fault injection -----------------------------------------------------------------------------


async def test_drop_is_abrupt(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        connection.drop()
        assert (await client.closed()).code == 1006
        await connection.wait_closed()
        assert connection.close_code == 1006
        assert connection.closed
        assert server.connections == []


async def test_stall_and_resume(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        connection.stall()
        assert connection.stalled
        await client.send("1", "2", "echo:1", "echo", {"n": 2})
        with trio.move_on_after(120) as waited:  # idle timeout (60 s) is paused too
            await client.ws.get_message()
        assert waited.cancelled_caught
        connection.resume()
        assert await client.recv() == ["1", "2", "echo:1", "phx_reply", _ok({"n": 2})]


async def test_send_delay(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    async with connect(server) as client:
        connection = await server.wait_connections(1)
        connection.send_delay = 2.5
        assert connection.send_delay == 2.5
        with pytest.raises(ValueError, match=">= 0"):
            connection.send_delay = -1
        start = trio.current_time()
        await client.recv_nothing_before_heartbeat()
        assert trio.current_time() - start >= 2.5


async def test_close_with_a_chosen_code(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "1")
        connection = await server.wait_connections(1)
        connection.close(4000, "go away")
        reason = await client.closed()
        assert (reason.code, reason.reason) == (4000, "go away")
    await connection.wait_closed()
    assert (connection.close_code, connection.close_reason) == (4000, "go away")


async def test_received_messages_are_recorded(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "7")
        connection = await server.wait_connections(1)
        join = await connection.wait_message(lambda m: m.event == "phx_join")
        assert (join.join_ref, join.ref, join.topic) == ("7", "7", "echo:1")

        async def late() -> None:
            await trio.sleep(0.01)
            await client.send("7", "8", "echo:1", "noreply", {"k": 1})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(late)
            push = await connection.wait_message(lambda m: m.ref == "8")
        assert push.payload == {"k": 1}
        assert [m.ref for m in connection.received] == ["7", "8"]
    await connection.wait_closed()
    with pytest.raises(trio.ClosedResourceError):
        await connection.wait_message(lambda m: False)


async def test_wait_connections_counts_every_accepted_connection(server: TestServer) -> None:
    for _ in range(2):
        async with connect(server):
            pass
    second = await server.wait_connections(2)
    assert second is server.accepted_connections[1]
    assert second.closed
    assert server.statistics().connections_open == 0


async def test_server_handles_before_start() -> None:
    server = TestServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    assert "not started" in repr(server)


# -- pytest plugin --------------------------------------------------------------------------------


async def test_phoenix_server_fixture(phoenix_server: TestServer) -> None:
    async with connect(phoenix_server) as client:
        assert (await client.join("room:1", "1"))[4] == _ok(
            {"topic": "room:1", "user": "anonymous"}
        )


async def test_phoenix_server_factory_fixture(
    phoenix_server_factory: PhoenixServerFactory,
) -> None:
    server = await phoenix_server_factory({"only:*": Shouter}, max_channels_per_transport=1)
    async with connect(server) as client:
        assert (await client.join("only:1", "1"))[4] == _ok({})
        assert (await client.join("echo:1", "2"))[4] == _error({"reason": "unmatched topic"})
