"""A terminal chat on a Phoenix channel: the example trio_phoenix was born from.

The client connects, joins ``room:lobby``, prints the room's ``new_msg`` broadcasts and who
comes and goes, pushes every line you type as ``new_msg`` (``/who`` lists who is online)
and leaves on ``/quit``. Reconnecting and rejoining after a dropped connection is the socket's
job: the client only reports it.

Run it::

    python examples/chat.py                  # the scripted demo, on an embedded server (make demo)
    python examples/chat.py --interactive    # type yourself, on the embedded server
    python examples/chat.py --url ws://localhost:4000/socket --name ann   # a real Phoenix app

Without ``--url`` no Phoenix is needed: ``trio_phoenix.testing`` runs a Phoenix-protocol server
in-process, with the chat room of the Phoenix channels guide (``new_msg`` broadcasts, presence)
and two simulated users, alice and bob. With ``--url`` the lines come from stdin, typed or piped.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import AsyncIterable, AsyncIterator

import trio

from trio_phoenix import (
    Channel,
    ChannelJoined,
    Connected,
    Disconnected,
    LifecycleEvent,
    Message,
    PhoenixError,
    PresenceChange,
    PresenceJoin,
    PresenceLeave,
    PresenceSynced,
    Subscription,
    open_socket,
)
from trio_phoenix.testing import open_chat_demo

ROOM = "room:lobby"


async def chat(url: str, name: str, lines: AsyncIterable[str]) -> None:
    """Chat in ``room:lobby`` as ``name``: push each line, print what happens; leave when the
    lines end."""
    async with open_socket(url, params={"user": name}) as socket:
        print(f"* connected to {url}")
        channel = socket.channel(ROOM, {"user": name})
        # Subscribe before joining: nothing the server sends right after the join is missed.
        async with (
            socket.lifecycle() as events,
            channel.subscribe("new_msg") as messages,
            channel.presence().changes() as changes,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(show_connection, events)
            nursery.start_soon(show_messages, messages)
            nursery.start_soon(show_presence, changes, channel, name)
            async with channel:  # joins here; leaves at the end of the block
                print(f"* joined {ROOM}: {channel.join_response}")
                async for line in lines:
                    if line == "/who":
                        print("* online:", ", ".join(channel.presence().list(lambda key, _: key)))
                    elif line:
                        try:
                            await channel.push("new_msg", {"body": line})  # the ok reply
                        except PhoenixError as exc:  # error reply, timeout, reply lost...
                            print(f"! not sent: {exc}")
            print(f"* left {ROOM}")
            nursery.cancel_scope.cancel()  # stop the printers


async def show_messages(messages: Subscription[Message]) -> None:
    """Print the room's chat messages (everyone's, ours included)."""
    async for message in messages:
        print(f"<{message.payload.get('user', '?')}> {message.payload.get('body')}")


async def show_presence(changes: Subscription[PresenceChange], channel: Channel, me: str) -> None:
    """Print who is online once the first presence state is in, then who comes and goes."""
    synced = False
    async for change in changes:
        if isinstance(change, PresenceSynced):
            if not synced:
                print("* online:", ", ".join(channel.presence().list(lambda key, _: key)))
            synced = True
        elif not synced or change.key == me:
            continue
        elif isinstance(change, PresenceJoin) and change.current is None:
            print(f"* {change.key} joined")
        elif isinstance(change, PresenceLeave) and not change.current["metas"]:
            print(f"* {change.key} left")


async def show_connection(events: Subscription[LifecycleEvent]) -> None:
    """Report the socket's ups and downs; the socket reconnects and rejoins by itself."""
    async for event in events:
        if isinstance(event, Disconnected):
            print(f"* connection closed (code {event.code}); reconnecting")
        elif isinstance(event, Connected) and event.connects > 1:
            print("* reconnected")
        elif isinstance(event, ChannelJoined) and event.rejoin:
            print(f"* rejoined {event.topic}")


async def typed_lines() -> AsyncIterator[str]:
    """Lines from stdin until ``/quit`` or the end of input (read in a thread, so that Trio
    keeps running meanwhile)."""
    while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
        if line.strip() == "/quit":
            return
        yield line.rstrip("\r\n")


async def main(args: argparse.Namespace) -> None:
    """Chat on ``--url``, or on the embedded demo server (scripted unless --interactive)."""
    if args.url:
        await chat(args.url, args.name, typed_lines())
        return
    async with open_chat_demo() as demo:  # the server, plus alice and bob in the room
        print(f"# an embedded Phoenix-protocol server on {demo.url}, with alice and bob in {ROOM}")
        if args.interactive:
            print("# type a message and Enter; /who lists who is online, /quit leaves")
            await chat(demo.url, args.name, typed_lines())
        else:
            # The script types for us, and makes the server drop our connection half-way.
            await chat(demo.url, args.name, demo.script(args.name, pace=args.pace))
    print("# done: that was trio_phoenix on an in-process server (no Phoenix needed)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Phoenix socket URL, e.g. ws://localhost:4000/socket")
    parser.add_argument("--name", default="you", help="your user name (default: you)")
    parser.add_argument(
        "--interactive", action="store_true", help="type the lines yourself (embedded server)"
    )
    parser.add_argument(
        "--pace", type=float, default=0.4, help="seconds between scripted lines (default: 0.4)"
    )
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # show each line at once, even in a pipe
    try:
        trio.run(main, parser.parse_args())
    except KeyboardInterrupt:
        sys.exit(130)
