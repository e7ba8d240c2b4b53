"""How-to: slow consumers and overflow policies."""

import trio

from trio_phoenix import SubscriptionOverflow, open_socket
from trio_phoenix.testing import demo_channels, open_test_server


async def main() -> None:
    async with (
        open_test_server(demo_channels()) as server,
        open_socket(server.url) as socket,
        socket.channel("echo:ticks") as channel,
        # "raise" (the default): drops are reported where they happened in the stream.
        channel.subscribe("tick", max_buffer=10) as exact,
        # "drop_oldest": keep the newest messages, e.g. for a dashboard of current values.
        channel.subscribe("tick", max_buffer=10, overflow="drop_oldest") as latest,
    ):
        for n in range(25):  # 25 broadcasts while nobody reads
            await channel.push("broadcast", {"event": "tick", "payload": {"n": n}})

        received = [(await exact.receive()).payload["n"] for _ in range(10)]
        try:
            await exact.receive()
        except SubscriptionOverflow as gap:
            print(received, "then a gap of", gap.dropped)  # [0, ..., 9] then a gap of 15
        print([latest.receive_nowait().payload["n"] for _ in range(10)])  # [15, ..., 24]
        print(latest.statistics().dropped, channel.statistics().messages_dropped)  # 15 30


trio.run(main)
