"""Connection control on a real client and the in-process server: ``socket.disconnect()``,
``socket.connect()`` and ``socket.reconnect()`` in each socket state, on ``autojump_clock``."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from tests.helpers import LIMIT, next_events
from trio_phoenix import (
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    ConnectFailed,
    Disconnected,
    DisconnectRequested,
    PushTimeout,
    ReconnectScheduled,
    ReplyLost,
    Socket,
    SocketClosed,
    SocketState,
    connect_socket,
    open_socket,
)
from trio_phoenix.testing import TestServer

DISCONNECT = {"source": "client", "reason": "disconnect"}


def state(socket: Socket) -> SocketState:
    """``state(socket)`` (a call, so that mypy does not narrow it across awaits)."""
    return socket.state


async def test_disconnect_waits_and_connect_resumes(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:control") as channel,
        ):
            assert isinstance(await events.receive(), ChannelJoined)
            await socket.disconnect()
            assert await next_events(events, 3) == [
                DisconnectRequested(),
                ChannelErrored("echo:control", DISCONNECT),
                Disconnected(code=1000, reason="disconnect"),
            ]
            connection = phoenix_server.accepted_connections[0]
            await connection.wait_closed()
            assert connection.close_code == 1000
            assert state(socket) is SocketState.DISCONNECTED
            assert channel.statistics().state is ChannelState.ERRORED
            # Nothing reconnects by itself; a push waits in the buffer meanwhile.
            async with trio.open_nursery() as nursery:
                replies: list[object] = []

                async def push() -> None:
                    replies.append(await channel.push("echo", {"n": 1}))

                nursery.start_soon(push)
                await trio.sleep(5)  # within the push timeout (10 s)
                assert len(phoenix_server.accepted_connections) == 1
                assert channel.statistics().buffered_pushes == 1
                before = trio.current_time()
                await socket.connect()
                assert trio.current_time() == before  # no backoff
                assert state(socket) is SocketState.CONNECTED
            assert replies == [{"n": 1}]
            assert channel.state is ChannelState.JOINED
            assert await next_events(events, 2) == [
                Connected(connects=2),
                ChannelJoined("echo:control", {}, rejoin=True),
            ]


async def test_a_push_times_out_while_disconnected(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, timeout=2) as socket:
            channel = socket.channel("echo:timeout")
            await channel.join()
            await socket.disconnect()
            with pytest.raises(PushTimeout):
                await channel.push("echo", {})
            assert trio.current_time() == pytest.approx(2)


async def test_a_push_awaiting_its_reply_fails_on_disconnect(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:lost")
            await channel.join()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(socket.disconnect)
                with pytest.raises(ReplyLost):
                    await channel.push("sleep", {"seconds": 5})


async def test_disconnect_twice_and_calls_on_a_closed_socket(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket, socket.lifecycle() as events:
            await socket.disconnect()
            await socket.disconnect()
            await socket.reconnect()  # does not undo disconnect()
            assert state(socket) is SocketState.DISCONNECTED
            assert await next_events(events, 2) == [
                DisconnectRequested(),
                Disconnected(code=1000, reason="disconnect"),
            ]
            await socket.aclose()
            for command in (socket.disconnect, socket.connect, socket.reconnect):
                with pytest.raises(SocketClosed):
                    await command()


async def test_disconnect_cancelled_still_disconnects(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            with trio.CancelScope() as scope:
                scope.cancel()
                await socket.disconnect()
            assert scope.cancelled_caught
            assert state(socket) is SocketState.DISCONNECTED
            await phoenix_server.accepted_connections[0].wait_closed()


async def test_disconnect_while_waiting_to_reconnect(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket"
    with trio.fail_after(LIMIT):
        async with (
            open_socket(url, wait_connected=False) as socket,
            socket.lifecycle() as events,
        ):
            assert isinstance(await events.receive(), ConnectFailed)
            assert isinstance(await events.receive(), ReconnectScheduled)
            await socket.disconnect()
            assert await events.receive() == DisconnectRequested()
            await trio.sleep(30)
            assert events.statistics().buffered == 0  # no attempt since
            assert state(socket) is SocketState.DISCONNECTED


async def test_disconnect_before_the_first_connection(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, phoenix_server.url, wait_connected=False)
            await socket.disconnect()
            await trio.sleep(10)
            assert phoenix_server.accepted_connections == []
            await socket.connect()
            assert len(phoenix_server.accepted_connections) == 1
            await socket.aclose()


async def test_reconnect_drops_and_reconnects_at_once(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:again") as channel,
            socket.lifecycle() as events,
        ):
            first_ref = channel.join_ref
            await socket.reconnect()
            assert trio.current_time() < 0.01  # no backoff
            assert len(phoenix_server.accepted_connections) == 2
            assert phoenix_server.accepted_connections[0].close_code == 1000
            await channel.wait_joined()
            assert channel.join_ref != first_ref
            assert await channel.push("echo", {"n": 2}) == {"n": 2}
            assert await next_events(events, 4) == [
                ChannelErrored("echo:again", {"source": "client", "reason": "reconnect"}),
                Disconnected(code=1000, reason="reconnect"),
                Connected(connects=2),
                ChannelJoined("echo:again", {}, rejoin=True),
            ]


async def test_reconnect_and_connect_skip_the_backoff(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket, socket.lifecycle() as events:
            phoenix_server.reject_upgrades(503)
            phoenix_server.accepted_connections[0].drop()
            while not isinstance(await events.receive(), ReconnectScheduled):
                pass
            phoenix_server.reject_upgrades(None)
            started = trio.current_time()
            await socket.connect()
            assert trio.current_time() == started
            phoenix_server.reject_upgrades(503)
            phoenix_server.accepted_connections[1].drop()
            while not isinstance(await events.receive(), ReconnectScheduled):
                pass
            phoenix_server.reject_upgrades(None)
            started = trio.current_time()
            await socket.reconnect()
            assert trio.current_time() == started
            assert len(phoenix_server.accepted_connections) == 3


async def test_disconnect_and_reconnect_abandon_an_attempt_in_flight(
    autojump_clock: trio.abc.Clock,
) -> None:
    """An attempt stuck on a dead route (here: a listener that never answers the upgrade) is
    dropped at once, and started afresh by ``reconnect()``."""
    accepted: list[float] = []
    first = trio.Event()

    async def never_answer(stream: trio.SocketStream) -> None:
        accepted.append(trio.current_time())
        first.set()
        await trio.sleep_forever()

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1")
            )
            port = listener.socket.getsockname()[1]
            url = f"ws://127.0.0.1:{port}/socket"
            async with open_socket(url, wait_connected=False, connect_timeout=None) as socket:
                await first.wait()
                assert state(socket) is SocketState.CONNECTING
                asked_at = trio.current_time()
                with trio.move_on_after(5):
                    await socket.reconnect()
                assert accepted[1:] == [asked_at]  # at once
                assert state(socket) is SocketState.CONNECTING
                await socket.disconnect()
                assert state(socket) is SocketState.DISCONNECTED
                await trio.sleep(30)
                assert len(accepted) == 2
            nursery.cancel_scope.cancel()
