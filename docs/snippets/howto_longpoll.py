"""How-to: behind a network that blocks WebSockets. ``longpoll_fallback`` gives the WebSocket
that many seconds; if it fails or does not answer, the socket switches to LongPoll for good
and says so in its lifecycle stream."""

import trio

from trio_phoenix import TransportFallback, open_socket
from trio_phoenix.testing import demo_channels, open_test_server


async def main() -> None:
    async with open_test_server(demo_channels(), longpoll=True) as server:
        server.reject_upgrades(403)  # stands in for a proxy that refuses WebSocket upgrades
        async with (
            open_socket(server.url, longpoll_fallback=2.5, wait_connected=False) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:lobby") as channel,
        ):
            event = await events.receive()
            assert isinstance(event, TransportFallback)
            print("fell back to", event.transport, "because", event.error)
            print(await channel.push("echo", {"over": "http"}))

        # Or LongPoll alone, from the start:
        async with (
            open_socket(server.url, transport="longpoll") as socket,
            socket.channel("echo:lobby") as channel,
        ):
            print(await channel.push("echo", {"only": "longpoll"}))


if __name__ == "__main__":
    trio.run(main)
