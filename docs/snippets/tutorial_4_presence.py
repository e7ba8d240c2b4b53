"""Tutorial step 4: who is online, and who comes and goes."""

import trio

from trio_phoenix import PresenceJoin, PresenceLeave, open_socket
from trio_phoenix.demo import open_chat_demo


async def visit(url: str, user: str) -> None:
    """Another client: join the room, then leave it."""
    async with open_socket(url) as socket, socket.channel("room:lobby", {"user": user}):
        pass


async def main() -> None:
    async with (
        open_chat_demo() as demo,
        open_socket(demo.url, params={"user": "ann"}) as socket,
    ):
        channel = socket.channel("room:lobby", {"user": "ann"})
        presence = channel.presence()  # before joining: the state comes right after the join
        async with channel, presence.changes() as changes:
            await presence.wait_synced()
            print("online:", sorted(presence.list(lambda key, _: key)))
            await visit(demo.url, "dee")
            async for change in changes:
                if isinstance(change, PresenceJoin) and change.key == "dee":
                    print("dee joined")
                elif isinstance(change, PresenceLeave) and change.key == "dee":
                    print("dee left")
                    break


trio.run(main)
