"""How-to: test code that talks to Phoenix, with the fixtures and fault injection.

Run with pytest and pytest-trio (``pip install 'trio-phoenix[pytest]'``); the fixtures come
with trio_phoenix, no conftest.py needed.
"""

from typing import Any

import pytest
import trio
import trio.testing

from trio_phoenix import ReplyLost, open_socket
from trio_phoenix.testing import (
    ChannelHandler,
    ChannelSocket,
    ConnectInfo,
    HandleInResult,
    PhoenixServerFactory,
    Reject,
    Reply,
    TestServer,
)

pytestmark = pytest.mark.trio  # or trio_mode = true in your pytest configuration


# -- the code under test (in real life, imported from your package) -------------------------


async def place_order(url: str, item: str) -> int:
    """Order ``item`` over the shop channel; return the order number."""
    async with (
        open_socket(url, params={"token": "secret"}) as socket,
        socket.channel("shop:main") as channel,
    ):
        response = await channel.push("order", {"item": item})
        return int(response["order"])


# -- a stand-in for the Phoenix channel and socket it talks to ------------------------------


class Shop(ChannelHandler):
    """Like ``ShopChannel``: ``order`` replies with a number."""

    orders = 0

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        await trio.lowlevel.checkpoint()
        Shop.orders += 1
        return Reply.ok({"order": Shop.orders})


def connect(params: dict[str, Any], info: ConnectInfo) -> str:
    """Like ``UserSocket.connect/3``: only the right token gets in."""
    if params.get("token") != "secret":
        raise Reject(403)
    return "user_socket:1"


# -- the tests ----------------------------------------------------------------------------------


async def test_echo_on_the_demo_server(phoenix_server: TestServer) -> None:
    async with open_socket(phoenix_server.url) as socket, socket.channel("echo:t") as channel:
        assert await channel.push("echo", {"x": 1}) == {"x": 1}


async def test_place_order(phoenix_server_factory: PhoenixServerFactory) -> None:
    server = await phoenix_server_factory({"shop:*": Shop}, connect=connect)
    assert await place_order(server.url, "tea") >= 1


async def test_a_dropped_connection_loses_the_reply(
    phoenix_server_factory: PhoenixServerFactory,
) -> None:
    server = await phoenix_server_factory({"shop:*": Shop}, connect=connect)
    async with (
        open_socket(server.url, params={"token": "secret"}) as socket,
        socket.channel("shop:main") as channel,
    ):
        server.connections[-1].stall()  # the server stops reading: a half-open connection
        async with trio.open_nursery() as nursery:

            async def order() -> None:
                with pytest.raises(ReplyLost):  # sent, but the connection died before a reply
                    await channel.push("order", {"item": "tea"})

            nursery.start_soon(order)
            await trio.testing.wait_all_tasks_blocked()  # the push is on the wire
            server.connections[-1].drop()  # TCP cut, no close frame
