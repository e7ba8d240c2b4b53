"""Reads of the presence view at scale (issue #18), without Node.

``PresenceSync.state`` and ``list()`` hand out the view's own entries instead of deep copies,
so the entries are read-only (``ReadOnlyDict`` / ``ReadOnlyList``, all the way down) and
``state`` is a read-only snapshot that later events do not change. ``get(key)``,
``key in view`` and ``len(view)`` read one key without copying anything. The phoenix.js
semantics of the view are pinned by test_presence_sync.py and test_presence_differential.py.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from trio_phoenix.proto import (
    PresenceEntry,
    PresenceJoin,
    PresenceLeave,
    PresenceSync,
    PresenceSynced,
    ReadOnlyDict,
    ReadOnlyList,
    RemoteProtocolError,
    js_keys,
    list_presences,
    sync_diff,
)


def metas(*refs: str, **fields: Any) -> PresenceEntry:
    return {"metas": [{"phx_ref": ref, **fields} for ref in refs]}


def synced_view(state: dict[str, Any]) -> PresenceSync:
    view = PresenceSync()
    view.handle_state(state, "1")
    return view


# --- read-only values -------------------------------------------------------------------------

DICT_MUTATIONS: list[Callable[[dict[str, Any]], object]] = [
    lambda d: d.__setitem__("x", 1),
    lambda d: d.__delitem__("metas"),
    lambda d: d.clear(),
    lambda d: d.pop("metas"),
    lambda d: d.pop("x", None),
    lambda d: d.popitem(),
    lambda d: d.setdefault("x", 1),
    lambda d: d.update(x=1),
    lambda d: d.__ior__({"x": 1}),
]
LIST_MUTATIONS: list[Callable[[list[Any]], object]] = [
    lambda seq: seq.__setitem__(0, 1),
    lambda seq: seq.__delitem__(0),
    lambda seq: seq.__iadd__([1]),
    lambda seq: seq.__imul__(2),
    lambda seq: seq.append(1),
    lambda seq: seq.extend([1]),
    lambda seq: seq.insert(0, 1),
    lambda seq: seq.pop(),
    lambda seq: seq.remove(seq[0]),
    lambda seq: seq.clear(),
    lambda seq: seq.sort(key=id),
    lambda seq: seq.reverse(),
]


@pytest.mark.parametrize("mutate", DICT_MUTATIONS)
def test_read_only_dict_refuses_every_mutation(mutate: Callable[[dict[str, Any]], object]) -> None:
    entry = ReadOnlyDict({"metas": ReadOnlyList([ReadOnlyDict({"phx_ref": "a"})])})
    with pytest.raises(TypeError, match="read-only"):
        mutate(entry)
    assert entry == metas("a")


@pytest.mark.parametrize("mutate", LIST_MUTATIONS)
def test_read_only_list_refuses_every_mutation(mutate: Callable[[list[Any]], object]) -> None:
    seq = ReadOnlyList([1, 2])
    with pytest.raises(TypeError, match="read-only"):
        mutate(seq)
    assert seq == [1, 2]


def test_read_only_values_behave_as_json_values() -> None:
    view = synced_view({"u": {"metas": [{"phx_ref": "a", "tags": ["x", {"y": [1]}]}], "n": 1}})
    entry = view.get("u")
    assert entry is not None
    assert isinstance(entry, dict)
    assert isinstance(entry["metas"], list)
    assert entry == {"metas": [{"phx_ref": "a", "tags": ["x", {"y": [1]}]}], "n": 1}
    assert json.loads(json.dumps(entry)) == entry
    assert repr(entry) == repr(json.loads(json.dumps(entry)))
    nested = entry["metas"][0]["tags"][1]["y"]
    assert isinstance(nested, ReadOnlyList)
    with pytest.raises(TypeError):
        nested.append(2)
    # Copies are the way to get something to modify: copy, deepcopy, dict(), list(), slices.
    deep = copy.deepcopy(entry)
    assert type(deep) is dict
    assert type(deep["metas"]) is list
    assert type(deep["metas"][0]["tags"][1]) is dict
    deep["metas"][0]["tags"][1]["y"].append(2)
    shallow = copy.copy(entry)
    assert type(shallow) is dict
    shallow["n"] = 2
    assert type(copy.copy(entry["metas"])) is list
    assert type(copy.deepcopy(entry["metas"])[0]) is dict
    assert type(entry["metas"][:]) is list
    assert view.get("u") == {"metas": [{"phx_ref": "a", "tags": ["x", {"y": [1]}]}], "n": 1}
    # Pickling keeps them read-only.
    restored = pickle.loads(pickle.dumps(entry))
    assert restored == entry
    assert type(restored) is ReadOnlyDict
    assert type(restored["metas"]) is ReadOnlyList


# --- the view's reads -------------------------------------------------------------------------


def test_state_list_and_changes_cannot_change_the_view() -> None:
    view = PresenceSync()
    payload = {"u": metas("a")}
    changes = view.handle_state(payload, "1")
    payload["u"]["metas"].clear()
    join = changes[0]
    assert isinstance(join, PresenceJoin)
    with pytest.raises(TypeError):
        join.joined["metas"].append({"phx_ref": "evil"})
    with pytest.raises(TypeError):
        view.state["u"]["metas"].clear()
    with pytest.raises(TypeError):
        view.state["v"] = metas("b")  # type: ignore[index]
    with pytest.raises(TypeError):
        view.list()[0]["metas"].clear()
    with pytest.raises(TypeError):
        view.list(lambda key, presence: presence["metas"].clear())
    listed = view.list()
    listed.clear()  # the list itself is the caller's
    assert view.state == {"u": metas("a")}
    assert view.list() == [metas("a")]


def test_state_is_a_snapshot_and_list_a_new_list() -> None:
    view = synced_view({"u": metas("a")})
    before = view.state
    assert before is view.state  # unchanged view: the same snapshot, no copy
    assert view.list() is not view.list()
    view.handle_diff({"joins": {"v": metas("b")}, "leaves": {"u": metas("a")}}, "1")
    assert before == {"u": metas("a")}
    assert view.state == {"v": metas("b")}
    assert view.state is not before


def test_get_contains_and_len() -> None:
    view = PresenceSync()
    assert len(view) == 0
    assert "u" not in view
    assert view.get("u") is None
    view.handle_state({"u": metas("a"), "7": metas("b")}, "1")
    assert len(view) == 2
    assert "u" in view
    assert "7" in view
    assert 7 not in view
    assert view.get("u") == metas("a")
    assert view.get("u") is view.state["u"]  # the entry itself, not a copy
    assert view.get("x") is None
    view.handle_diff({"joins": {}, "leaves": {"u": metas("a")}}, "1")
    assert len(view) == 1
    assert "u" not in view
    assert view.get("u") is None
    # A queued diff is not applied yet, so it is not visible.
    view.handle_diff({"joins": {"w": metas("c")}, "leaves": {}}, "2")
    assert "w" not in view
    assert len(view) == 1


def test_change_values_share_the_views_entries() -> None:
    view = synced_view({"u": metas("a")})
    [join, _] = view.handle_diff({"joins": {"u": metas("b")}, "leaves": {}}, "1")
    assert isinstance(join, PresenceJoin)
    assert join.current == metas("a")
    assert join.joined == metas("b")
    assert view.get("u") == {"metas": [{"phx_ref": "a"}, {"phx_ref": "b"}]}
    [leave, synced] = view.handle_diff({"joins": {}, "leaves": {"u": metas("a")}}, "1")
    assert leave == PresenceLeave(key="u", current=metas("b"), left=metas("a"))
    assert synced == PresenceSynced()
    assert isinstance(leave, PresenceLeave)
    assert leave.current is view.get("u")


def test_js_order_is_kept_as_index_keys_come_and_go() -> None:
    view = synced_view({"b": metas("1"), "10": metas("2"), "a": metas("3"), "2": metas("4")})
    assert view.list(lambda key, presence: key) == ["2", "10", "b", "a"]
    view.handle_diff(
        {"joins": {"1": metas("5"), "c": metas("6")}, "leaves": {"10": metas("2")}}, "1"
    )
    assert view.list(lambda key, presence: key) == ["1", "2", "b", "a", "c"]
    assert list(view.state) == ["1", "2", "b", "a", "c"]
    view.handle_diff({"joins": {"b": metas("7")}, "leaves": {"1": metas("5")}}, "1")
    assert list(view.state) == ["2", "b", "a", "c"]
    view.handle_diff({"joins": {}, "leaves": {"2": metas("4"), "b": metas("1", "7")}}, "1")
    assert list(view.state) == ["a", "c"]
    assert view.list() == [metas("3"), metas("6")]


KEYS = st.sampled_from(["0", "1", "2", "10", "01", "-1", "a", "b", "__proto__"])
REFS = st.sampled_from(["r1", "r2", "r3"])
PRESENCES = st.fixed_dictionaries(
    {"metas": st.lists(st.fixed_dictionaries({"phx_ref": REFS}), max_size=2)}
)
STATES = st.dictionaries(KEYS, PRESENCES, max_size=5)
DIFFS = st.fixed_dictionaries({"joins": STATES, "leaves": STATES})


@settings(max_examples=100)
@given(STATES, st.lists(DIFFS, max_size=6))
def test_reads_agree_with_the_static_functions(
    state: dict[str, Any], diffs: list[dict[str, Any]]
) -> None:
    view = synced_view(state)
    model = dict(view.state)
    for diff in diffs:
        view.handle_diff(diff, "1")
        model = sync_diff(model, diff)
        assert view.state == model
        assert list(view.state) == js_keys(model)
        assert view.list() == list_presences(model)
        assert len(view) == len(model)
        for key in ["0", "1", "a", "zz"]:
            assert (key in view) == (key in model)
            assert view.get(key) == model.get(key)


# --- malformed payloads: checked while they are frozen, rejected whole ------------------------

MALFORMED_PRESENCES: list[Any] = [
    "x",
    {},
    {"metas": {}},
    {"metas": [3]},
    {"metas": [{}]},
    {"metas": [{"phx_ref": "a"}, {"phx_ref": 1}]},
]


@pytest.mark.parametrize("presence", MALFORMED_PRESENCES)
@pytest.mark.parametrize("key", ["u", "new"], ids=["held-key", "new-key"])
def test_a_malformed_presence_anywhere_changes_nothing(presence: Any, key: str) -> None:
    view = synced_view({"u": metas("a"), "v": metas("b", extra=[1])})
    before = view.state
    handle_state, handle_diff = view.handle_state, view.handle_diff
    payloads = [
        (handle_state, {"v": metas("c"), key: presence}),
        (handle_state, {key: presence, "w": metas("d")}),
        (handle_diff, {"joins": {"w": metas("d"), key: presence}, "leaves": {}}),
        (handle_diff, {"joins": {"w": metas("d")}, "leaves": {"v": metas("b"), key: presence}}),
    ]
    for handle, payload in payloads:
        with pytest.raises(RemoteProtocolError, match=r"must be an? (object|array|string)"):
            handle(payload, "1")
        assert view.state is before
        assert view.list() == [metas("a"), metas("b", extra=[1])]


def test_a_key_that_is_not_a_string_changes_nothing() -> None:
    view = synced_view({"u": metas("a")})
    with pytest.raises(RemoteProtocolError, match="key that is not a string: 1"):
        view.handle_state({"u": metas("a"), 1: metas("b")}, "1")
    with pytest.raises(RemoteProtocolError, match="key that is not a string: 1"):
        view.handle_diff({"joins": {1: metas("b")}, "leaves": {}}, "1")
    assert view.state == {"u": metas("a")}
