"""Connection control against both servers and over every transport: ``disconnect()`` keeps
the channels waiting, ``connect()`` resumes them, ``reconnect()`` starts a new connection."""

from __future__ import annotations

import pytest
import trio

from trio_phoenix import (
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    Disconnected,
    DisconnectRequested,
    ReplyLost,
    Socket,
    SocketState,
    open_socket,
)

from .conftest import LIMIT, ScenarioServer, fast_rejoin


def state(socket: Socket) -> SocketState:
    return socket.state


async def test_disconnect_connect_and_reconnect(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as socket,
            socket.channel("echo:control", {"since": 1}) as channel,
            socket.lifecycle() as events,
        ):
            await socket.disconnect()
            assert state(socket) is SocketState.DISCONNECTED
            assert channel.statistics().state is ChannelState.ERRORED
            seen = [await events.receive() for _ in range(3)]
            assert [type(event) for event in seen] == [
                DisconnectRequested,
                ChannelErrored,
                Disconnected,
            ]
            assert isinstance(seen[2], Disconnected)
            assert seen[2].code == 1000
            async with trio.open_nursery() as nursery:
                answers: list[object] = []

                async def push() -> None:
                    answers.append(await channel.push("echo", {"while": "disconnected"}))

                nursery.start_soon(push)
                await trio.sleep(0.2)
                assert answers == []  # buffered: nothing reconnects by itself
                assert state(socket) is SocketState.DISCONNECTED
                await socket.connect()
            assert answers == [{"while": "disconnected"}]
            assert channel.state is ChannelState.JOINED
            assert channel.join_response == {"since": 1}
            ref = channel.join_ref
            await socket.reconnect()
            await channel.wait_joined()
            assert channel.join_ref != ref
            assert await channel.push("echo", {"after": "reconnect"}) == {"after": "reconnect"}
            kinds = []
            async for event in events:
                kinds.append(type(event))
                if kinds.count(ChannelJoined) == 2:
                    break
            assert kinds == [
                Connected,
                ChannelJoined,
                ChannelErrored,
                Disconnected,
                Connected,
                ChannelJoined,
            ]


async def test_params_callable_is_evaluated_on_every_rejoin(server: ScenarioServer) -> None:
    last_seen = [0]
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, rejoin_after=fast_rejoin) as socket,
            socket.channel("echo:since", lambda: {"since": last_seen[-1]}) as channel,
        ):
            assert channel.join_response == {"since": 0}
            last_seen.append(7)
            with pytest.raises(ReplyLost):
                await channel.push("crash", {})
            await channel.wait_joined()
            assert channel.join_response == {"since": 7}
            last_seen.append(8)
            await socket.reconnect()
            await channel.wait_joined()
            assert channel.join_response == {"since": 8}
