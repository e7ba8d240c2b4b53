"""The quickstart: one socket, one channel, a push and a broadcast, on the embedded server."""

import trio

from trio_phoenix import open_socket
from trio_phoenix.testing import demo_channels, open_test_server


async def main() -> None:
    async with (
        open_test_server(demo_channels()) as server,  # or use your Phoenix app's URL
        open_socket(server.url) as socket,
        socket.channel("room:lobby", {"user": "ann"}) as channel,
        channel.subscribe("new_msg") as messages,
    ):
        await channel.push("new_msg", {"body": "hi"})
        message = await messages.receive()
        print(message.payload)  # {'body': 'hi', 'user': 'ann'}


trio.run(main)
