"""How-to: run many sockets from one program (here 200; the benchmarks go to 10,000)."""

import random
from functools import partial

import trio

from trio_phoenix import connect_socket, jittered, phoenix_reconnect_after
from trio_phoenix.testing import demo_channels, open_test_server

SOCKETS = 200


async def main() -> None:
    async with open_test_server(demo_channels()) as server, trio.open_nursery() as nursery:
        # Jitter spreads the reconnects of a fleet, so a server restart is not a stampede.
        backoff = jittered(phoenix_reconnect_after, random.random)
        open_one = partial(connect_socket, nursery, server.url, reconnect_after=backoff)
        sockets = []
        limit = trio.CapacityLimiter(50)  # at most 50 handshakes at a time

        async def start(n: int) -> None:
            async with limit:
                socket = await open_one(params={"device": str(n)})
                channel = socket.channel(f"echo:device:{n}")
                await channel.join()
                sockets.append(socket)

        async with trio.open_nursery() as starting:
            for n in range(SOCKETS):
                starting.start_soon(start, n)
        print(len(sockets), "sockets joined")
        async with trio.open_nursery() as closing:  # close them concurrently
            for socket in sockets:
                closing.start_soon(socket.aclose)
        print("all closed")


trio.run(main)
