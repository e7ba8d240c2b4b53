"""Tutorial step 1: connect and join the room."""

import trio

from trio_phoenix import open_socket
from trio_phoenix.demo import open_chat_demo


async def main() -> None:
    # The embedded chat server: a Phoenix-protocol endpoint with the room of the Phoenix
    # channels guide, and two simulated users, alice and bob. For your own app, use its
    # socket URL instead, e.g. "ws://localhost:4000/socket".
    async with (
        open_chat_demo() as demo,
        open_socket(demo.url, params={"user": "ann"}) as socket,
    ):
        channel = socket.channel("room:lobby", {"user": "ann"})
        reply = await channel.join()
        print("joined:", reply)  # joined: {'topic': 'room:lobby', 'user': 'ann'}
        await channel.leave()


trio.run(main)
