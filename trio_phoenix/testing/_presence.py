"""Server-side presence, like ``Phoenix.Presence`` on top of ``Phoenix.Tracker``.

Shapes (protocol reference §9.1):

* state, as `PresenceTracker.list` returns it and apps push as ``presence_state`` right after a
  join: ``{key: {"metas": [meta, ...]}}``, metas in tracking order, every meta carrying a
  ``phx_ref`` (URL-safe base64 of 12 random bytes: 16 characters);
* diff, broadcast as ``presence_diff`` with null refs: ``{"joins": {...}, "leaves": {...}}``
  in the same per-key shape. An update is *one* diff: a leave of the old meta and a join of
  the new one, which carries ``phx_ref_prev``.

Tracking is synchronous (`PresenceTracker.list` sees a track at once). When the diff goes out is
the ``order`` option, since Phoenix broadcasts it asynchronously and clients meet both orders:

* ``"diff_first"`` (the default): every diff is broadcast at once, so the usual ``track``
  then ``push_state`` in ``after_join`` puts the join's own ``presence_diff`` on the wire
  *before* ``presence_state``, as a real Phoenix 1.7.24 server did in every observed join;
* ``"state_first"``: diffs are queued and broadcast by a server task, so ``presence_state``
  comes first;
* ``"random"``: each diff picks one of the two (from ``random.Random(seed)``).

Diffs always go out in the order they were made. A presence is owned by a channel
(`~trio_phoenix.testing.ChannelSocket`) or a connection, and is removed, with a leave diff,
when its owner ends.
"""

from __future__ import annotations

import base64
import builtins
import os
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, final

import attrs
import trio

if TYPE_CHECKING:
    from ._channel import ChannelSocket
    from ._connection import ServerConnection

__all__ = ["PresenceOrder", "PresenceOwner", "PresenceState", "PresenceTracker", "new_phx_ref"]

#: A channel or a whole connection.
PresenceOwner: TypeAlias = "ChannelSocket | ServerConnection"
Broadcast: TypeAlias = Callable[[str, str, dict[str, Any]], None]
#: When a diff is broadcast relative to the code that made it (see the module docstring).
PresenceOrder: TypeAlias = Literal["diff_first", "state_first", "random"]
PRESENCE_ORDERS: Final = ("diff_first", "state_first", "random")
#: ``{key: {"metas": [meta, ...]}}``.
PresenceState: TypeAlias = dict[str, dict[str, list[dict[str, Any]]]]

STATE_EVENT: Final = "presence_state"
DIFF_EVENT: Final = "presence_diff"


def new_phx_ref() -> str:
    """A fresh ``phx_ref``: 12 random bytes in URL-safe base64 (16 characters)."""
    return base64.urlsafe_b64encode(os.urandom(12)).decode("ascii")


@attrs.define(eq=False)
class _Entry:
    owner: object
    key: str
    meta: dict[str, Any]


def _with_refs(meta: Mapping[str, Any], ref: str, prev: str | None = None) -> dict[str, Any]:
    merged = dict(meta)
    merged["phx_ref"] = ref
    if prev is not None:
        merged["phx_ref_prev"] = prev
    # Jason writes small maps with sorted keys; so do we, for byte-identical frames.
    return dict(sorted(merged.items()))


def _group(entries: list[_Entry]) -> PresenceState:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for entry in entries:
        grouped.setdefault(entry.key, {"metas": []})["metas"].append(entry.meta)
    return dict(sorted(grouped.items()))


_Diff: TypeAlias = tuple[str, dict[str, Any]]


