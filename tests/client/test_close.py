"""``Socket.aclose()``: when it returns, no task of the socket runs; the tasks end on their own
(the socket's cancel scope is only cancelled when ``close_timeout`` passes first), on every
transport and in every state of the socket.

Real client, real in-process server, real loopback connections, on ``autojump_clock``.
"""

from __future__ import annotations

import pytest
import trio

from tests.conftest import client_tasks
from tests.helpers import LIMIT, wire
from trio_phoenix import (
    ChannelState,
    ReconnectScheduled,
    Socket,
    SocketState,
    connect_socket,
)
from trio_phoenix._transports import TransportName
from trio_phoenix.testing import TestServer, demo_channels, open_test_server


def ended_on_their_own(socket: Socket) -> bool:
    scope = socket._cancel_scope
    assert scope is not None
    return not scope.cancel_called


@pytest.mark.parametrize("transport", ["websocket", "trio-websocket", "longpoll"])
async def test_when_aclose_returns_no_task_of_the_socket_runs(
    transport: TransportName, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_test_server(demo_channels(), longpoll=True) as server,
            trio.open_nursery() as nursery,
        ):
            socket = await connect_socket(nursery, server.url, transport=transport)
            channel = socket.channel("echo:t")
            await channel.join()
            assert client_tasks() != []
            started = trio.current_time()
            await socket.aclose()
            # The closing handshake completed: aclose() did not wait for close_timeout (5 s).
            assert trio.current_time() - started < 1.0
            assert client_tasks() == []  # before the caller's nursery ends
            assert channel.state is ChannelState.CLOSED
            if transport != "trio-websocket":  # (the library's reader task is cancelled)
                assert ended_on_their_own(socket)
            connection = server.accepted_connections[0]
            await connection.wait_closed()
            assert wire(server)[-1] == ("1", "2", "echo:t", "phx_leave", {})


async def test_aclose_of_a_socket_waiting_to_reconnect_ends_its_tasks(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            url = f"ws://127.0.0.1:{closed_port}/socket"
            socket = await connect_socket(nursery, url, wait_connected=False)
            async with socket.lifecycle() as events:
                async for event in events:
                    if isinstance(event, ReconnectScheduled):
                        break
            await socket.aclose()
            assert client_tasks() == []
            assert ended_on_their_own(socket)


async def test_aclose_drops_a_connect_attempt_in_flight(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    async def never() -> str:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, never, wait_connected=False)
            await trio.testing.wait_all_tasks_blocked()
            assert socket.state is SocketState.CONNECTING
            start = trio.current_time()
            await socket.aclose()
            assert trio.current_time() == start
            assert client_tasks() == []
            assert ended_on_their_own(socket)


async def test_past_close_timeout_the_tasks_are_cancelled_and_gone_when_aclose_returns(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, phoenix_server.url, close_timeout=2)
            await socket.channel("echo:dead").join()
            phoenix_server.accepted_connections[0].stall()
            start = trio.current_time()
            await socket.aclose()
            assert trio.current_time() - start == pytest.approx(2)
            assert client_tasks() == []
            assert socket.state is SocketState.CLOSED


async def test_aclose_from_the_sockets_own_task_does_not_wait_for_itself(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    """A url callable (run by the socket's supervisor) that closes the socket."""
    sockets: list[Socket] = []
    closed = trio.Event()

    async def url() -> str:
        if sockets:
            await sockets[0].aclose()  # raises Cancelled: the socket's tasks are stopping
            closed.set()
        return f"ws://127.0.0.1:{closed_port}/socket"

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            sockets.append(await connect_socket(nursery, url, wait_connected=False))
            start = trio.current_time()
        # The nursery ended with the socket's tasks, without waiting close_timeout (5 s) for
        # the supervisor to end while it runs aclose() itself.
        assert trio.current_time() - start < 1
        assert sockets[0].state is SocketState.CLOSED
        assert not closed.is_set()


async def test_the_timer_task_ends_as_soon_as_the_close_begins(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """Once the core is closed the timer task returns at once, instead of sleeping on to a
    deadline left from before (here the join's timeout, 1 s after it was sent) while the
    closing handshake waits for a server that does not answer."""
    timer = "trio_phoenix._runtime.SocketRuntime._run_timers"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, phoenix_server.url, timeout=1, close_timeout=5)
            await socket.channel("echo:t").join()
            phoenix_server.accepted_connections[0].stall()
            assert timer in client_tasks()
            start = trio.current_time()
            nursery.start_soon(socket.aclose)
            await trio.testing.wait_all_tasks_blocked()
            assert trio.current_time() == start
            assert timer not in client_tasks()


async def test_concurrent_acloses_all_return_once_the_tasks_ended(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """The first call hands the close over and waits for the tasks; the others wait for it."""
    returned: list[float] = []

    async def close(socket: Socket) -> None:
        await socket.aclose()
        assert client_tasks() == []
        returned.append(trio.current_time())

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, phoenix_server.url)
            await socket.channel("echo:t").join()
            phoenix_server.accepted_connections[0].stall()  # the close takes close_timeout
            start = trio.current_time()
            async with trio.open_nursery() as closing:
                for _ in range(3):
                    closing.start_soon(close, socket)
        assert returned == [pytest.approx(start + 5)] * 3
        assert socket.state is SocketState.CLOSED
