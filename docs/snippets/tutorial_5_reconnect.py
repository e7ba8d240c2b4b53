"""Tutorial step 5: the connection drops; the socket reconnects and the channel rejoins."""

import trio

from trio_phoenix import ChannelJoined, Disconnected, open_socket
from trio_phoenix.demo import open_chat_demo
from trio_phoenix.testing import demo_socket_id


async def main() -> None:
    async with (
        open_chat_demo() as demo,
        open_socket(demo.url, params={"user": "ann"}) as socket,
        socket.lifecycle() as events,
        socket.channel("room:lobby", {"user": "ann"}) as channel,
    ):
        demo.server.disconnect(demo_socket_id("ann"))  # the server drops ann's socket
        async for event in events:
            if isinstance(event, Disconnected):
                print("disconnected, code", event.code)
            elif isinstance(event, ChannelJoined) and event.rejoin:
                print("rejoined", event.topic)
                break
        print(await channel.push("new_msg", {"body": "back again"}))  # {}


trio.run(main)
