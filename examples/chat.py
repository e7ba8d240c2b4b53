"""A terminal chat on a Phoenix channel: the example trio_phoenix was born from.

The client connects, joins ``room:lobby``, prints the room's ``new_msg`` broadcasts and who
comes and goes, pushes every line you type as ``new_msg`` (``/who`` lists who is online)
and leaves on ``/quit``. Reconnecting and rejoining after a dropped connection is the socket's
job: the client only reports it.

Run it::

    python examples/chat.py                  # the scripted demo, on an embedded server (make demo)
    python examples/chat.py --interactive    # type yourself, on the embedded server
    python examples/chat.py --url ws://localhost:4000/socket --name ann   # a real Phoenix app

Without ``--url`` no Phoenix is needed: ``trio_phoenix.demo`` runs a Phoenix-protocol server
in-process, with the chat room of the Phoenix channels guide (``new_msg`` broadcasts, presence)
and two simulated users, alice and bob. With ``--url`` the lines come from stdin, typed or piped.

The client itself is ``trio_phoenix.demo.chat`` (about 70 lines; ``trio-phoenix demo`` runs the
same one): this script gives it lines, typed or scripted.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import AsyncIterator

import trio

from trio_phoenix.demo import chat, open_chat_demo

ROOM = "room:lobby"


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
