"""Phoenix Presence, ported from phoenix.js: ``sync_state``, ``sync_diff``, ``list_presences``
and the change values of the sans-IO ``PresenceSync`` view (``_presence_view.py``, which
applies the same rules to read-only entries).

The rules this module keeps:

Rule 1 - same answers as phoenix.js. Each function is a literal port of ``Presence`` in
phoenix.js 1.8 (``assets/js/phoenix/presence.js``): in a diff, joins are applied before leaves;
a joined key's metas become ``[existing metas not re-sent..., joined metas...]``; callbacks get
``(key, current, new_or_left_presence)`` in the same order, with ``None`` where phoenix.js passes
``undefined``. ``phx_ref_prev`` is an ordinary meta field: phoenix.js never reads it, neither do
we. A key that *joins* with an empty ``metas`` list is kept, as in phoenix.js: keys are only
deleted by a leave that empties them. ``tests/proto/test_presence_differential.py`` runs random
sequences through this module and the real phoenix.js and requires identical results.

Rule 2 - JavaScript key order. phoenix.js walks presence keys with
``Object.getOwnPropertyNames``, so its order is JavaScript's own-property order: keys that are
canonical array indices (``"0"``, ``"1"``, ... ``"4294967294"``: ASCII decimal digits, no sign, no
leading zero, at most 2**32 - 2) come first in ascending numeric order, then all other keys in
insertion order (``"01"``, ``"-1"`` and ``"4294967295"`` are "other" keys). That order decides the
order of callbacks, of change values and of ``list_presences`` output. Every walk over presence
keys here goes through :func:`js_keys`, and every state dict this module returns is already in
that order, so a plain ``for key in state`` matches phoenix.js. Keys such as ``__proto__``,
``constructor`` or ``hasOwnProperty`` are ordinary keys (phoenix.js uses prototype-less objects
to get the same).

Rule 3 - the caller's objects are never mutated. phoenix.js mutates inputs in two places
(``syncDiff`` updates ``state`` in place and returns it; ``syncState`` overwrites ``metas`` of the
presences of ``newState`` that gained metas). Here the static functions return new dicts, and
their callbacks get deep copies taken at call time: equal to what a phoenix.js callback sees
when it is called, and safe to keep or modify. ``PresenceSync`` instead hands out its own
entries, which are read-only (``ReadOnlyDict`` / ``ReadOnlyList``): its change values are
equal to the same deep copies, cost nothing, and cannot be modified.

Rule 4 - validate before mutating. Presence payloads come from the server. A malformed one (not
an object, ``metas`` not a list, a meta without a string ``phx_ref``, a diff without ``joins`` /
``leaves``) raises ``RemoteProtocolError`` before anything changes, where phoenix.js would throw
a ``TypeError`` half-way through. ``phx_ref`` must be a string: phoenix.js compares refs with
``===``, and Python's ``1 == 1.0 == True`` must not make two refs equal that JavaScript keeps
apart. A malformed *state argument* of the static functions is the caller's fault: a bad
argument value, so ``ValueError``.

Rule 5 - no I/O, no clocks, no Trio. The Trio layer feeds ``presence_state`` / ``presence_diff``
payloads (under whatever event names it was configured with) and the channel's current join ref
into ``PresenceSync`` and forwards the returned change values to subscribers.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias, TypeVar, overload

import attrs

from ._errors import RemoteProtocolError
from ._limits import MAX_NESTING, check_nesting, is_array_index
from ._readonly import thaw as _clone  # phoenix.js clones with JSON.parse(JSON.stringify())

__all__ = [
    "OnJoin",
    "OnLeave",
    "PresenceChange",
    "PresenceEntry",
    "PresenceJoin",
    "PresenceLeave",
    "PresenceState",
    "PresenceSynced",
    "js_keys",
    "list_presences",
    "sync_diff",
    "sync_state",
]

_T = TypeVar("_T")

#: One key's presence: ``{"metas": [{"phx_ref": ..., ...}, ...], ...extra fields...}``.
PresenceEntry: TypeAlias = dict[str, Any]
#: Presence key -> presence, as in a ``presence_state`` payload.
PresenceState: TypeAlias = dict[str, PresenceEntry]
#: ``on_join(key, current, joined)``; ``current`` is ``None`` for a key not present before.
OnJoin: TypeAlias = Callable[[str, PresenceEntry | None, PresenceEntry], object]
#: ``on_leave(key, current, left)``; ``current`` is the key's presence after the removal.
OnLeave: TypeAlias = Callable[[str, PresenceEntry, PresenceEntry], object]

_MAX_ARRAY_INDEX: Final = 2**32 - 2
#: Default bound of the diffs a ``PresenceSync`` queues while it waits for a state.
MAX_PENDING_DIFFS: Final = 1000
MAX_PENDING_BYTES: Final = 10_000_000
_MISSING: Final = object()
_JSON_TYPE_NAMES: Final[Mapping[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


# --- JavaScript key order ---------------------------------------------------------------------


def _is_array_index(key: str) -> bool:
    # Canonical array index: what ToString(ToUint32(key)) gives back unchanged, below 2**32 - 1.
    return is_array_index(key, _MAX_ARRAY_INDEX)


def js_keys(keys: Iterable[str]) -> builtins.list[str]:
    """Return keys in JavaScript own-property order.

    Canonical array-index keys (``"0"`` ... ``"4294967294"``) first, ascending by value, then
    the other keys in their given (insertion) order. This is the order phoenix.js sees for the
    keys of a presence state, so it is the order of callbacks and of ``list`` output.

    Args:
        keys: the keys in insertion order, e.g. a dict.

    Example:
        >>> js_keys({"b": 1, "10": 2, "a": 3, "2": 4, "01": 5})
        ['2', '10', 'b', 'a', '01']
    """
    indices: builtins.list[str] = []
    others: builtins.list[str] = []
    for key in keys:
        (indices if _is_array_index(key) else others).append(key)
    indices.sort(key=int)
    return indices + others


def _js_ordered(state: PresenceState) -> PresenceState:
    # Same JS order as `state` (non-index keys keep their relative order), but now also the
    # Python iteration order.
    return {key: state[key] for key in js_keys(state)}


# --- validation -------------------------------------------------------------------------------


def _describe(value: object) -> str:
    if value is _MISSING:
        return "nothing"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _check_presences(value: object, what: str, error: type[Exception]) -> PresenceState:
    """Check that ``value`` is presence-state shaped; raise ``error`` naming the bad part."""
    if not isinstance(value, dict):
        raise error(f"{what} must be an object, got {_describe(value)}")
    for key, presence in value.items():
        if not isinstance(key, str):
            raise error(f"{what} has a key that is not a string: {key!r}")
        if not isinstance(presence, dict):
            raise error(f"{what}[{key!r}] must be an object, got {_describe(presence)}")
        metas = presence.get("metas", _MISSING)
        if not isinstance(metas, list):
            raise error(f'{what}[{key!r}]["metas"] must be an array, got {_describe(metas)}')
        for index, meta in enumerate(metas):
            where = f'{what}[{key!r}]["metas"][{index}]'
            if not isinstance(meta, dict):
                raise error(f"{where} must be an object, got {_describe(meta)}")
            ref = meta.get("phx_ref", _MISSING)
            if not isinstance(ref, str):
                raise error(f'{where}["phx_ref"] must be a string, got {_describe(ref)}')
            check_nesting(meta, MAX_NESTING, where, error)
    return value


def _check_diff(value: object) -> tuple[PresenceState, PresenceState]:
    """Check a ``presence_diff`` payload; return its ``(joins, leaves)``."""
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"presence diff must be an object, got {_describe(value)}")
    joins = _check_presences(
        value.get("joins", _MISSING), 'presence diff["joins"]', RemoteProtocolError
    )
    leaves = _check_presences(
        value.get("leaves", _MISSING), 'presence diff["leaves"]', RemoteProtocolError
    )
    return joins, leaves


# --- the algorithms ---------------------------------------------------------------------------


def _apply_diff(
    state: PresenceState,
    joins: Mapping[str, PresenceEntry],
    leaves: Mapping[str, PresenceEntry],
    on_join: OnJoin | None,
    on_leave: OnLeave | None,
) -> None:
    """phoenix.js ``syncDiff`` on a state this module owns (mutated in place).

    Presence dicts already in ``state`` are replaced, never modified, and ``joins`` / ``leaves``
    are only read (joined presences are cloned on insertion), so references held elsewhere stay
    valid. Callbacks get clones.
    """
    for key in js_keys(joins):
        joined = joins[key]
        current = state.get(key)
        merged: PresenceEntry = _clone(joined)
        if current is not None:
            joined_refs = {meta["phx_ref"] for meta in merged["metas"]}
            kept = [meta for meta in current["metas"] if meta["phx_ref"] not in joined_refs]
            merged["metas"] = kept + merged["metas"]
        state[key] = merged
        if on_join is not None:
            on_join(key, None if current is None else _clone(current), _clone(joined))
    for key in js_keys(leaves):
        left = leaves[key]
        current = state.get(key)
        if current is None:
            continue
        left_refs = {meta["phx_ref"] for meta in left["metas"]}
        remaining = {
            **current,
            "metas": [meta for meta in current["metas"] if meta["phx_ref"] not in left_refs],
        }
        state[key] = remaining
        if on_leave is not None:
            on_leave(key, _clone(remaining), _clone(left))
        if not remaining["metas"]:
            del state[key]


def _sync_state(
    state: Mapping[str, PresenceEntry],
    new_state: Mapping[str, PresenceEntry],
    on_join: OnJoin | None,
    on_leave: OnLeave | None,
) -> PresenceState:
    """phoenix.js ``syncState`` on checked input; returns a new state."""
    current: PresenceState = _clone(state)
    joins: PresenceState = {}
    leaves: PresenceState = {}
    # Insertion order of `leaves` matters for non-index keys: vanished keys first, in state
    # order, then keys that lost some metas, in new_state order (as phoenix.js builds it).
    for key in js_keys(current):
        if key not in new_state:
            leaves[key] = current[key]
    for key in js_keys(new_state):
        new_presence = new_state[key]
        current_presence = current.get(key)
        if current_presence is None:
            joins[key] = new_presence
            continue
        new_refs = {meta["phx_ref"] for meta in new_presence["metas"]}
        current_refs = {meta["phx_ref"] for meta in current_presence["metas"]}
        joined = [meta for meta in new_presence["metas"] if meta["phx_ref"] not in current_refs]
        left = [meta for meta in current_presence["metas"] if meta["phx_ref"] not in new_refs]
        if joined:
            # phoenix.js overwrites newPresence.metas in the caller's object; we copy.
            joins[key] = {**new_presence, "metas": joined}
        if left:
            leaves[key] = {**current_presence, "metas": left}
    _apply_diff(current, joins, leaves, on_join, on_leave)
    return current


def sync_state(
    state: Mapping[str, PresenceEntry],
    new_state: Mapping[str, PresenceEntry],
    on_join: OnJoin | None = None,
    on_leave: OnLeave | None = None,
) -> PresenceState:
    """Sync a local presence state with a full state from the server (phoenix.js ``syncState``).

    Keys missing from ``new_state`` leave with all their metas; for keys in both, metas whose
    ``phx_ref`` is new join and metas whose ``phx_ref`` is gone leave; then this is applied as
    a diff (joins first). Neither argument is modified.

    Args:
        state: the current local state (e.g. the previous result; ``{}`` at first).
        new_state: a ``presence_state`` payload.
        on_join: called as ``on_join(key, current, joined)`` for each key that gained metas;
            ``current`` is ``None`` for a new key, ``joined`` holds only the new metas.
        on_leave: called as ``on_leave(key, current, left)`` for each key that lost metas;
            ``current`` is the presence after the removal (``metas`` may be empty).

    Returns:
        The new state, a new dict in JavaScript key order.

    Raises:
        RemoteProtocolError: ``new_state`` is malformed.
        ValueError: ``state`` is malformed.
    """
    current = _check_presences(state, "presence state", ValueError)
    incoming = _check_presences(new_state, "new presence state", RemoteProtocolError)
    return _js_ordered(_sync_state(current, incoming, on_join, on_leave))


def sync_diff(
    state: Mapping[str, PresenceEntry],
    diff: Mapping[str, Any],
    on_join: OnJoin | None = None,
    on_leave: OnLeave | None = None,
) -> PresenceState:
    """Apply a ``presence_diff`` payload to a local state (phoenix.js ``syncDiff``).

    All joins first, in key order: a joined key's metas become its existing metas that the
    join does not re-send, then the joined metas. Then all leaves: metas with the left
    ``phx_ref`` values are removed, and a key left without metas is deleted. A leave for an
    unknown key is ignored (no callback). Unlike phoenix.js, ``state`` is not modified: use the
    returned dict.

    Args:
        state: the current local state.
        diff: ``{"joins": {...}, "leaves": {...}}``.
        on_join: as for :func:`sync_state`; ``joined`` is the diff's presence.
        on_leave: as for :func:`sync_state`; called even if no meta matched.

    Returns:
        The new state, a new dict in JavaScript key order.

    Raises:
        RemoteProtocolError: ``diff`` is malformed.
        ValueError: ``state`` is malformed.
    """
    current = _check_presences(state, "presence state", ValueError)
    joins, leaves = _check_diff(diff)
    result: PresenceState = _clone(current)
    _apply_diff(result, joins, leaves, on_join, on_leave)
    return _js_ordered(result)


@overload
def list_presences(
    state: Mapping[str, PresenceEntry], chooser: None = None
) -> builtins.list[PresenceEntry]: ...
@overload
def list_presences(
    state: Mapping[str, PresenceEntry], chooser: Callable[[str, PresenceEntry], _T]
) -> builtins.list[_T]: ...
def list_presences(
    state: Mapping[str, PresenceEntry],
    chooser: Callable[[str, PresenceEntry], Any] | None = None,
) -> builtins.list[Any]:
    """List a state's presences in JavaScript key order (phoenix.js ``Presence.list``).

    Args:
        state: a presence state.
        chooser: maps ``(key, presence)`` to the list item; by default the presence itself
            (the object in ``state``, not a copy).

    Example:
        >>> list_presences({"b": {"metas": []}, "1": {"metas": []}}, lambda key, p: key)
        ['1', 'b']
    """
    if chooser is None:
        return [state[key] for key in js_keys(state)]
    return [chooser(key, state[key]) for key in js_keys(state)]


# --- the presence view ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PresenceJoin:
    """A key gained metas (phoenix.js ``onJoin``).

    Attributes:
        key: the presence key.
        current: the key's presence before the join, ``None`` if the key was absent.
        joined: the joined presence; its ``metas`` are only the new ones.
    """

    key: str
    current: PresenceEntry | None
    joined: PresenceEntry


@attrs.frozen(kw_only=True)
class PresenceLeave:
    """A key lost metas (phoenix.js ``onLeave``).

    Attributes:
        key: the presence key.
        current: the key's presence after the removal; if its ``metas`` are empty, the key is
            gone from the state.
        left: the left presence, as the server (or the state sync) reported it.
    """

    key: str
    current: PresenceEntry
    left: PresenceEntry


@attrs.frozen(kw_only=True)
class PresenceSynced:
    """The view is in sync with the server again (phoenix.js ``onSync``).

    Emitted last, once per applied ``presence_state`` and once per diff applied outside the
    pending state.
    """


#: What ``PresenceSync.handle_state`` and ``PresenceSync.handle_diff`` return.
PresenceChange: TypeAlias = PresenceJoin | PresenceLeave | PresenceSynced
