"""Presence on the test server: state and diffs on the wire, the tracker's shapes, and
``presence_order`` (protocol reference §7).

How these tests run: ``tests/testing/server_helpers.py``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.testing.server_helpers import connect, ok
from trio_phoenix.testing import (
    ChannelSocket,
    PresenceTracker,
    ServerConnection,
    TestServer,
    demo_channels,
    open_test_server,
)


async def test_presence_state_and_diffs_on_the_wire(server: TestServer) -> None:
    async with connect(server) as a:
        assert (await a.join("room:lobby", "1", {"user": "ann"}))[4] == ok(
            {"topic": "room:lobby", "user": "ann"}
        )
        # The join's own diff first, as on a real server (presence_order="diff_first").
        diff = await a.recv()
        state = await a.recv()
        assert state[:4] == ["1", None, "room:lobby", "presence_state"]
        (meta,) = state[4]["ann"]["metas"]
        assert list(meta) == ["online_at", "phx_ref"]
        assert len(meta["phx_ref"]) == 16
        assert diff == [
            None,
            None,
            "room:lobby",
            "presence_diff",
            {"joins": {"ann": {"metas": [meta]}}, "leaves": {}},
        ]
        async with connect(server) as b:
            await b.join("room:lobby", "1", {"user": "bob"})
            assert list((await b.recv())[4]["joins"]) == ["bob"]
            assert set((await b.recv())[4]) == {"ann", "bob"}
            bob_join = (await a.recv())[4]
            assert list(bob_join["joins"]) == ["bob"]
            assert bob_join["leaves"] == {}
            await a.send("1", "2", "room:lobby", "set_status", {"status": "away"})
            diff = (await b.recv())[4]
            (new,) = diff["joins"]["ann"]["metas"]
            assert diff["leaves"] == {"ann": {"metas": [meta]}}
            assert new["phx_ref_prev"] == meta["phx_ref"]
            assert new["status"] == "away"
            assert new["phx_ref"] != meta["phx_ref"]
            assert server.presence.list("room:lobby")["ann"]["metas"] == [new]
        # b's connection ended: its presence leaves.
        messages = [await a.recv() for _ in range(3)]
        leave = [m for m in messages if m[3] == "presence_diff"]
        assert leave[-1][4]["joins"] == {}
        assert list(leave[-1][4]["leaves"]) == ["bob"]
    assert server.presence.list("room:lobby") == {}


def test_presence_tracker_shapes() -> None:
    sent: list[tuple[str, str, dict[str, Any]]] = []
    presence = PresenceTracker(lambda topic, event, payload: sent.append((topic, event, payload)))
    owner = cast(ChannelSocket, SimpleNamespace(topic="room:1"))
    other = cast(ChannelSocket, SimpleNamespace(topic="room:1"))
    connection = cast(ServerConnection, SimpleNamespace())
    ref1 = presence.track(owner, "u1", {"name": "a"})
    ref2 = presence.track(other, "u1", {"name": "b"})
    presence.track(connection, "c", {}, topic="room:2")
    with pytest.raises(ValueError, match="already tracked"):
        presence.track(owner, "u1", {})
    with pytest.raises(ValueError, match="explicit topic"):
        presence.track(connection, "c", {})
    assert presence.list("room:1") == {
        "u1": {"metas": [{"name": "a", "phx_ref": ref1}, {"name": "b", "phx_ref": ref2}]}
    }
    ref3 = presence.update(owner, "u1", {"name": "a2"})
    assert [m["phx_ref"] for m in presence.list("room:1")["u1"]["metas"]] == [ref2, ref3]
    with pytest.raises(KeyError):
        presence.update(owner, "nobody", {})
    presence.untrack(owner, "nobody")
    presence.owner_down(owner)
    presence.owner_down(connection)
    presence.untrack(other, "u1")
    assert presence.list("room:1") == {}
    assert presence.list("room:2") == {}
    # presence_order="diff_first": every diff went out at once.
    assert {event for _, event, _ in sent} == {"presence_diff"}
    diffs = [payload for _, _, payload in sent]
    assert diffs[3] == {
        "joins": {"u1": {"metas": [{"name": "a2", "phx_ref": ref3, "phx_ref_prev": ref1}]}},
        "leaves": {"u1": {"metas": [{"name": "a", "phx_ref": ref1}]}},
    }
    assert [sorted(d["leaves"]) for d in diffs[4:]] == [["u1"], ["c"], ["u1"]]


async def _join_order(server: TestServer, topic: str) -> list[str]:
    async with connect(server) as client:
        await client.join(topic, "1", {"user": "ann"})
        return [(await client.recv())[3] for _ in range(2)]


async def test_presence_order_state_first() -> None:
    async with open_test_server(demo_channels(), presence_order="state_first") as server:
        assert await _join_order(server, "room:1") == ["presence_state", "presence_diff"]


async def test_presence_order_random_gives_both_orders() -> None:
    async with open_test_server(
        demo_channels(), presence_order="random", presence_seed=11
    ) as server:
        orders = {tuple(await _join_order(server, f"room:{n}")) for n in range(20)}
    assert orders == {
        ("presence_state", "presence_diff"),
        ("presence_diff", "presence_state"),
    }


def test_presence_order_and_phoenix_version_are_checked() -> None:
    with pytest.raises(ValueError, match="presence order"):
        TestServer(presence_order=cast(Any, "sometimes"))
    with pytest.raises(ValueError, match="phoenix_version"):
        TestServer(phoenix_version=cast(Any, "1.6"))
