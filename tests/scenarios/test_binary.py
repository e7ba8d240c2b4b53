"""Binary frames both ways (V2 serializer only)."""

from __future__ import annotations

import pytest
import trio

from trio_phoenix import EncodeError, V1JSONSerializer, open_socket

from .conftest import LIMIT, ScenarioServer

DATA = bytes(range(256)) * 4


async def test_binary_push_and_binary_reply(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:bin") as channel,
        ):
            assert await channel.push("echo", DATA) == DATA
            assert await channel.push("echo", b"") == b""


async def test_binary_server_push(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:bin") as channel,
            channel.subscribe("blob") as blobs,
        ):
            await channel.push("push_binary", {"event": "blob", "bytes": [0, 1, 2, 255]})
            message = await blobs.receive()
            assert message.payload == b"\x00\x01\x02\xff"
            assert message.join_ref == channel.join_ref


async def test_binary_broadcast(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as alice,
            open_socket(server.url, **server.options) as bob,
            alice.channel("echo:binroom") as alice_room,
            bob.channel("echo:binroom") as bob_room,
            bob_room.subscribe("blob") as blobs,
        ):
            await alice_room.push("broadcast_binary", {"event": "blob", "bytes": list(b"hi")})
            message = await blobs.receive()
            assert (message.payload, message.ref, message.join_ref) == (b"hi", None, None)


async def test_v1_cannot_send_binary(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, serializer=V1JSONSerializer()) as socket,
            socket.channel("echo:v1") as channel,
        ):
            with pytest.raises(EncodeError):
                await channel.push("echo", b"\x00")
            assert await channel.push("echo", {"after": 1}) == {"after": 1}
