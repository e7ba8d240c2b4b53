"""Reconnect and token refresh: the server drops the connection, the client comes back.

Phoenix apps usually authenticate the socket with a short-lived token in the connect params
(``params: {token}`` in phoenix.js, checked by ``connect/3`` with ``Phoenix.Token.verify``).
When ``params`` is a callable (sync or async), trio_phoenix calls it on *every* connect, so
each reconnect presents a fresh token; ``auth_token`` (Phoenix's ``Sec-WebSocket-Protocol``
bearer token) may be a callable too.

Here the embedded server's connect hook accepts only the newest token; the server then drops
the connection (as when it logs the user out of old tokens, or on a redeploy): the socket
reconnects with a new token, the channel rejoins, and the push made meanwhile is delivered.
Run it: ``python examples/reconnect.py``.
"""

from __future__ import annotations

from typing import Any

import trio

from trio_phoenix import ChannelJoined, Connected, Disconnected, open_socket
from trio_phoenix.testing import ConnectInfo, Reject, demo_channels, open_test_server


class TokenService:
    """Stands in for your auth endpoint: hands out tokens; only the newest one is valid."""

    def __init__(self) -> None:
        self.issued = 0

    @property
    def valid(self) -> str:
        return f"token-{self.issued}"

    async def fetch(self) -> str:
        await trio.sleep(0.01)  # a request to your backend, say
        self.issued += 1
        print(f"client: fetched {self.valid}")
        return self.valid


async def main() -> None:
    """Connect, get disconnected by the server, reconnect with a fresh token."""
    tokens = TokenService()

    def connect(params: dict[str, Any], info: ConnectInfo) -> str:
        """The server's connect/3: check the token, name the socket after the user."""
        if params.get("token") != tokens.valid:
            print(f"server: refused {params.get('token')}")
            raise Reject(403)
        print(f"server: accepted {params['token']}")
        return f"user_socket:{params['user']}"  # the socket id, like Phoenix's id/1

    async def fresh_params() -> dict[str, str]:
        """Called on every connect: the first one and every reconnect."""
        return {"user": "ann", "token": await tokens.fetch()}

    async with (
        open_test_server(demo_channels(), connect=connect) as server,
        open_socket(server.url, params=fresh_params) as socket,
        socket.lifecycle() as events,
        socket.channel("room:lobby", {"user": "ann"}) as channel,
        channel.subscribe("new_msg") as messages,
    ):
        print(f"client: joined {channel.topic}")

        print("server: disconnecting user_socket:ann")
        server.disconnect("user_socket:ann")  # closes the connection with 1001
        async with trio.open_nursery() as nursery:
            async for event in events:
                if isinstance(event, Disconnected):
                    print(f"client: disconnected (code {event.code})")
                    # Pushed while disconnected: it waits in a buffer and goes out, with its
                    # timeout still running, once the channel has rejoined.
                    nursery.start_soon(channel.push, "new_msg", {"body": "sent while offline"})
                elif isinstance(event, Connected):
                    print(f"client: connected (connection #{event.connects})")
                elif isinstance(event, ChannelJoined) and event.rejoin:
                    print(f"client: rejoined {event.topic}")
                    break
        message = await messages.receive()
        print(f"client: the room got {message.payload['body']!r}")
        print(f"server: the connection's token is {server.connections[-1].params['token']}")


if __name__ == "__main__":
    trio.run(main)
