"""The socket URL as a sync or async callable, evaluated and validated on every connect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LIMIT
from trio_phoenix import InvalidURL, Socket, SocketState, connect_socket, open_socket
from trio_phoenix.testing import PhoenixServerFactory, TestServer, demo_channels


def sync_source(urls: list[str]) -> Callable[[], str]:
    return lambda: urls[0]


def async_source(urls: list[str]) -> Callable[[], Awaitable[str]]:
    async def url() -> str:
        await trio.lowlevel.checkpoint()
        return urls[0]

    return url


@pytest.mark.parametrize("make", [sync_source, async_source], ids=["sync", "async"])
async def test_a_reconnect_goes_where_the_callable_says(
    phoenix_server_factory: PhoenixServerFactory,
    make: Callable[[list[str]], Any],
    autojump_clock: trio.abc.Clock,
) -> None:
    first = await phoenix_server_factory(demo_channels())
    second = await phoenix_server_factory(demo_channels())
    urls = [first.url]
    with trio.fail_after(LIMIT):
        async with open_socket(make(urls)) as socket:
            channel = socket.channel("echo:moving")
            await channel.join()
            assert socket.url == first.url
            urls[0] = second.url
            await socket.reconnect()
            await channel.wait_joined()
            assert socket.url == second.url
            assert len(first.accepted_connections) == 1
            assert len(second.accepted_connections) == 1
            assert await channel.push("echo", {"n": 1}) == {"n": 1}
            # A dropped connection also asks again.
            urls[0] = first.url
            second.accepted_connections[0].drop()
            await first.wait_connections(2)
            await socket.wait_connected()


async def test_the_repr_names_the_callable_and_the_url(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    release = trio.Event()

    async def pick_host() -> str:
        await release.wait()
        return phoenix_server.url + "?token=s3cret"

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, pick_host, wait_connected=False)
            await trio.testing.wait_all_tasks_blocked()
            assert repr(socket) == (
                "<trio_phoenix.Socket url from test_the_repr_names_the_callable_and_the_url"
                ".<locals>.pick_host() connecting>"
            )
            assert socket.url == ""
            release.set()
            await socket.wait_connected()
            assert "s3cret" not in repr(socket)
            assert repr(socket).startswith(f"<trio_phoenix.Socket '{phoenix_server.url}?token=")
            assert repr(socket).endswith(".<locals>.pick_host() connected>")
            await socket.aclose()


async def test_an_invalid_url_from_the_callable_raises_on_the_first_connect(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(LIMIT):
        with pytest.raises(InvalidURL):
            async with open_socket(lambda: "http//nowhere"):
                pytest.fail("never connected")
        with pytest.raises(InvalidURL):
            async with open_socket(lambda: 42):  # type: ignore[arg-type,return-value]
                pytest.fail("never connected")


async def test_an_invalid_url_on_a_reconnect_ends_the_socket(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    urls = [phoenix_server.url]
    holder: list[Socket] = []

    async def move_to_a_bad_url() -> None:
        async with open_socket(lambda: urls[0]) as socket:
            holder.append(socket)
            urls[0] = "ftp://elsewhere/socket"
            await socket.reconnect()

    with trio.fail_after(LIMIT):
        with pytest.raises(InvalidURL):
            await move_to_a_bad_url()
        assert holder[0].state is SocketState.CLOSED


def test_a_url_that_is_neither_a_string_nor_a_callable_is_a_type_error() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=r"url must be a str .* or a callable"):
            async with open_socket(42):  # type: ignore[arg-type]
                pass

    trio.run(main)
