"""Testing your own code against trio_phoenix's in-process Phoenix server, with pytest.

Installing trio_phoenix registers two pytest fixtures (no conftest.py needed):

* ``phoenix_server``: a running `TestServer` with the demo channels (``room:*`` chat with
  presence, ``echo:*``), fresh for each test;
* ``phoenix_server_factory``: starts servers with *your* channel handlers and options, e.g. a
  connect hook.

They are async fixtures: run the tests with pytest-trio (``trio_mode = true`` in your pytest
configuration, or mark the tests as below). Run this file: ``pytest examples/test_my_app.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_phoenix import ConnectError, PushError, open_socket
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

pytestmark = pytest.mark.trio  # not needed with trio_mode = true


# -- the application code under test (in real life, imported from your package) --------------


async def announce(url: str, user: str, text: str) -> None:
    """Post ``text`` to room:lobby as ``user``."""
    async with (
        open_socket(url, params={"user": user}) as socket,
        socket.channel("room:lobby", {"user": user}) as channel,
    ):
        await channel.push("new_msg", {"body": text})


async def order_pizza(url: str, token: str, size: str) -> Any:
    """Order a pizza through the shop's channel; returns the order the server confirms."""
    async with (
        open_socket(url, params={"token": token}) as socket,
        socket.channel("shop:pizza") as channel,
    ):
        return await channel.push("order", {"size": size})


# -- the tests ------------------------------------------------------------------------------


async def test_announce_is_broadcast(phoenix_server: TestServer) -> None:
    """The demo room broadcasts what ``announce`` pushes, with the user's name."""
    async with (
        open_socket(phoenix_server.url) as socket,
        socket.channel("room:lobby", {"user": "observer"}) as channel,
        channel.subscribe("new_msg") as messages,
    ):
        await announce(phoenix_server.url, "ann", "the build is green")
        with trio.fail_after(5):
            message = await messages.receive()
    assert message.payload == {"body": "the build is green", "user": "ann"}


class PizzaShop(ChannelHandler):
    """A stand-in for the Phoenix channel your code talks to."""

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        """Confirm orders of known sizes; refuse the others."""
        await trio.lowlevel.checkpoint()
        if event == "order" and payload.get("size") in ("small", "large"):
            return Reply.ok({"order": 1, "size": payload["size"]})
        return Reply.error({"reason": "no such pizza"})


def check_token(params: dict[str, Any], info: ConnectInfo) -> str:
    """The server's connect/3: only "secret" gets in."""
    if params.get("token") != "secret":
        raise Reject(403)
    return "user_socket:1"


async def test_order_pizza(phoenix_server_factory: PhoenixServerFactory) -> None:
    """A confirmed order comes back as the push's reply."""
    server = await phoenix_server_factory({"shop:*": PizzaShop}, connect=check_token)
    assert await order_pizza(server.url, "secret", "large") == {"order": 1, "size": "large"}


async def test_unknown_pizza_is_refused(phoenix_server_factory: PhoenixServerFactory) -> None:
    """An error reply raises PushError carrying the server's response."""
    server = await phoenix_server_factory({"shop:*": PizzaShop}, connect=check_token)
    with pytest.raises(PushError) as caught:
        await order_pizza(server.url, "secret", "medium")
    assert caught.value.response == {"reason": "no such pizza"}


async def test_bad_token_is_rejected(phoenix_server_factory: PhoenixServerFactory) -> None:
    """A refused connect is a ConnectError with the HTTP status, raised at once."""
    server = await phoenix_server_factory({"shop:*": PizzaShop}, connect=check_token)
    with pytest.raises(ConnectError) as caught:
        await order_pizza(server.url, "guess", "small")
    assert caught.value.status == 403
