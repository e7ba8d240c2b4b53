"""The test server's WebSocket upgrade as Phoenix decides it: path, ``vsn``, connect hook,
auth token, origin, params (protocol reference §1.2).

How these tests run: ``tests/testing/server_helpers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.testing.server_helpers import connect, rejected_status
from trio_phoenix.proto._serializer import V1JSONSerializer, V2JSONSerializer
from trio_phoenix.testing import (
    Accept,
    ConnectInfo,
    Reject,
    TestServer,
    demo_channels,
    open_test_server,
)
from trio_phoenix.testing._handshake import (
    origin_allowed,
    parse_params,
    serializer_for_vsn,
    split_auth_token,
)


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
