"""Every public async call of the client is a checkpoint, as in trio.

``trio.testing.assert_checkpoints`` passes when the call raises, or when it executed at least
one schedule point and one cancel point. The fast paths matter most: a call that has nothing
to wait for (already connected, already joined, already closed) must still let other tasks run
and honour a cancellation, or a loop around it starves everything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LIMIT
from trio_phoenix import (
    Channel,
    LocalProtocolError,
    ReconnectScheduled,
    Socket,
    SocketState,
    connect_socket,
    open_socket,
)
from trio_phoenix.testing import TestServer


async def checkpoints(call: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``call()`` and assert that it was a checkpoint (or raised)."""
    with trio.testing.assert_checkpoints():
        return await call()


async def test_socket_calls_checkpoint_on_their_fast_paths(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            assert socket.state is SocketState.CONNECTED
            await checkpoints(socket.wait_connected)
            assert isinstance(await checkpoints(socket.ping), float)
            await checkpoints(socket.aclose)
            await checkpoints(socket.aclose)  # again: already closed
            with pytest.raises(trio.TooSlowError):  # (SocketClosed is not one)
                with trio.fail_after(0):
                    await checkpoints(socket.wait_connected)


async def test_connection_control_checkpoints_on_its_fast_paths(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            await checkpoints(socket.connect)  # already connected
            await checkpoints(socket.reconnect)
            await checkpoints(socket.disconnect)
            await checkpoints(socket.disconnect)  # again: already disconnected
            await checkpoints(socket.reconnect)  # does nothing after disconnect()
            await checkpoints(socket.connect)
            assert socket.state is SocketState.CONNECTED


async def test_channel_calls_checkpoint_on_their_fast_paths(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:checkpoints", {"n": 1})
            never_joined = socket.channel("echo:never")
            await checkpoints(never_joined.leave)  # nothing to leave
            assert await checkpoints(channel.join) == {"n": 1}
            await checkpoints(channel.wait_joined)
            assert await checkpoints(lambda: channel.push("echo", {"x": 1})) == {"x": 1}
            presence = channel.presence()
            with trio.move_on_after(0.1):
                await checkpoints(presence.wait_synced)  # echo:* has no presence
            await checkpoints(channel.leave)
            await checkpoints(channel.leave)  # already closed
            with pytest.raises(LocalProtocolError):
                await checkpoints(channel.join)  # raised: also fine


async def test_async_with_a_channel_checkpoints_on_enter_and_exit(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("room:lobby", {"user": "cp"})
            entered = await checkpoints(channel.__aenter__)
            assert entered is channel
            await checkpoints(channel.presence().wait_synced)
            await checkpoints(lambda: channel.__aexit__(None, None, None))


async def test_subscription_calls_checkpoint_with_a_message_buffered(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:sub") as channel,
            channel.subscribe("hello") as messages,
        ):
            await channel.push("push", {"event": "hello", "payload": {"n": 1}})
            await channel.push("echo", {})  # the push arrived before this reply
            message = await checkpoints(messages.receive)
            assert message.payload == {"n": 1}
            await channel.push("push", {"event": "hello", "payload": {"n": 2}})
            await channel.push("echo", {})
            batch = await checkpoints(messages.receive_batch)
            assert [m.payload for m in batch] == [{"n": 2}]
            await checkpoints(messages.aclose)


async def test_aclose_of_a_reconnecting_socket_checkpoints(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    """Nothing to leave and no connection to close: ``aclose`` had no checkpoint at all."""
    url = f"ws://127.0.0.1:{closed_port}/socket"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, url, wait_connected=False)
            async with socket.lifecycle() as events:
                async for event in events:
                    if isinstance(event, ReconnectScheduled):
                        break
            assert socket.statistics().state is SocketState.WAITING
            await checkpoints(socket.aclose)
            assert socket.state is SocketState.CLOSED


async def test_aclose_closes_even_when_cancelled(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    url = f"ws://127.0.0.1:{closed_port}/socket"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, url, wait_connected=False)
            with trio.CancelScope() as scope:
                scope.cancel()
                await socket.aclose()
            assert scope.cancelled_caught
            assert socket.state is SocketState.CLOSED


@pytest.mark.parametrize("wait_connected", [True, False])
async def test_opening_a_socket_checkpoints(
    phoenix_server: TestServer, wait_connected: bool, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket: Socket = await checkpoints(
                lambda: connect_socket(nursery, phoenix_server.url, wait_connected=wait_connected)
            )
            await socket.aclose()
        opened = open_socket(phoenix_server.url, wait_connected=wait_connected)
        entered = await checkpoints(opened.__aenter__)
        assert isinstance(entered, Socket)
        await checkpoints(lambda: opened.__aexit__(None, None, None))


def test_every_public_async_method_is_covered() -> None:
    """A new public coroutine method must get a checkpoint test here."""
    import inspect

    import trio_phoenix

    covered = {
        "Socket.wait_connected",
        "Socket.ping",
        "Socket.aclose",
        "Socket.disconnect",
        "Socket.connect",
        "Socket.reconnect",
        "Channel.join",
        "Channel.leave",
        "Channel.wait_joined",
        "Channel.push",
        "Channel.__aenter__",
        "Channel.__aexit__",
        "Presence.wait_synced",
        "Subscription.receive",
        "Subscription.receive_batch",
        "Subscription.aclose",
    }
    found: set[str] = set()
    for cls in (Socket, Channel, trio_phoenix.Presence, trio_phoenix.Subscription):
        for name, member in vars(cls).items():
            if inspect.iscoroutinefunction(member) and (
                not name.startswith("_") or name in ("__aenter__", "__aexit__")
            ):
                found.add(f"{cls.__name__}.{name}")
    assert found == covered
    assert inspect.iscoroutinefunction(connect_socket)
