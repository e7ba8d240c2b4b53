"""Channel and presence behaviour where the test server once differed from a real Phoenix.

Frame order is checked with the raw client (`scenarios.wire`); the client-side effects with
trio_phoenix itself. Both servers run Phoenix 1.7's rules (the test server with
``phoenix_version="1.7"``).
"""

from __future__ import annotations

from typing import Any

import trio

from trio_phoenix import open_socket

from .conftest import ScenarioServer
from .wire import WAIT, RawClient, open_raw, text


async def messages(client: RawClient, count: int) -> list[Any]:
    """The next ``count`` text messages."""
    found: list[Any] = []
    with trio.fail_after(WAIT):
        while len(found) < count:
            received = await client.receive()
            assert received is not None, "the server closed the connection"
            found.append(received.message())
    return found


def kinds(found: list[Any]) -> list[tuple[str | None, str | None, str]]:
    """(join_ref, ref, event) of each message."""
    return [(m[0], m[1], m[3]) for m in found]


async def test_join_presence_diff_comes_before_presence_state(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(text(["1", "1", "room:order", "phx_join", {"user": "ann"}]))
        reply, diff, state = await messages(client, 3)
        assert kinds([reply, diff, state]) == [
            ("1", "1", "phx_reply"),
            (None, None, "presence_diff"),
            ("1", None, "presence_state"),
        ]
        assert diff[4]["joins"] == state[4]
        assert diff[4]["leaves"] == {}


async def test_duplicate_join_sends_no_leave_to_the_rejoining_client(
    server: ScenarioServer,
) -> None:
    # Observed on Phoenix 1.7.24 (20 of 20 runs): the re-joining client gets the new join's
    # reply, the old channel's phx_close, then a diff with only the new meta's join, then
    # the state; the old meta's leave reaches the other members only.
    async with open_raw(server.url) as observer, open_raw(server.url) as client:
        await observer.send(text(["9", "9", "room:dup", "phx_join", {"user": "obs"}]))
        await messages(observer, 3)
        await client.send(text(["1", "1", "room:dup", "phx_join", {"user": "ann"}]))
        _, _, first_state = await messages(client, 3)
        old_meta = first_state[4]["ann"]
        await client.send(text(["2", "2", "room:dup", "phx_join", {"user": "ann"}]))
        found = await messages(client, 2)
        assert kinds(found) == [("2", "2", "phx_reply"), ("1", "1", "phx_close")]
        # Then the state and the new meta's join diff. Phoenix broadcasts diffs
        # asynchronously: the diff usually comes first, and on a busy machine the old meta's
        # leave sometimes reaches the re-joining client too (before the new join's
        # subscription is in place, or not); every such leave is of the old meta only.
        state: dict[str, Any] = {}
        diffs: list[dict[str, Any]] = []
        while not state or not any(d["joins"].get("ann") == state["ann"] for d in diffs):
            [message] = await messages(client, 1)
            if message[3] == "presence_state":
                assert message[:2] == ["2", None]
                state = message[4]
            else:
                assert (message[0], message[1], message[3]) == (None, None, "presence_diff")
                diffs.append(message[4])
        for diff in diffs:
            assert diff["leaves"] in ({}, {"ann": old_meta})
            assert diff["joins"] in ({}, {"ann": state["ann"]})
        assert state["ann"] != old_meta
        seen = [m[4] for m in await messages(observer, 3)]
        assert seen == [
            {"joins": {"ann": old_meta}, "leaves": {}},
            {"joins": {}, "leaves": {"ann": old_meta}},
            {"joins": {"ann": state["ann"]}, "leaves": {}},
        ]


async def test_join_ref_is_not_checked_on_a_null_join_ref_channel(
    server: ScenarioServer,
) -> None:
    # Phoenix 1.7.24 delivers every message to a channel joined with a null join ref; its
    # replies carry the join's ref, its phx_close a null one.
    async with open_raw(server.url) as client:
        await client.send(text([None, "1", "echo:null", "phx_join", {}]))
        await client.send(text(["5", "2", "echo:null", "echo", {"x": 1}]))
        await client.send(text([None, "3", "echo:null", "echo", {"x": 2}]))
        await client.send(text(["5", "4", "echo:null", "phx_leave", {}]))
        found = await messages(client, 5)
        assert kinds(found) == [
            (None, "1", "phx_reply"),
            ("1", "2", "phx_reply"),
            ("1", "3", "phx_reply"),
            ("1", "4", "phx_reply"),
            (None, None, "phx_close"),
        ]
        assert [m[4]["response"] for m in found[1:3]] == [{"x": 1}, {"x": 2}]


async def test_stale_join_ref_is_delivered_except_for_phx_leave(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(text(["1", "1", "echo:stale", "phx_join", {}]))
        await client.send(text(["7", "2", "echo:stale", "echo", {"x": 1}]))
        await client.send(text(["7", "3", "echo:stale", "phx_leave", {}]))  # ignored
        await client.send(text(["1", "4", "echo:stale", "echo", {"x": 2}]))
        found = await messages(client, 3)
        assert kinds(found) == [
            ("1", "1", "phx_reply"),
            ("1", "2", "phx_reply"),
            ("1", "4", "phx_reply"),
        ]


async def test_crash_sends_phx_error_with_an_empty_payload(server: ScenarioServer) -> None:
    async with open_raw(server.url) as client:
        await client.send(text(["1", "1", "echo:crash", "phx_join", {}]))
        await client.send(text(["1", "2", "echo:crash", "crash", {}]))
        found = await messages(client, 2)
        assert found[1] == ["1", "1", "echo:crash", "phx_error", {}]


async def test_a_normal_leave_drops_no_message(server: ScenarioServer) -> None:
    async with open_socket(server.url, **server.options, heartbeat_interval=None) as socket:
        channel = socket.channel("echo:leave")
        await channel.join()
        base = socket.statistics().frames_received
        await channel.leave()
        # Phoenix sends phx_close after the leave's reply: ping until both have arrived.
        pings = 0
        with trio.fail_after(WAIT):
            while socket.statistics().frames_received - base - pings < 2:
                await socket.ping()
                pings += 1
        assert socket.statistics().frames_received - base - pings == 2
        assert socket.statistics().dropped_messages == 0
