"""Tutorial step 3: receive the room's messages through a bounded memory channel."""

import trio

from trio_phoenix import open_socket
from trio_phoenix.demo import open_chat_demo


async def main() -> None:
    async with (
        open_chat_demo() as demo,
        open_socket(demo.url, params={"user": "ann"}) as socket,
        socket.channel("room:lobby", {"user": "ann"}) as channel,
        channel.subscribe("new_msg") as messages,  # subscribe before pushing
    ):
        await channel.push("new_msg", {"body": "hello everyone"})
        async for message in messages:
            print(f"<{message.payload['user']}> {message.payload['body']}")
            if message.payload["user"] == "alice":  # alice answers greetings
                break


trio.run(main)
