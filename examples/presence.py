"""Presence: who is in a room, kept in sync as people join, change status and leave.

``channel.presence()`` is a live view of the channel's ``presence_state`` / ``presence_diff``
messages, synced exactly as phoenix.js does it (``presence.list()``, ``presence.state``,
``await presence.wait_synced()``); ``presence.changes()`` streams what changed.
Here a watcher follows ``room:lobby`` on the embedded test server while ann and bob, each on
their own socket, come and go. Run it: ``python examples/presence.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from trio_phoenix import (
    Presence,
    PresenceChange,
    PresenceJoin,
    PresenceLeave,
    PresenceSynced,
    Subscription,
    open_socket,
)
from trio_phoenix.testing import demo_channels, open_test_server


def who(presence: Presence) -> str:
    """Everyone present, as ``name`` or ``name (status)``, in phoenix.js order."""

    def describe(key: str, entry: dict[str, list[dict[str, str]]]) -> str:
        status = entry["metas"][-1].get("status")  # a key's newest meta is last
        return f"{key} ({status})" if status else key

    return ", ".join(presence.list(describe))


def describe(change: PresenceChange) -> str | None:
    """A line for a change worth telling, else ``None``.

    An update arrives as a join of the new meta (which carries ``phx_ref_prev``) and a leave
    of the old one; a key joins (or leaves) for real when it had (or has) no metas left.
    """
    if isinstance(change, PresenceJoin):
        if change.current is None:
            return f"+ {change.key} is online"
        meta = change.joined["metas"][-1]
        if "phx_ref_prev" in meta:
            return f"~ {change.key} is now {meta.get('status')}"
    elif isinstance(change, PresenceLeave) and not change.current["metas"]:
        return f"- {change.key} went offline"
    return None


async def until(
    changes: Subscription[PresenceChange], expected: Callable[[PresenceChange], bool]
) -> None:
    """Print the changes as they come, until the ``expected`` one."""
    async for change in changes:
        if line := describe(change):
            print(f"  {line}")
        if expected(change):
            return


async def main() -> None:
    """Watch room:lobby while ann and bob come, change status and go."""
    async with (
        open_test_server(demo_channels()) as server,  # "room:*" tracks who joins
        open_socket(server.url) as watcher_socket,
        open_socket(server.url) as ann_socket,
        open_socket(server.url) as bob_socket,
    ):
        room = watcher_socket.channel("room:lobby", {"user": "watcher"})
        presence = room.presence()  # exists from the start, so no state is missed
        async with presence.changes() as changes, room:
            print("the watcher joins; the first presence_state lists who is there")
            await until(changes, lambda c: isinstance(c, PresenceSynced))
            print(f"online: {who(presence)}")

            print("ann and bob join")
            ann = ann_socket.channel("room:lobby", {"user": "ann"})
            bob = bob_socket.channel("room:lobby", {"user": "bob"})
            await ann.join()
            await bob.join()
            await until(changes, lambda c: isinstance(c, PresenceJoin) and c.key == "bob")
            print(f"online: {who(presence)}")

            print("ann sets her status")
            await ann.push("set_status", {"status": "away"})
            await until(changes, lambda c: isinstance(c, PresenceLeave) and c.key == "ann")
            print(f"online: {who(presence)}")

            print("bob leaves")
            await bob.leave()
            await until(changes, lambda c: isinstance(c, PresenceLeave) and c.key == "bob")
            print(f"online: {who(presence)}")


if __name__ == "__main__":
    trio.run(main)
