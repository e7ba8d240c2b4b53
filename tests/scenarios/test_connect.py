"""Connecting: tokens in params and in ``Sec-WebSocket-Protocol``, refusals, serializers."""

from __future__ import annotations

import pytest

from trio_phoenix import ConnectError, V1JSONSerializer, V2JSONSerializer, open_socket

from .conftest import ScenarioServer


async def test_connect_without_token(server: ScenarioServer) -> None:
    async with open_socket(server.url, **server.options) as socket:
        assert socket.state.value == "connected"
        assert await socket.ping() >= 0


async def test_token_param_accepted(server: ScenarioServer) -> None:
    async with (
        open_socket(server.url, **server.options, params={"token": "secret"}) as socket,
        socket.channel("echo:t") as channel,
    ):
        assert await channel.push("echo", {"a": 1}) == {"a": 1}


async def test_bad_token_param_is_403(server: ScenarioServer) -> None:
    with pytest.raises(ConnectError) as caught:
        async with open_socket(server.url, **server.options, params={"token": "wrong"}):
            pass  # pragma: no cover
    assert caught.value.status == 403


async def test_auth_token_accepted(server: ScenarioServer) -> None:
    async with (
        open_socket(server.url, **server.options, auth_token="secret") as socket,
        socket.channel("echo:t") as channel,
    ):
        assert await channel.push("echo", {}) == {}


async def test_bad_auth_token_is_403(server: ScenarioServer) -> None:
    with pytest.raises(ConnectError) as caught:
        async with open_socket(server.url, **server.options, auth_token="wrong"):
            pass  # pragma: no cover
    assert caught.value.status == 403


async def test_callable_auth_token(server: ScenarioServer) -> None:
    async def token() -> str:
        return "secret"

    async with open_socket(server.url, **server.options, auth_token=token) as socket:
        assert await socket.ping() >= 0


@pytest.mark.parametrize("serializer", [V1JSONSerializer(), V2JSONSerializer()])
async def test_serializers_round_trip(
    server: ScenarioServer, serializer: V1JSONSerializer | V2JSONSerializer
) -> None:
    async with (
        open_socket(server.url, **server.options, serializer=serializer) as socket,
        socket.channel("echo:s", {"hello": "world"}) as channel,
        channel.subscribe("news") as news,
    ):
        assert channel.join_response == {"hello": "world"}
        assert await channel.push("echo", {"nested": [1, {"x": None}]}) == {
            "nested": [1, {"x": None}]
        }
        await channel.push("broadcast", {"event": "news", "payload": {"v": 1}})
        message = await news.receive()
        assert (message.event, message.payload) == ("news", {"v": 1})
