"""Presence frames on a channel whose application never asked for presence cost nothing.

Until ``channel.presence()`` is called, the channel parses no presence event: it keeps the last
``presence_state`` and the diffs after it as they arrived, bounded like a view's pending
diffs, and hands them to the view when one is made, so a view created after the join still
starts from the server's state.
"""

from __future__ import annotations

import logging

import pytest
import trio

from tests.helpers import REAL_LIMIT
from trio_phoenix import open_socket
from trio_phoenix.proto._presence import MAX_PENDING_DIFFS
from trio_phoenix.testing import TestServer


def meta(ref: str, **fields: object) -> dict[str, object]:
    return {"metas": [{"phx_ref": ref, **fields}]}


async def test_presence_events_are_not_parsed_until_a_view_is_asked_for(
    phoenix_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_phoenix")
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:unclaimed") as channel,
        ):
            bad = {"x" * 10: {"metas": "not a list"}}
            phoenix_server.broadcast("echo:unclaimed", "presence_state", bad)
            phoenix_server.broadcast("echo:unclaimed", "presence_state", {"ann": meta("1")})
            phoenix_server.broadcast(
                "echo:unclaimed",
                "presence_diff",
                {"joins": {"bob": meta("2")}, "leaves": {}},
            )
            assert await channel.push("echo", {}) == {}  # the broadcasts came before this
            assert "presence" not in caplog.text  # nothing was parsed
            presence = channel.presence()
            await presence.wait_synced()
            assert sorted(presence.state) == ["ann", "bob"]
            assert presence.malformed == 0  # the malformed state was replaced unparsed


async def test_unclaimed_presence_diffs_are_bounded(phoenix_server: TestServer) -> None:
    with trio.fail_after(REAL_LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:flood") as channel,
        ):
            for n in range(MAX_PENDING_DIFFS + 10):
                phoenix_server.broadcast(
                    "echo:flood",
                    "presence_diff",
                    {"joins": {f"k{n}": meta(str(n))}, "leaves": {}},
                )
            assert await channel.push("echo", {}) == {}
            assert channel.statistics().messages_received == MAX_PENDING_DIFFS + 10
            presence = channel.presence()
            # Past the bound the diffs were refused and counted, as a view refuses and
            # counts the diffs past its bound while it waits for a state.
            assert presence.malformed == 10
            assert len(presence) == 0
            phoenix_server.broadcast("echo:flood", "presence_state", {"ann": meta("a")})
            await presence.wait_synced()
            assert len(presence) == MAX_PENDING_DIFFS + 1
            assert "ann" in presence
            assert "k999" in presence
            assert "k1000" not in presence
