"""``PresenceSync``: a channel's presence view, as phoenix.js's ``Presence`` instance keeps it,
built to stay cheap at lobby scale (tens of thousands of keys).

The sync rules are those of :mod:`._presence` (phoenix.js 1.8 exactly: same changes, same
order, same key order), checked against phoenix.js by the differential tests. What this
module adds is how the view is stored and read:

- **Entries are read-only and shared.** Every presence the view holds is a
  :class:`ReadOnlyDict` with :class:`ReadOnlyList` metas, read-only all the way down (payloads
  are frozen once, when they are applied). ``get()``, ``list()``, ``state`` and the change
  values hand out these entries themselves, never copies, and nobody can change the view
  through them.
- **JavaScript key order is kept, not recomputed.** For keys that are not array indices,
  JavaScript's order is insertion order, and so is a dict's (a replaced value keeps its
  place, a deleted and re-added key goes last, in both). Array-index keys (``"0"``,
  ``"17"``...) come first in numeric order: as long as each one arrives above the others and
  before any non-index key (numeric ids handed out in increasing order), the dict stays in
  JavaScript order; otherwise the next read that needs the order rebuilds the dict in order
  once (O(n log n)).
- **Reads cost what they return.** ``get(key)``, ``key in view`` and ``len(view)`` are one
  dict operation. ``list()`` builds one new list (O(n), no copying of entries). ``state`` is
  a read-only snapshot: built once after a change (one shallow O(n) copy), then the same
  object until the next change, so later events never change a snapshot already handed out.
- **Applying is proportional to the payload.** A diff costs O(keys and metas in the diff);
  a full ``presence_state`` costs O(keys in the view + keys in the state), with one freeze of
  each new presence and one comparison of refs per key already present.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import attrs

from ._errors import RemoteProtocolError
from ._limits import MAX_NESTING, BufferBound, check_nesting
from ._presence import (
    MAX_PENDING_BYTES,
    MAX_PENDING_DIFFS,
    PresenceChange,
    PresenceEntry,
    PresenceJoin,
    PresenceLeave,
    PresenceState,
    PresenceSynced,
    _check_diff,
    _check_presences,
    _is_array_index,
    js_keys,
)
from ._readonly import ReadOnlyDict, ReadOnlyList, freeze, thaw as _clone

__all__ = ["PresenceSync"]

_T = TypeVar("_T")


@attrs.define(eq=False)
class PresenceSync:
    """A channel's presence list, kept in sync like a phoenix.js ``Presence`` instance.

    Feed it every ``presence_state`` and ``presence_diff`` payload of the channel together
    with the channel's *current* join ref; each call returns the changes, in the order
    phoenix.js would call ``onJoin`` / ``onLeave`` / ``onSync``.

    Diffs are applied only once the view is synced: until the first ``presence_state``, and
    again whenever the channel's join ref differs from the one that state arrived with, diffs
    are queued (no changes returned) and applied right after the next ``presence_state``.
    That is how a rejoin is handled, with no reset: after a rejoin the channel has a new join
    ref, so diffs wait for the new join's ``presence_state``, which is synced against the old
    state (keys gone meanwhile are reported as leaves, new ones as joins), then the queued
    diffs are applied on top. Dropping messages with a stale join ref is the channel layer's
    job.

    Presences in the view, in ``state``, in ``list()`` and in the changes are read-only
    (``ReadOnlyDict`` / ``ReadOnlyList``, equal to plain dicts and lists) and shared, not
    copied: ``copy.deepcopy()`` one to get a modifiable copy.

    Example:
        >>> view = PresenceSync()
        >>> changes = view.handle_state({"u1": {"metas": [{"phx_ref": "a"}]}}, "1")
        >>> [type(change).__name__ for change in changes]
        ['PresenceJoin', 'PresenceSynced']
        >>> len(view), "u1" in view, view.get("u1")
        (1, True, {'metas': [{'phx_ref': 'a'}]})
        >>> view.handle_diff({"joins": {}, "leaves": {"u1": {"metas": [{"phx_ref": "a"}]}}}, "1")
        [PresenceLeave(key='u1', current={'metas': []}, left={'metas': [{'phx_ref': 'a'}]}), \
PresenceSynced()]
        >>> view.list()
        []
    """

    #: key -> read-only presence, in insertion order: JavaScript's order while ``_ordered``.
    _entries: dict[str, PresenceEntry] = attrs.field(factory=dict, init=False)
    #: The array-index keys among ``_entries`` -> their numeric value.
    _indices: dict[str, int] = attrs.field(factory=dict, init=False)
    #: Whether ``_entries`` iterates in JavaScript order. An index key added after a
    #: non-index key, or below ``_last_index``, breaks it; the next read that needs the
    #: order rebuilds the dict in order.
    _ordered: bool = attrs.field(default=True, init=False)
    #: Not below any index key in ``_entries`` (the largest added since the last rebuild).
    _last_index: int = attrs.field(default=-1, init=False)
    #: What ``state`` returns; ``None`` after any change.
    _snapshot: ReadOnlyDict | None = attrs.field(default=None, init=False)
    _pending_diffs: builtins.list[tuple[PresenceState, PresenceState]] = attrs.field(
        factory=builtins.list, init=False
    )
    _join_ref: str | None = attrs.field(default=None, init=False)
    #: Bound of the diffs queued while a state is pending, in diffs and in frame bytes.
    max_pending_diffs: int = attrs.field(default=MAX_PENDING_DIFFS, kw_only=True)
    max_pending_bytes: int = attrs.field(default=MAX_PENDING_BYTES, kw_only=True)
    _pending_bound: BufferBound = attrs.field(init=False)

    @_pending_bound.default
    def _new_pending_bound(self) -> BufferBound:
        return BufferBound(self.max_pending_diffs, self.max_pending_bytes)

    # --- reads --------------------------------------------------------------------------------

    @property
    def state(self) -> Mapping[str, PresenceEntry]:
        """The current state: a read-only snapshot in JavaScript key order.

        Built once after each change (a shallow copy, O(number of keys)); until the next
        change, every read returns the same object. Later changes never alter it.
        """
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = ReadOnlyDict(self._ordered_entries())
            self._snapshot = snapshot
        return snapshot

    def get(self, key: str) -> PresenceEntry | None:
        """The read-only presence of ``key``, or ``None`` if absent. O(1), no copy."""
        return self._entries.get(key)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is present. O(1)."""
        return key in self._entries

    def __len__(self) -> int:
        """The number of keys present. O(1)."""
        return len(self._entries)

    @property
    def pending_diffs(self) -> builtins.list[dict[str, PresenceState]]:
        """Copies of the queued diffs (``{"joins": ..., "leaves": ...}``), oldest first."""
        return [{"joins": _clone(j), "leaves": _clone(lv)} for j, lv in self._pending_diffs]

    @property
    def join_ref(self) -> str | None:
        """The channel join ref the last ``presence_state`` arrived with (``None`` before)."""
        return self._join_ref

    def in_pending_sync_state(self, channel_join_ref: str | None) -> bool:
        """Whether a diff arriving now would be queued (phoenix.js ``inPendingSyncState``).

        Args:
            channel_join_ref: the channel's current join ref.
        """
        return not self._join_ref or self._join_ref != channel_join_ref

    @overload
    def list(self, chooser: None = None) -> builtins.list[PresenceEntry]: ...
    @overload
    def list(self, chooser: Callable[[str, PresenceEntry], _T]) -> builtins.list[_T]: ...
    def list(
        self, chooser: Callable[[str, PresenceEntry], Any] | None = None
    ) -> builtins.list[Any]:
        """List the presences in JavaScript key order (phoenix.js ``presence.list``).

        A new list each call (O(number of keys)); its items are the view's read-only
        presences, not copies.

        Args:
            chooser: maps ``(key, presence)`` to the list item; by default the presence.
        """
        entries = self._ordered_entries()
        if chooser is None:
            return builtins.list(entries.values())
        return [chooser(key, presence) for key, presence in entries.items()]

    def _ordered_entries(self) -> dict[str, PresenceEntry]:
        # The entries, iterating in JavaScript order: rebuilt in that order if an index key
        # came out of order since the last read (a sort of the index keys, O(n log n)).
        # Numeric ids handed out in increasing order never need it.
        if not self._ordered:
            entries = self._entries
            indices = self._indices
            order = sorted(indices, key=indices.__getitem__)
            self._last_index = indices[order[-1]] if order else -1
            order += [key for key in entries if key not in indices]
            self._entries = {key: entries[key] for key in order}
            self._ordered = True
        return self._entries

    # --- events -------------------------------------------------------------------------------

    def handle_state(
        self, payload: object, channel_join_ref: str | None
    ) -> builtins.list[PresenceChange]:
        """Apply a ``presence_state`` payload, then every queued diff.

        Args:
            payload: the message payload.
            channel_join_ref: the channel's current join ref.

        Returns:
            The joins and leaves, then one ``PresenceSynced``.

        Raises:
            RemoteProtocolError: the payload is malformed; nothing changed.
        """
        joins, leaves = self._diff_to(payload)
        changes: builtins.list[PresenceChange] = []
        self._join_ref = channel_join_ref
        self._snapshot = None
        self._apply(joins, leaves, changes)
        for queued_joins, queued_leaves in self._pending_diffs:
            self._apply(queued_joins, queued_leaves, changes)
        self._pending_diffs = []
        self._pending_bound = self._new_pending_bound()
        changes.append(PresenceSynced())
        return changes

    def handle_diff(
        self, payload: object, channel_join_ref: str | None, *, size: int = 0
    ) -> builtins.list[PresenceChange]:
        """Apply a ``presence_diff`` payload, or queue it while a state is pending.

        Args:
            payload: the message payload.
            channel_join_ref: the channel's current join ref.
            size: the size of the diff's frame in bytes, counted against
                ``max_pending_bytes`` if the diff is queued.

        Returns:
            The joins and leaves, then one ``PresenceSynced``; nothing if the diff was queued.

        Raises:
            RemoteProtocolError: the payload is malformed, or queueing it would exceed the
                pending bound; nothing changed.
        """
        joins, leaves = _frozen_diff(payload)
        if self.in_pending_sync_state(channel_join_ref):
            bound = self._pending_bound
            if not bound.fits(size):
                raise RemoteProtocolError(
                    f"presence diff refused: {bound.items} diffs ({bound.bytes} bytes) already "
                    "wait for a presence_state"
                )
            bound.add(size)
            self._pending_diffs.append((joins, leaves))
            return []
        changes: builtins.list[PresenceChange] = []
        self._snapshot = None
        self._apply(joins, leaves, changes)
        changes.append(PresenceSynced())
        return changes

    # --- the sync rules on read-only entries --------------------------------------------------

    def _diff_to(self, payload: object) -> tuple[PresenceState, PresenceState]:
        # phoenix.js syncState, first half: the diff from the view to the payload's state,
        # frozen. The payload is checked on the way; nothing changes before the diff is whole.
        diff = self._frozen_diff_to(payload) if isinstance(payload, dict) else None
        if diff is None:
            _check_presences(payload, "presence state", RemoteProtocolError)
            raise AssertionError("a malformed presence state passed the check")  # pragma: no cover
        return diff

    def _frozen_diff_to(
        self, new_state: dict[Any, Any]
    ) -> tuple[PresenceState, PresenceState] | None:
        # Walking dicts in insertion order instead of JS order is enough here: the diff's keys
        # are put in JS order when it is applied, and insertion order is JS order for the keys
        # whose relative order survives that (the non-index ones).
        entries = self._entries
        joins: PresenceState = {}
        leaves: PresenceState = {}
        # Vanished keys first, in the view's order, then keys that lost some metas, in
        # new_state's order (as phoenix.js builds its leaves).
        for key, presence in entries.items():
            if key not in new_state:
                leaves[key] = presence
        for key, new_presence in new_state.items():
            current = entries.get(key)
            if current is None:
                frozen = _freeze_presence(new_presence)
                if frozen is None or not isinstance(key, str):
                    return None
                joins[key] = frozen
                continue
            new_refs = _refs(new_presence)
            if new_refs is None:
                return None
            current_metas = current["metas"]
            current_refs = [meta["phx_ref"] for meta in current_metas]
            if new_refs == current_refs:
                continue  # the usual case on a rejoin: nothing joined, nothing left
            new_set = set(new_refs)
            current_set = set(current_refs)
            joined = [meta for meta in new_presence["metas"] if meta["phx_ref"] not in current_set]
            left = [meta for meta in current_metas if meta["phx_ref"] not in new_set]
            if joined:
                frozen = _freeze_presence({**new_presence, "metas": joined})
                if frozen is None:
                    return None
                joins[key] = frozen
            if left:
                leaves[key] = ReadOnlyDict({**current, "metas": ReadOnlyList(left)})
        return joins, leaves

    def _apply(
        self,
        joins: PresenceState,
        leaves: PresenceState,
        changes: builtins.list[PresenceChange],
    ) -> None:
        # phoenix.js syncDiff on a frozen diff: all joins, then all leaves, each in JS key
        # order.
        # (A diff usually holds one key or two: no need to order those.)
        for key in joins if len(joins) < 2 else js_keys(joins):
            self._join(key, joins[key], changes)
        for key in leaves if len(leaves) < 2 else js_keys(leaves):
            self._leave(key, leaves[key], changes)

    def _join(
        self, key: str, joined: PresenceEntry, changes: builtins.list[PresenceChange]
    ) -> None:
        # The key's metas become its metas that `joined` does not re-send, then `joined`'s.
        entries = self._entries
        current = entries.get(key)
        if current is None:
            entries[key] = joined
            if _is_array_index(key):
                value = int(key)
                indices = self._indices
                indices[key] = value
                if value > self._last_index and len(indices) == len(entries):
                    self._last_index = value  # appended after every key: still in order
                else:
                    self._ordered = False
        else:
            joined_refs = {meta["phx_ref"] for meta in joined["metas"]}
            kept = [meta for meta in current["metas"] if meta["phx_ref"] not in joined_refs]
            if kept:
                joined_metas: builtins.list[Any] = joined["metas"]
                entries[key] = ReadOnlyDict({**joined, "metas": ReadOnlyList(kept + joined_metas)})
            else:
                entries[key] = joined
        changes.append(PresenceJoin(key=key, current=current, joined=joined))

    def _leave(
        self, key: str, left: PresenceEntry, changes: builtins.list[PresenceChange]
    ) -> None:
        # The key loses the metas with `left`'s refs; a key left without metas is deleted. A
        # leave of an absent key is ignored.
        entries = self._entries
        current = entries.get(key)
        if current is None:
            return
        left_refs = {meta["phx_ref"] for meta in left["metas"]}
        metas = current["metas"]
        remaining_metas = [meta for meta in metas if meta["phx_ref"] not in left_refs]
        if len(remaining_metas) == len(metas):
            remaining = current
        else:
            remaining = ReadOnlyDict({**current, "metas": ReadOnlyList(remaining_metas)})
        changes.append(PresenceLeave(key=key, current=remaining, left=left))
        if remaining_metas:
            entries[key] = remaining
        else:
            del entries[key]
            self._indices.pop(key, None)  # deleting a key keeps the order


