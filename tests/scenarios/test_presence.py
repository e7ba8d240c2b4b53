"""Presence: state, joins, updates, untracks, leaves, and the view across a rejoin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from trio_phoenix import (
    Channel,
    ChannelJoined,
    PresenceChange,
    PresenceJoin,
    PresenceLeave,
    Subscription,
    open_socket,
)

from .conftest import LIMIT, ScenarioServer, disconnect_me


def users(channel: Channel) -> list[str]:
    """The keys of the channel's presence view."""
    return sorted(channel.presence().list(lambda key, _: key))


async def next_change(changes: Subscription[PresenceChange]) -> PresenceJoin | PresenceLeave:
    """The next join or leave (skipping ``PresenceSynced``)."""
    while True:
        change = await changes.receive()
        if isinstance(change, PresenceJoin | PresenceLeave):
            return change


async def next_change_of(changes: Subscription[PresenceChange], key: str, kind: type[Any]) -> Any:
    """The next change of ``kind`` for ``key``.

    The join's own ``presence_diff`` comes before ``presence_state`` on Phoenix, and may come
    after it elsewhere (Phoenix broadcasts it asynchronously), so a scenario skips what it did
    not ask for.
    """
    while True:
        change = await changes.receive()
        if isinstance(change, kind) and change.key == key:
            return change


async def test_own_presence_after_join(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channel = socket.channel("room:own", {"user": "ann"})
            presence = channel.presence()
            async with channel:
                assert channel.join_response == {"topic": "room:own", "user": "ann"}
                await presence.wait_synced()
                while "ann" not in users(channel):  # the join's own diff may come after
                    async with presence.changes() as changes:
                        await next_change(changes)
                [entry] = presence.list()
                [meta] = entry["metas"]
                assert set(meta) == {"online_at", "phx_ref"}


async def test_others_join_and_leave(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options) as ann_socket,
            open_socket(server.url, **server.options) as bob_socket,
        ):
            ann = ann_socket.channel("room:pair", {"user": "ann"})
            presence = ann.presence()
            async with ann, presence.changes() as changes:
                await presence.wait_synced()
                bob = bob_socket.channel("room:pair", {"user": "bob"})
                bob_view = bob.presence()
                async with bob:
                    await next_change_of(changes, "bob", PresenceJoin)
                    assert users(ann) == ["ann", "bob"]
                    await bob_view.wait_synced()
                    assert "ann" in users(bob)
                change = await next_change_of(changes, "bob", PresenceLeave)
                assert change.current["metas"] == []
                assert users(ann) == ["ann"]


async def test_update_is_one_leave_and_one_join(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channel = socket.channel("room:status", {"user": "cat"})
            presence = channel.presence()
            async with channel, presence.changes() as changes:
                while users(channel) != ["cat"]:
                    await next_change(changes)
                await channel.push("set_status", {"status": "away"})
                left = await next_change_of(changes, "cat", PresenceLeave)
                assert "status" not in left.left["metas"][0]
                [entry] = presence.list()
                [meta] = entry["metas"]
                assert meta["status"] == "away"
                assert "phx_ref_prev" in meta


async def test_untrack_and_track_another_key(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url, **server.options) as socket:
            channel = socket.channel("room:keys", {"user": "dan"})
            presence = channel.presence()
            async with channel, presence.changes() as changes:
                while users(channel) != ["dan"]:
                    await next_change(changes)
                await channel.push("track", {"key": "device:7", "meta": {"kind": "sensor"}})
                change = await next_change_of(changes, "device:7", PresenceJoin)
                assert change.joined["metas"][0]["kind"] == "sensor"
                await channel.push("untrack", {})
                change = await next_change_of(changes, "dan", PresenceLeave)
                assert change.current["metas"] == []
                assert users(channel) == ["device:7"]


async def test_presence_across_a_rejoin(server: ScenarioServer) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **server.options, params={"user": "eli"}) as socket,
            open_socket(server.url, **server.options) as observer_socket,
            socket.lifecycle() as events,
        ):
            observer = observer_socket.channel("room:rejoin", {"user": "obs"})
            seen = observer.presence()
            channel = socket.channel("room:rejoin", {"user": "eli"})
            presence = channel.presence()
            async with (
                observer,
                channel,
                presence.changes() as mine,
                seen.changes() as theirs,
            ):
                while users(channel) != ["eli", "obs"]:
                    await next_change(mine)
                while users(observer) != ["eli", "obs"]:
                    await next_change(theirs)
                # Disconnect eli's socket from the server side (its id is user_socket:eli).
                async with socket.channel("echo:control") as control:
                    await disconnect_me(control)
                async for event in events:
                    if isinstance(event, ChannelJoined) and event.rejoin:
                        break
                await presence.wait_synced()
                while users(channel) != ["eli", "obs"]:
                    await next_change(mine)
                # One meta for eli, not the dead connection's as well.
                while len(_metas(seen.state, "eli")) != 1:
                    await next_change(theirs)
                assert len(_metas(presence.state, "eli")) == 1


def _metas(state: Mapping[str, Any], key: str) -> list[Any]:
    entry = state.get(key)
    return list(entry["metas"]) if entry else []
