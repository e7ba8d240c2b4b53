"""Tutorial step 2: push an event and handle its reply."""

import trio

from trio_phoenix import PushError, open_socket
from trio_phoenix.demo import open_chat_demo


async def main() -> None:
    async with (
        open_chat_demo() as demo,
        open_socket(demo.url, params={"user": "ann"}) as socket,
        socket.channel("room:lobby", {"user": "ann"}) as channel,  # joins, and leaves at the end
    ):
        print(await channel.push("new_msg", {"body": "hello"}))  # {}: the ok reply's response
        try:
            await channel.push("no_such_event", {})
        except PushError as exc:
            print(exc.status, exc.response)  # error {'reason': 'unknown event'}
        with trio.move_on_after(1):  # every call honours the cancel scopes around it
            await channel.push("new_msg", {"body": "sent, or cancelled"})


trio.run(main)