# --- checking and freezing payloads in one pass -----------------------------------------------
# The fast path checks the shape with cheap tests; whatever fails them is handed to the full
# checks of ._presence, which raise the detailed error.


def _refs(presence: object) -> builtins.list[str] | None:
    """The ``phx_ref`` of each meta of a well-formed presence; ``None`` if malformed."""
    if not isinstance(presence, dict):
        return None
    metas = presence.get("metas")
    if not isinstance(metas, builtins.list):
        return None
    refs = []
    for meta in metas:
        if not isinstance(meta, dict):
            return None
        ref = meta.get("phx_ref")
        if not isinstance(ref, str):
            return None
        refs.append(ref)
    return refs


def _freeze_presence(presence: object) -> PresenceEntry | None:
    """A read-only copy of a well-formed presence; ``None`` if malformed."""
    if not isinstance(presence, dict):
        return None
    metas = presence.get("metas")
    if not isinstance(metas, builtins.list):
        return None
    frozen = []
    for meta in metas:
        if not isinstance(meta, dict) or not isinstance(meta.get("phx_ref"), str):
            return None
        for value in meta.values():
            if isinstance(value, (dict, builtins.list)):
                if _too_deep(meta):
                    return None  # the full check reports it
                frozen.append(freeze(meta))
                break
        else:
            frozen.append(ReadOnlyDict(meta))  # a flat meta (most are): one C-level copy
    frozen_metas = ReadOnlyList(frozen)
    if len(presence) == 1:
        return ReadOnlyDict(metas=frozen_metas)
    if _too_deep(presence):
        raise RemoteProtocolError(f"a presence nests deeper than {MAX_NESTING} levels")
    return ReadOnlyDict(
        {key: frozen_metas if key == "metas" else freeze(value) for key, value in presence.items()}
    )


def _too_deep(value: object) -> bool:
    """Whether ``value`` nests deeper than the bound (``freeze`` recurses: never past it)."""
    try:
        check_nesting(value, MAX_NESTING, "value")
    except RemoteProtocolError:
        return True
    return False


def _freeze_presences(presences: dict[Any, Any]) -> PresenceState | None:
    frozen: PresenceState = {}
    for key, presence in presences.items():
        entry = _freeze_presence(presence)
        if entry is None or not isinstance(key, str):
            return None
        frozen[key] = entry
    return frozen


def _frozen_diff(payload: object) -> tuple[PresenceState, PresenceState]:
    """A ``presence_diff`` payload's joins and leaves, checked and frozen."""
    if isinstance(payload, dict):
        joins = payload.get("joins")
        leaves = payload.get("leaves")
        if isinstance(joins, dict) and isinstance(leaves, dict):
            frozen_joins = _freeze_presences(joins)
            frozen_leaves = _freeze_presences(leaves)
            if frozen_joins is not None and frozen_leaves is not None:
                return frozen_joins, frozen_leaves
    _check_diff(payload)
    raise AssertionError("a malformed presence diff passed the check")  # pragma: no cover
