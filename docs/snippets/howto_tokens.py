"""How-to: tokens that expire. ``params`` (or ``auth_token``) may be a callable, sync or async,
evaluated on every connect, so each reconnect presents a fresh token."""

import itertools
from typing import Any

import trio

from trio_phoenix import ChannelJoined, open_socket
from trio_phoenix.testing import ConnectInfo, Reject, demo_channels, open_test_server

valid_tokens = {"token-1"}
issued = itertools.count(2)


async def fresh_token() -> str:
    """Stands in for a call to your auth service: a new token, valid from now on."""
    await trio.lowlevel.checkpoint()
    token = f"token-{next(issued)}"
    valid_tokens.add(token)
    return token


def connect(params: dict[str, Any], info: ConnectInfo) -> str:
    """The server's ``connect/3``: only tokens that are still valid get in."""
    if info.auth_token not in valid_tokens:
        raise Reject(403)
    return "user_socket:ann"


async def main() -> None:
    async with open_test_server(demo_channels(), connect=connect, auth_token=True) as server:
        first = True

        async def token() -> str:
            nonlocal first
            if first:  # the token the program started with
                first = False
                return "token-1"
            return await fresh_token()

        async with (
            open_socket(server.url, auth_token=token) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:t") as channel,
        ):
            valid_tokens.discard("token-1")  # it expires...
            server.disconnect("user_socket:ann")  # ...and the connection drops
            async for event in events:
                if isinstance(event, ChannelJoined) and event.rejoin:
                    break
            print(await channel.push("echo", {"still": "here"}))  # {'still': 'here'}


trio.run(main)
