"""Binary frames both ways (V2 serializer only); over LongPoll, what Phoenix does with them.

Phoenix's LongPoll carries client binary messages (base64 lines of the POST) but cannot put a
server binary message into a poll's JSON: bytes that are not UTF-8 fail the poll (HTTP 500,
the socket reconnects), others arrive as a string the client cannot decode (a malformed
frame, counted and skipped).
"""

from __future__ import annotations

import pytest
import trio

from trio_phoenix import (
    ChannelErrored,
    Disconnected,
    EncodeError,
    ReplyLost,
    V1JSONSerializer,
    open_socket,
)

from .conftest import LIMIT, ScenarioServer, fast_rejoin

DATA = bytes(range(256)) * 4


async def test_binary_push_and_binary_reply(server: ScenarioServer) -> None:
    if server.longpoll:
        await _binary_reply_fails_the_poll(server)
        return
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:bin") as channel,
        ):
            assert await channel.push("echo", DATA) == DATA
            assert await channel.push("echo", b"") == b""


async def _binary_reply_fails_the_poll(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, rejoin_after=fast_rejoin) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:bin") as channel,
        ):
            with pytest.raises(ReplyLost):
                await channel.push("echo", DATA)
            async for event in events:
                if isinstance(event, Disconnected):
                    assert event.code == 1011  # the poll's HTTP 500
                    break
            assert await channel.push("echo", {"after": 1}) == {"after": 1}


@pytest.mark.transports("longpoll")
async def test_longpoll_binary_push_reaches_the_channel(server: ScenarioServer) -> None:
    """A binary push over LongPoll is decoded by the server: it crashes the channel (``crash``
    takes any payload) rather than the session, which a garbled message would."""
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:bin") as channel,
        ):
            with pytest.raises(ReplyLost):
                await channel.push("crash", DATA)
            async for event in events:
                if isinstance(event, ChannelErrored):
                    assert event.topic == "echo:bin"
                    break
            assert socket.statistics().disconnects == 0


@pytest.mark.transports("longpoll")
async def test_longpoll_utf8_binary_push_is_a_malformed_frame(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            async with socket.channel("echo:bin") as channel:
                await channel.push("push_binary", {"event": "blob", "bytes": [104, 105]})
                # The push came before this reply, on the same session.
                assert await channel.push("echo", {"after": 1}) == {"after": 1}
            assert socket.statistics().malformed_frames == 1
            assert socket.statistics().disconnects == 0


# Phoenix's LongPoll cannot carry server binary messages (see the LongPoll tests above).
@pytest.mark.transports("websocket", "trio-websocket")
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


# Phoenix's LongPoll cannot carry server binary messages (see the LongPoll tests above).
@pytest.mark.transports("websocket", "trio-websocket")
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
