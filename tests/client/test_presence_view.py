"""The live presence view (``channel.presence()``) against the test server's presence tracker:
sync, the change stream, custom event names, and correctness through a server-side disconnect
and rejoin (diffs that arrive before the new state are held back).

Real clients, real in-process server, real loopback WebSockets; anything timed runs on
``autojump_clock`` and every test has an absolute deadline.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tests.helpers import LIMIT
from trio_phoenix import (
    Channel,
    ChannelClosed,
    ConnectFailed,
    PresenceChange,
    PresenceJoin,
    PresenceLeave,
    PresenceSynced,
    Subscription,
    open_socket,
)
from trio_phoenix.testing import (
    Accept,
    ChannelHandler,
    ChannelSocket,
    ConnectInfo,
    HandleInResult,
    PhoenixServerFactory,
    PresenceOrder,
    Reject,
    Reply,
    RoomChannel,
    TestServer,
    demo_channels,
)

TOPIC = "room:lobby"


def count_metas(key: str, presence: dict[str, Any]) -> tuple[str, int]:
    return key, len(presence["metas"])


async def changes_until_synced(changes: Subscription[PresenceChange]) -> list[PresenceChange]:
    """The changes up to and including the next ``PresenceSynced``."""
    seen: list[PresenceChange] = []
    while not seen or not isinstance(seen[-1], PresenceSynced):
        seen.append(await changes.receive())
    return seen


@asynccontextmanager
async def member(server: TestServer, user: str) -> AsyncIterator[Channel]:
    """Another client in the room, joined as ``user`` and synced."""
    async with (
        open_socket(server.url, params={"user": user}) as socket,
        socket.channel(TOPIC, {"user": user}) as channel,
    ):
        await channel.presence().wait_synced()
        yield channel


@pytest.mark.parametrize("order", ["diff_first", "state_first"])
async def test_presence_view_follows_other_clients(
    phoenix_server_factory: PhoenixServerFactory,
    autojump_clock: trio.abc.Clock,
    order: PresenceOrder,
) -> None:
    server = await phoenix_server_factory(demo_channels(), presence_order=order)
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel(TOPIC, {"user": "ann"})
            presence = channel.presence()
            assert presence is channel.presence()
            synced_before_joining = presence.synced
            assert not synced_before_joining
            async with presence.changes() as changes:
                await channel.join()
                await presence.wait_synced()
                assert presence.synced
                [ann_meta] = server.presence.list(TOPIC)["ann"]["metas"]
                assert set(ann_meta) == {"online_at", "phx_ref"}
                ann = {"metas": [ann_meta]}
                # The presence_state and the diff of ann's own join (a no-op, as in
                # phoenix.js). A diff that comes first is held back and applied right after
                # the state, before the sync.
                if order == "diff_first":
                    assert await changes_until_synced(changes) == [
                        PresenceJoin(key="ann", current=None, joined=ann),
                        PresenceJoin(key="ann", current=ann, joined=ann),
                        PresenceSynced(),
                    ]
                else:
                    assert await changes_until_synced(changes) == [
                        PresenceJoin(key="ann", current=None, joined=ann),
                        PresenceSynced(),
                    ]
                    assert await changes_until_synced(changes) == [
                        PresenceJoin(key="ann", current=ann, joined=ann),
                        PresenceSynced(),
                    ]
                assert presence.state == {"ann": ann}

                async with member(server, "bob") as bob_channel:
                    [bob_meta] = server.presence.list(TOPIC)["bob"]["metas"]
                    bob = {"metas": [bob_meta]}
                    assert await changes_until_synced(changes) == [
                        PresenceJoin(key="bob", current=None, joined=bob),
                        PresenceSynced(),
                    ]
                    assert presence.list(count_metas) == [("ann", 1), ("bob", 1)]
                    assert presence.list() == [ann, bob]
                    # One-key reads: no copy, read-only, O(1).
                    assert len(presence) == 2
                    assert "bob" in presence
                    assert "carol" not in presence
                    assert presence.get("bob") == bob
                    assert presence.get("carol") is None
                    assert "2 keys" in repr(presence)
                    bob_now = presence.get("bob")
                    assert bob_now is not None
                    with pytest.raises(TypeError, match="read-only"):
                        bob_now["metas"].clear()
                    snapshot = presence.state
                    assert snapshot is presence.state

                    # An update is one diff: leave the old meta, join the new one.
                    await bob_channel.push("set_status", {"status": "away"})
                    [new_meta] = server.presence.list(TOPIC)["bob"]["metas"]
                    assert new_meta["status"] == "away"
                    assert new_meta["phx_ref_prev"] == bob_meta["phx_ref"]
                    assert await changes_until_synced(changes) == [
                        PresenceJoin(key="bob", current=bob, joined={"metas": [new_meta]}),
                        PresenceLeave(key="bob", current={"metas": [new_meta]}, left=bob),
                        PresenceSynced(),
                    ]
                    bob = {"metas": [new_meta]}
                    assert presence.state == server.presence.list(TOPIC)

                assert await changes_until_synced(changes) == [
                    PresenceLeave(key="bob", current={"metas": []}, left=bob),
                    PresenceSynced(),
                ]
                assert snapshot == {"ann": ann, "bob": {"metas": [bob_meta]}}  # a snapshot
                assert presence.state == {"ann": ann}
                assert len(presence) == 1
                assert "bob" not in presence
                assert presence.state == server.presence.list(TOPIC)
                await channel.leave()
                # The change stream ends with the channel.
                with pytest.raises(trio.EndOfChannel):
                    await changes.receive()


class CustomPresence(ChannelHandler):
    """Presence under custom event names, state and diffs pushed by hand."""

    async def after_join(self, socket: ChannelSocket) -> None:
        await trio.lowlevel.checkpoint()
        socket.push("my_state", {"u1": {"metas": [{"phx_ref": "1", "n": 1}]}})

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        await trio.lowlevel.checkpoint()
        socket.push("my_diff", payload)
        return Reply.ok()


async def test_custom_event_names(
    phoenix_server_factory: PhoenixServerFactory,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.abc.Clock,
) -> None:
    server = await phoenix_server_factory({"custom:*": CustomPresence})
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("custom:1")
            presence = channel.presence(state_event="my_state", diff_event="my_diff")
            assert presence is channel.presence(state_event="my_state", diff_event="my_diff")
            async with channel:
                await presence.wait_synced()
                assert presence.state == {"u1": {"metas": [{"phx_ref": "1", "n": 1}]}}
                await channel.push(
                    "diff",
                    {
                        "joins": {"u2": {"metas": [{"phx_ref": "2"}]}},
                        "leaves": {"u1": {"metas": [{"phx_ref": "1", "n": 1}]}},
                    },
                )
                assert presence.state == {"u2": {"metas": [{"phx_ref": "2"}]}}
                # The default view listens to presence_state / presence_diff only.
                assert channel.presence().state == {}
                assert not channel.presence().synced
                # A malformed diff is counted and logged; the view is unchanged.
                await channel.push("diff", {"joins": 5})
                assert presence.malformed == 1
                assert presence.state == {"u2": {"metas": [{"phx_ref": "2"}]}}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("malformed my_diff" in r.getMessage() for r in warnings)


class SlowStateRoom(RoomChannel):
    """A room whose ``presence_state`` comes 1 s after the track, so the diff of the track
    reaches the client first (as it can on a real Phoenix server)."""

    async def after_join(self, socket: ChannelSocket) -> None:
        self.meta = {"online_at": int(trio.current_time())}
        socket.server.presence.track(socket, self.user, self.meta)
        await trio.sleep(1)
        socket.server.presence.push_state(socket)


class Gate:
    """A connect hook: the socket id is ``user:<name>``; users in ``kept_out`` get a 503."""

    def __init__(self) -> None:
        self.kept_out: set[str] = set()

    def __call__(self, params: dict[str, Any], info: ConnectInfo) -> Accept | Reject:
        user = str(params.get("user", "anonymous"))
        return Reject(503) if user in self.kept_out else Accept(id=f"user:{user}")


async def test_presence_is_correct_through_a_disconnect_and_rejoin(
    phoenix_server_factory: PhoenixServerFactory, autojump_clock: trio.abc.Clock
) -> None:
    gate = Gate()
    server = await phoenix_server_factory({"room:*": SlowStateRoom}, connect=gate)
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, params={"user": "ann"}) as socket,
            socket.lifecycle() as events,
        ):
            channel = socket.channel(TOPIC, {"user": "ann"})
            presence = channel.presence()
            async with presence.changes() as changes, channel.subscribe("presence_diff") as diffs:
                await channel.join()
                await presence.wait_synced()
                # ann's own diff came first and was held until the state, then applied.
                assert [type(c) for c in await changes_until_synced(changes)] == [
                    PresenceJoin,
                    PresenceJoin,
                    PresenceSynced,
                ]
                async with member(server, "bob") as bob_channel:
                    assert [type(c) for c in await changes_until_synced(changes)] == [
                        PresenceJoin,
                        PresenceSynced,
                    ]
                    old_state = presence.state
                    assert old_state == server.presence.list(TOPIC)
                    assert list(old_state) == ["ann", "bob"]
                    old_join_ref = channel.join_ref

                    # The server kicks ann out and keeps her out for a while.
                    gate.kept_out.add("ann")
                    server.disconnect("user:ann")
                    while not isinstance(await events.receive(), ConnectFailed):
                        pass
                    await bob_channel.leave()
                async with member(server, "carol"):
                    assert set(server.presence.list(TOPIC)) == {"carol"}
                    gate.kept_out.clear()
                    # Rejoined: the diff of ann's new track arrives before the new state.
                    while True:
                        diff = await diffs.receive()
                        if channel.join_ref != old_join_ref:
                            break
                    assert diff.payload["joins"].keys() == {"ann"}
                    assert not presence.synced
                    assert presence.state == old_state  # held back, not applied
                    await presence.wait_synced()
                    truth = server.presence.list(TOPIC)
                    assert set(truth) == {"ann", "carol"}
                    assert presence.state == truth
                    assert presence.list(count_metas) == [("ann", 1), ("carol", 1)]
                    assert truth["ann"] != old_state["ann"]  # a new meta, no duplicate
                    # What the stream said about the gap.
                    resync = await changes_until_synced(changes)
                    assert [(type(c).__name__, getattr(c, "key", None)) for c in resync] == [
                        ("PresenceJoin", "ann"),
                        ("PresenceJoin", "carol"),
                        ("PresenceLeave", "bob"),
                        ("PresenceLeave", "ann"),
                        ("PresenceJoin", "ann"),  # the held-back diff, applied on top
                        ("PresenceSynced", None),
                    ]
                assert await changes_until_synced(changes) == [
                    PresenceLeave(key="carol", current={"metas": []}, left=truth["carol"]),
                    PresenceSynced(),
                ]
                assert presence.state == {"ann": truth["ann"]}


async def test_wait_synced_fails_when_the_channel_closes_unsynced(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    outcome: list[ChannelClosed] = []

    async def wait(channel: Channel) -> None:
        try:
            await channel.presence().wait_synced()
        except ChannelClosed as exc:
            outcome.append(exc)

    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:no-presence")  # never sends presence_state
            await channel.join()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait, channel)
                await trio.sleep(1)
                assert outcome == []
                await channel.leave()
            assert [(type(e), e.reason) for e in outcome] == [(ChannelClosed, "left")]
            with pytest.raises(ChannelClosed):
                await channel.presence().wait_synced()
            # No change can come any more: the stream is refused, like subscribe().
            with pytest.raises(ChannelClosed):
                async with channel.presence().changes():
                    pass