@final
@attrs.define(eq=False, repr=False)
class PresenceTracker:
    """The presence tracker of one test server (``server.presence``)."""

    _broadcast: Broadcast
    order: PresenceOrder = attrs.field(default="diff_first", kw_only=True)
    seed: int | None = attrs.field(default=None, kw_only=True)
    _topics: dict[str, list[_Entry]] = attrs.field(factory=dict, init=False)
    _pending: deque[_Diff] = attrs.field(factory=deque, init=False)
    _wakeup: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot, init=False)
    _random: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.order not in PRESENCE_ORDERS:
            raise ValueError(
                f"presence order must be one of {PRESENCE_ORDERS}, not {self.order!r}"
            )
        self._random = random.Random(self.seed)

    def __repr__(self) -> str:
        return f"<trio_phoenix.testing.PresenceTracker topics={sorted(self._topics)!r}>"

    def track(
        self,
        owner: PresenceOwner,
        key: str,
        meta: Mapping[str, Any],
        *,
        topic: str | None = None,
    ) -> str:
        """Track ``key`` with ``meta`` on the owner's topic (or ``topic``); return its phx_ref.

        Raises:
            ValueError: the owner already tracks ``key`` on that topic (Phoenix returns
                ``{:error, {:already_tracked, ...}}``), or a connection owner gave no topic.
        """
        topic = _topic_of(owner, topic)
        if self._find(owner, topic, key) is not None:
            raise ValueError(f"{key!r} is already tracked on {topic!r} by this owner")
        entry = _Entry(owner=owner, key=key, meta=_with_refs(meta, new_phx_ref()))
        self._topics.setdefault(topic, []).append(entry)
        self._queue_diff(topic, joins=[entry], leaves=[])
        return str(entry.meta["phx_ref"])

    def update(
        self,
        owner: PresenceOwner,
        key: str,
        meta: Mapping[str, Any],
        *,
        topic: str | None = None,
    ) -> str:
        """Replace the meta of a tracked ``key``; one diff leaves the old and joins the new.

        Returns:
            The new phx_ref (the new meta's ``phx_ref_prev`` is the old one).

        Raises:
            KeyError: ``key`` is not tracked by this owner (Phoenix: ``:not_tracked``).
        """
        topic = _topic_of(owner, topic)
        old = self._find(owner, topic, key)
        if old is None:
            raise KeyError(key)
        entries = self._topics[topic]
        entries.remove(old)
        new = _Entry(
            owner=owner, key=key, meta=_with_refs(meta, new_phx_ref(), old.meta["phx_ref"])
        )
        entries.append(new)
        self._queue_diff(topic, joins=[new], leaves=[old])
        return str(new.meta["phx_ref"])

    def untrack(self, owner: PresenceOwner, key: str, *, topic: str | None = None) -> None:
        """Stop tracking ``key`` (a no-op if it is not tracked), broadcasting a leave."""
        topic = _topic_of(owner, topic)
        entry = self._find(owner, topic, key)
        if entry is not None:
            self._remove(topic, [entry])

    def list(self, topic: str) -> PresenceState:
        """The presence state of ``topic``: ``{key: {"metas": [...]}}``."""
        return _group(self._topics.get(topic, []))

    def push_state(self, socket: ChannelSocket, event: str = STATE_EVENT) -> None:
        """Push ``presence_state`` (the current `list`) to the channel's client."""
        socket.push(event, self.list(socket.topic))

    def owner_down(self, owner: object) -> None:
        """Drop everything ``owner`` tracks (its channel or connection ended)."""
        for topic, entries in list(self._topics.items()):
            mine = [entry for entry in entries if entry.owner is owner]
            if mine:
                self._remove(topic, mine)

    async def dispatch(self) -> None:
        """Broadcast queued diffs, in order, until cancelled (a server task)."""
        while True:
            if not self._pending:
                await self._wakeup.park()
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            topic, diff = self._pending.popleft()
            self._broadcast(topic, DIFF_EVENT, diff)

    def _find(self, owner: object, topic: str, key: str) -> _Entry | None:
        for entry in self._topics.get(topic, ()):
            if entry.owner is owner and entry.key == key:
                return entry
        return None

    def _remove(self, topic: str, gone: builtins.list[_Entry]) -> None:
        remaining = [entry for entry in self._topics[topic] if entry not in gone]
        if remaining:
            self._topics[topic] = remaining
        else:
            del self._topics[topic]
        self._queue_diff(topic, joins=[], leaves=gone)

    def _queue_diff(
        self, topic: str, *, joins: builtins.list[_Entry], leaves: builtins.list[_Entry]
    ) -> None:
        self._pending.append((topic, {"joins": _group(joins), "leaves": _group(leaves)}))
        order = self.order
        if order == "random":
            order = self._random.choice(("diff_first", "state_first"))
        if order == "diff_first":
            self._flush()
        else:
            self._wakeup.unpark_all()


def _topic_of(owner: PresenceOwner, topic: str | None) -> str:
    if topic is not None:
        return topic
    owner_topic = getattr(owner, "topic", None)
    if not isinstance(owner_topic, str):
        raise ValueError("tracking on a connection needs an explicit topic=")
    return owner_topic
