"""Tests of the presence port (trio_phoenix.proto._presence), without Node.

Part 1 ports every case of phoenix.js ``assets/test/presence_test.js`` (protocol.md §12.3;
custom event names belong to the Trio layer). Part 2 pins the JavaScript key order and the
quirks phoenix.js has and we keep. Part 3 is property tests (Hypothesis), part 4 malformed
payloads. tests/proto/test_presence_differential.py compares with the real phoenix.js.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_phoenix.proto._errors import RemoteProtocolError
from trio_phoenix.proto._presence import (
    OnJoin,
    OnLeave,
    PresenceChange,
    PresenceEntry,
    PresenceJoin,
    PresenceLeave,
    PresenceState,
    PresenceSynced,
    js_keys,
    list_presences,
    sync_diff,
    sync_state,
)
from trio_phoenix.proto._presence_view import PresenceSync

Call = tuple[Any, ...]


def recorder() -> tuple[list[Call], OnJoin, OnLeave]:
    """Callbacks recording ``("join"|"leave", key, current, presence)`` in call order."""
    calls: list[Call] = []

    def on_join(key: str, current: PresenceEntry | None, joined: PresenceEntry) -> None:
        calls.append(("join", key, current, joined))

    def on_leave(key: str, current: PresenceEntry, left: PresenceEntry) -> None:
        calls.append(("leave", key, current, left))

    return calls, on_join, on_leave


def metas(*refs: str, **fields: Any) -> PresenceEntry:
    return {"metas": [{"phx_ref": ref, **fields} for ref in refs]}


def fixture_state() -> PresenceState:
    return {
        "u1": {"metas": [{"id": 1, "phx_ref": "1"}]},
        "u2": {"metas": [{"id": 2, "phx_ref": "2"}]},
        "u3": {"metas": [{"id": 3, "phx_ref": "3"}]},
    }


def fixture_joins() -> PresenceState:
    return {"u1": {"metas": [{"id": 1, "phx_ref": "1.2"}]}}


def fixture_leaves() -> PresenceState:
    return {"u2": {"metas": [{"id": 2, "phx_ref": "2"}]}}


def first_meta(key: str, presence: PresenceEntry) -> Any:
    return presence["metas"][0]


# --- Part 1: presence_test.js -----------------------------------------------------------------


def test_sync_state_syncs_empty_state() -> None:
    new_state = {"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}
    state: PresenceState = {}
    new_before = copy.deepcopy(new_state)
    result = sync_state(state, new_state)
    assert state == {}
    assert new_state == new_before
    assert result == new_state
    assert result is not new_state
    assert result["u1"] is not new_state["u1"]


def test_sync_state_on_join_new_presences_and_on_leave_left_presences() -> None:
    state = {"u4": {"metas": [{"id": 4, "phx_ref": "4"}]}}
    state_before = copy.deepcopy(state)
    calls, on_join, on_leave = recorder()
    result = sync_state(state, fixture_state(), on_join, on_leave)
    assert state == state_before
    assert result == fixture_state()
    assert calls == [
        ("join", "u1", None, {"metas": [{"id": 1, "phx_ref": "1"}]}),
        ("join", "u2", None, {"metas": [{"id": 2, "phx_ref": "2"}]}),
        ("join", "u3", None, {"metas": [{"id": 3, "phx_ref": "3"}]}),
        ("leave", "u4", {"metas": []}, {"metas": [{"id": 4, "phx_ref": "4"}]}),
    ]


def test_sync_state_on_join_only_newly_added_metas() -> None:
    new_state = {"u3": {"metas": [{"id": 3, "phx_ref": "3"}, {"id": 3, "phx_ref": "3.new"}]}}
    new_before = copy.deepcopy(new_state)
    state = {"u3": {"metas": [{"id": 3, "phx_ref": "3"}]}}
    calls, on_join, on_leave = recorder()
    result = sync_state(state, new_state, on_join, on_leave)
    assert result == new_state
    assert calls == [
        (
            "join",
            "u3",
            {"metas": [{"id": 3, "phx_ref": "3"}]},
            {"metas": [{"id": 3, "phx_ref": "3.new"}]},
        )
    ]
    # phoenix.js overwrites new_state["u3"]["metas"] with the joined metas; we do not.
    assert new_state == new_before


def test_sync_diff_syncs_empty_state() -> None:
    joins = {"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}
    state: PresenceState = {}
    result = sync_diff(state, {"joins": joins, "leaves": {}})
    assert state == {}
    assert result == joins


def test_sync_diff_removes_presence_when_meta_is_empty_and_adds_additional_meta() -> None:
    state = fixture_state()
    calls, on_join, on_leave = recorder()
    result = sync_diff(
        state, {"joins": fixture_joins(), "leaves": fixture_leaves()}, on_join, on_leave
    )
    assert result == {
        "u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]},
        "u3": {"metas": [{"id": 3, "phx_ref": "3"}]},
    }
    assert state == fixture_state()
    assert calls == [
        ("join", "u1", {"metas": [{"id": 1, "phx_ref": "1"}]}, fixture_joins()["u1"]),
        ("leave", "u2", {"metas": []}, fixture_leaves()["u2"]),
    ]


def test_sync_diff_removes_meta_while_leaving_key_if_other_metas_exist() -> None:
    state = {"u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]}}
    result = sync_diff(
        state, {"joins": {}, "leaves": {"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}}
    )
    assert result == {"u1": {"metas": [{"id": 1, "phx_ref": "1.2"}]}}


PROTO_KEYS = ("__proto__", "constructor", "hasOwnProperty")


def test_sync_state_with_prototype_keys() -> None:
    calls, on_join, on_leave = recorder()
    state = sync_state({}, {key: metas(f"{key}.1") for key in PROTO_KEYS}, on_join, on_leave)
    assert type(state) is dict
    assert list(state) == list(PROTO_KEYS)
    assert [call[:2] for call in calls] == [("join", key) for key in PROTO_KEYS]

    calls.clear()
    new_state = {"__proto__": metas("__proto__.1", "__proto__.2"), "hasOwnProperty": metas("h.2")}
    state = sync_state(state, new_state, on_join, on_leave)
    assert calls == [
        ("join", "__proto__", metas("__proto__.1"), metas("__proto__.2")),
        ("join", "hasOwnProperty", metas("hasOwnProperty.1"), metas("h.2")),
        ("leave", "constructor", {"metas": []}, metas("constructor.1")),
        ("leave", "hasOwnProperty", metas("h.2"), metas("hasOwnProperty.1")),
    ]
    assert state == new_state
    assert list_presences(state, lambda key, presence: key) == ["__proto__", "hasOwnProperty"]


def test_sync_diff_with_prototype_keys() -> None:
    calls, on_join, on_leave = recorder()
    diff = {"joins": {key: metas(f"{key}.1") for key in PROTO_KEYS}, "leaves": {}}
    state = sync_diff({}, diff, on_join, on_leave)
    assert list(state) == list(PROTO_KEYS)
    assert [call[:3] for call in calls] == [("join", key, None) for key in PROTO_KEYS]

    calls.clear()
    leaves = {"constructor": metas("constructor.1"), "__proto__": metas("nope")}
    state = sync_diff(state, {"joins": {}, "leaves": leaves}, on_join, on_leave)
    assert calls == [
        ("leave", "constructor", {"metas": []}, metas("constructor.1")),
        ("leave", "__proto__", metas("__proto__.1"), metas("nope")),
    ]
    assert list_presences(state) == [metas("__proto__.1"), metas("hasOwnProperty.1")]


def test_list_full_presences_by_default() -> None:
    assert list_presences(fixture_state()) == [
        {"metas": [{"id": 1, "phx_ref": "1"}]},
        {"metas": [{"id": 2, "phx_ref": "2"}]},
        {"metas": [{"id": 3, "phx_ref": "3"}]},
    ]


def test_list_with_custom_function() -> None:
    state = {"u1": {"metas": [{"id": 1, "phx_ref": "1.first"}, {"id": 1, "phx_ref": "1.second"}]}}
    assert list_presences(state, first_meta) == [{"id": 1, "phx_ref": "1.first"}]


def test_instance_syncs_state_and_diffs() -> None:
    view = PresenceSync()
    user1 = {"metas": [{"id": 1, "phx_ref": "1"}]}
    user2 = {"metas": [{"id": 2, "phx_ref": "2"}]}
    view.handle_state({"u1": user1, "u2": user2}, "1")
    assert view.list(first_meta) == [{"id": 1, "phx_ref": "1"}, {"id": 2, "phx_ref": "2"}]
    changes = view.handle_diff({"joins": {}, "leaves": {"u1": user1}}, "1")
    assert changes == [
        PresenceLeave(key="u1", current={"metas": []}, left=user1),
        PresenceSynced(),
    ]
    assert view.list(first_meta) == [{"id": 2, "phx_ref": "2"}]


def test_instance_applies_pending_diff_if_state_is_not_yet_synced() -> None:
    view = PresenceSync()
    user1 = {"metas": [{"id": 1, "phx_ref": "1"}]}
    user2 = {"metas": [{"id": 2, "phx_ref": "2"}]}
    user3 = {"metas": [{"id": 3, "phx_ref": "3"}]}

    # New connection: the diff arrives before the state and is queued.
    assert view.in_pending_sync_state("1")
    assert view.handle_diff({"joins": {}, "leaves": {"u2": user2}}, "1") == []
    assert view.list(first_meta) == []
    assert view.pending_diffs == [{"joins": {}, "leaves": {"u2": user2}}]

    changes = view.handle_state({"u1": user1, "u2": user2}, "1")
    assert changes == [
        PresenceJoin(key="u1", current=None, joined=user1),
        PresenceJoin(key="u2", current=None, joined=user2),
        PresenceLeave(key="u2", current={"metas": []}, left=user2),
        PresenceSynced(),
    ]
    assert view.list(first_meta) == [{"id": 1, "phx_ref": "1"}]
    assert view.pending_diffs == []
    assert view.join_ref == "1"

    # Disconnect and rejoin: the channel now has join ref "2", so the view is pending again.
    assert not view.in_pending_sync_state("1")
    assert view.in_pending_sync_state("2")
    assert view.handle_diff({"joins": {}, "leaves": {"u1": user1}}, "2") == []
    assert view.list(first_meta) == [{"id": 1, "phx_ref": "1"}]

    changes = view.handle_state({"u1": user1, "u3": user3}, "2")
    assert changes == [
        PresenceJoin(key="u3", current=None, joined=user3),
        PresenceLeave(key="u1", current={"metas": []}, left=user1),
        PresenceSynced(),
    ]
    assert view.list(first_meta) == [{"id": 3, "phx_ref": "3"}]
    assert view.join_ref == "2"


def test_instance_updates_existing_meta_for_a_presence_update() -> None:
    view = PresenceSync()
    user1 = {"metas": [{"id": 1, "phx_ref": "1"}]}
    user2 = {"metas": [{"id": 2, "name": "chris", "phx_ref": "2"}]}
    view.handle_state({"u1": user1, "u2": user2}, "1")
    assert view.list(lambda key, presence: presence["metas"]) == [user1["metas"], user2["metas"]]

    new_meta = {"id": 2, "name": "chris.2", "phx_ref": "2.2", "phx_ref_prev": "2"}
    joins = {"u2": {"metas": [new_meta]}}
    changes = view.handle_diff({"joins": joins, "leaves": {"u2": user2}}, "1")
    assert view.list(lambda key, presence: presence["metas"]) == [user1["metas"], [new_meta]]
    assert changes == [
        PresenceJoin(key="u2", current=user2, joined={"metas": [new_meta]}),
        PresenceLeave(key="u2", current={"metas": [new_meta]}, left=user2),
        PresenceSynced(),
    ]


# --- Part 2: key order and kept quirks --------------------------------------------------------


def test_js_keys_orders_array_indices_first() -> None:
    keys = ["b", "4294967295", "4294967294", "10", "2", "01", "-1", "__proto__", "a", "0", "1.5"]
    assert js_keys(keys) == [
        "0",
        "2",
        "10",
        "4294967294",
        "b",
        "4294967295",
        "01",
        "-1",
        "__proto__",
        "a",
        "1.5",
    ]


NOT_INDICES = ["+1", " 1", "1 ", "1_0", "\u0661", "\u00b2", "", "00", "1e3", "0x1"]


@pytest.mark.parametrize("key", NOT_INDICES)
def test_js_keys_only_canonical_decimal_indices_are_indices(key: str) -> None:
    assert js_keys(["z", key]) == ["z", key]


def test_callbacks_and_results_follow_js_order() -> None:
    calls, on_join, on_leave = recorder()
    state = sync_state({"b": metas("b"), "3": metas("3")}, {"z": metas("z"), "10": metas("10")})
    assert list(state) == ["10", "z"]
    state = sync_diff(
        {"b": metas("b"), "3": metas("3")},
        {
            "joins": {"z": metas("z"), "10": metas("10")},
            "leaves": {"b": metas("b"), "3": metas("3")},
        },
        on_join,
        on_leave,
    )
    assert [call[:2] for call in calls] == [
        ("join", "10"),
        ("join", "z"),
        ("leave", "3"),
        ("leave", "b"),
    ]
    assert list(state) == ["10", "z"]
    assert list_presences(state, lambda key, presence: key) == ["10", "z"]


def test_sync_state_leaves_vanished_keys_before_partially_left_keys() -> None:
    # phoenix.js builds `leaves` from the old state's vanished keys first, then from keys of the
    # new state that lost metas, and iterates it in JS order.
    old = {"p": metas("p1", "p2"), "v": metas("v1"), "5": metas("5")}
    new = {"p": metas("p1")}
    calls, on_join, on_leave = recorder()
    sync_state(old, new, on_join, on_leave)
    assert [call[:2] for call in calls] == [("leave", "5"), ("leave", "v"), ("leave", "p")]


def test_sync_state_keeps_existing_metas_first_and_extra_fields_of_the_join() -> None:
    old = {"u": {"x": 1, "metas": [{"phx_ref": "a"}, {"phx_ref": "b"}]}}
    new = {"u": {"y": 2, "metas": [{"phx_ref": "c"}, {"phx_ref": "a"}]}}
    calls, on_join, on_leave = recorder()
    state = sync_state(old, new, on_join, on_leave)
    assert state == {"u": {"y": 2, "metas": [{"phx_ref": "a"}, {"phx_ref": "c"}]}}
    assert calls == [
        ("join", "u", old["u"], {"y": 2, "metas": [{"phx_ref": "c"}]}),
        ("leave", "u", state["u"], {"x": 1, "metas": [{"phx_ref": "b"}]}),
    ]


def test_sync_state_ignores_changed_extra_fields_when_metas_are_unchanged() -> None:
    old = {"u": {"x": 1, "metas": [{"phx_ref": "a"}]}}
    calls, on_join, on_leave = recorder()
    assert sync_state(old, {"u": {"x": 2, "metas": [{"phx_ref": "a"}]}}, on_join, on_leave) == old
    assert calls == []


def test_empty_metas_join_keeps_the_key() -> None:
    state = sync_diff({}, {"joins": {"u": {"metas": []}}, "leaves": {}})
    assert state == {"u": {"metas": []}}
    assert sync_state({}, {"u": {"metas": []}}) == {"u": {"metas": []}}


def test_sync_diff_leave_of_unknown_key_has_no_callback() -> None:
    calls, on_join, on_leave = recorder()
    assert sync_diff({}, {"joins": {}, "leaves": {"u": metas("a")}}, on_join, on_leave) == {}
    assert calls == []


def test_sync_diff_on_leave_is_called_even_if_no_meta_matched() -> None:
    calls, _, on_leave = recorder()
    state = sync_diff(
        {"u": metas("a")}, {"joins": {}, "leaves": {"u": metas("b")}}, None, on_leave
    )
    assert state == {"u": metas("a")}
    assert calls == [("leave", "u", metas("a"), metas("b"))]


def test_sync_diff_join_re_sending_a_meta_replaces_it_in_place_of_the_join() -> None:
    state = {"u": {"metas": [{"phx_ref": "a", "v": 1}, {"phx_ref": "b"}]}}
    joins = {"u": {"metas": [{"phx_ref": "a", "v": 2}]}}
    calls, on_join, _ = recorder()
    result = sync_diff(state, {"joins": joins, "leaves": {}}, on_join)
    assert result == {"u": {"metas": [{"phx_ref": "b"}, {"phx_ref": "a", "v": 2}]}}
    assert calls == [("join", "u", state["u"], joins["u"])]


def test_phx_ref_prev_is_an_ordinary_meta_field() -> None:
    state = {"u": metas("old")}
    update = {
        "joins": {"u": {"metas": [{"phx_ref": "new", "phx_ref_prev": "old"}]}},
        "leaves": {},
    }
    assert sync_diff(state, update) == {
        "u": {"metas": [{"phx_ref": "old"}, {"phx_ref": "new", "phx_ref_prev": "old"}]}
    }


def test_changes_are_independent_of_payloads_and_cannot_change_the_view() -> None:
    view = PresenceSync()
    payload = {"u": metas("a")}
    changes = view.handle_state(payload, "1")
    join = changes[0]
    assert isinstance(join, PresenceJoin)
    with pytest.raises(TypeError):
        join.joined["metas"].append({"phx_ref": "evil"})
    payload["u"]["metas"].clear()
    with pytest.raises(TypeError):
        view.state["u"]["metas"].clear()
    with pytest.raises(TypeError):
        view.list()[0]["metas"].clear()
    with pytest.raises(TypeError):
        view.list(lambda key, presence: presence["metas"].clear())
    assert view.state == {"u": metas("a")}
    assert join.joined == metas("a")

    diff: dict[str, Any] = {"joins": {"v": metas("b")}, "leaves": {}}
    assert view.handle_diff(diff, "2") == []
    diff["joins"]["v"]["metas"].clear()
    view.pending_diffs[0]["joins"].clear()
    changes = view.handle_state({"u": metas("a")}, "2")
    assert changes == [PresenceJoin(key="v", current=None, joined=metas("b")), PresenceSynced()]


def test_state_with_null_join_ref_keeps_diffs_pending() -> None:
    # phoenix.js sets joinRef from channel.joinRef() even if that is null; a falsy joinRef
    # means "pending" forever, until a state arrives with a join ref.
    view = PresenceSync()
    view.handle_state({}, None)
    assert view.handle_diff({"joins": {"u": metas("a")}, "leaves": {}}, None) == []
    view.handle_state({}, "")
    assert view.in_pending_sync_state("")
    assert len(view.pending_diffs) == 0
    assert view.handle_diff({"joins": {"u": metas("a")}, "leaves": {}}, "") == []
    assert view.handle_state({}, "3")[-1] == PresenceSynced()
    assert view.state == {"u": metas("a")}
    assert view.handle_diff({"joins": {}, "leaves": {"u": metas("a")}}, "3") == [
        PresenceLeave(key="u", current={"metas": []}, left=metas("a")),
        PresenceSynced(),
    ]


def test_change_values_are_frozen_and_comparable() -> None:
    join = PresenceJoin(key="u", current=None, joined=metas("a"))
    with pytest.raises(AttributeError):
        join.key = "v"  # type: ignore[misc]
    assert join == PresenceJoin(key="u", current=None, joined=metas("a"))
    assert PresenceSynced() == PresenceSynced()
    assert "PresenceLeave(key='u'" in repr(PresenceLeave(key="u", current=metas(), left=metas()))


# --- Part 3: properties -----------------------------------------------------------------------

KEYS = st.sampled_from(
    ["0", "1", "2", "10", "01", "-1", "4294967295", "a", "b", "u1", "__proto__", "constructor"]
)
REFS = st.sampled_from(["r1", "r2", "r3", "r4", "r5", "r6"])
METAS = st.fixed_dictionaries(
    {"phx_ref": REFS, "n": st.integers(0, 2)}, optional={"phx_ref_prev": REFS}
)
PRESENCES = st.fixed_dictionaries(
    {"metas": st.lists(METAS, max_size=3)}, optional={"extra": st.integers(0, 2)}
)
STATES = st.dictionaries(KEYS, PRESENCES, max_size=6)
DIFFS = st.fixed_dictionaries({"joins": STATES, "leaves": STATES})


@st.composite
def unique_ref_states(draw: st.DrawFn) -> tuple[PresenceState, PresenceState]:
    """Two states as a server sends them: every phx_ref unique, every key with a meta."""
    keys = draw(st.lists(KEYS, unique=True, max_size=6))
    refs = iter(range(1000))
    old: PresenceState = {}
    new: PresenceState = {}
    for key in keys:
        shared = [{"phx_ref": f"s{next(refs)}"} for _ in range(draw(st.integers(0, 2)))]
        only_old = [{"phx_ref": f"o{next(refs)}"} for _ in range(draw(st.integers(0, 2)))]
        only_new = [{"phx_ref": f"n{next(refs)}"} for _ in range(draw(st.integers(0, 2)))]
        old_metas = draw(st.permutations(shared + only_old))
        new_metas = draw(st.permutations(shared + only_new))
        in_old: bool = draw(st.booleans())
        in_new: bool = draw(st.booleans())
        if old_metas and in_old:
            old[key] = {"metas": old_metas}
        if new_metas and in_new:
            new[key] = {"metas": new_metas}
    return old, new


def refs_of(presence: PresenceEntry) -> list[str]:
    return [meta["phx_ref"] for meta in presence["metas"]]


@given(unique_ref_states())
def test_sync_state_result_holds_the_new_metas_existing_first(
    states: tuple[PresenceState, PresenceState],
) -> None:
    old, new = states
    result = sync_state(old, new)
    assert set(result) == set(new)
    for key, presence in result.items():
        new_refs = refs_of(new[key])
        old_refs = refs_of(old[key]) if key in old else []
        kept = [ref for ref in old_refs if ref in new_refs]
        assert refs_of(presence) == kept + [ref for ref in new_refs if ref not in kept]


@given(unique_ref_states())
def test_sync_state_twice_is_a_no_op(states: tuple[PresenceState, PresenceState]) -> None:
    old, new = states
    result = sync_state(old, new)
    calls, on_join, on_leave = recorder()
    assert sync_state(result, new, on_join, on_leave) == result
    assert calls == []


def replay(state: PresenceState, calls: list[Call]) -> PresenceState:
    """Rebuild a state from recorded callbacks, as a subscriber to the changes would."""
    state = copy.deepcopy(state)
    for kind, key, current, presence in calls:
        if kind == "join":
            refs = set(refs_of(presence))
            before = [] if current is None else current["metas"]
            kept = [meta for meta in before if meta["phx_ref"] not in refs]
            state[key] = {**presence, "metas": kept + presence["metas"]}
        elif current["metas"]:
            state[key] = current
        else:
            del state[key]
    return state


@given(STATES, STATES, DIFFS)
def test_callbacks_describe_the_change_exactly(
    state: PresenceState, new_state: PresenceState, diff: dict[str, PresenceState]
) -> None:
    calls, on_join, on_leave = recorder()
    synced = sync_state(state, new_state, on_join, on_leave)
    assert replay(state, calls) == synced
    calls.clear()
    result = sync_diff(synced, diff, on_join, on_leave)
    assert replay(synced, calls) == result


@given(STATES, STATES, DIFFS)
def test_inputs_are_never_mutated(
    state: PresenceState, new_state: PresenceState, diff: dict[str, PresenceState]
) -> None:
    before = copy.deepcopy((state, new_state, diff))
    sync_state(state, new_state, *recorder()[1:])
    sync_diff(state, diff, *recorder()[1:])
    list_presences(state)
    assert (state, new_state, diff) == before


INDEX_LIKE = st.sampled_from(["0", "00", "-0", "4294967294", "4294967295", "1e1", "+1"])


@given(st.lists(st.text(max_size=4) | st.integers(0, 2**33).map(str) | INDEX_LIKE, unique=True))
def test_js_keys_matches_the_array_index_definition(keys: list[str]) -> None:
    def is_index(key: str) -> bool:
        return re.fullmatch(r"0|[1-9][0-9]*", key) is not None and int(key) <= 2**32 - 2

    ordered = js_keys(keys)
    indices = [key for key in keys if is_index(key)]
    assert ordered == sorted(indices, key=int) + [key for key in keys if not is_index(key)]


@given(STATES)
def test_results_iterate_in_js_order(state: PresenceState) -> None:
    result = sync_state({}, state)
    assert list(result) == js_keys(state)
    assert list(sync_diff({}, {"joins": state, "leaves": {}})) == js_keys(state)


@settings(max_examples=50, stateful_step_count=20)
class PresenceSyncMachine(RuleBasedStateMachine):
    """PresenceSync against a model built from the static functions and the queue rule."""

    def __init__(self) -> None:
        super().__init__()
        self.view = PresenceSync()
        self.state: PresenceState = {}
        self.pending: list[dict[str, PresenceState]] = []
        self.synced_ref: str | None = None
        self.channel_ref: str | None = "1"

    @rule(ref=st.sampled_from(["1", "2", "3", None]))
    def rejoin(self, ref: str | None) -> None:
        self.channel_ref = ref

    @rule(payload=STATES)
    def state_event(self, payload: PresenceState) -> None:
        calls, on_join, on_leave = recorder()
        expected = sync_state(self.state, payload, on_join, on_leave)
        for diff in self.pending:
            expected = sync_diff(expected, diff, on_join, on_leave)
        changes = self.view.handle_state(payload, self.channel_ref)
        assert changes == [*map(as_change, calls), PresenceSynced()]
        self.state, self.pending, self.synced_ref = expected, [], self.channel_ref

    @precondition(lambda self: not self.synced_ref or self.synced_ref != self.channel_ref)
    @rule(diff=DIFFS)
    def queued_diff_event(self, diff: dict[str, PresenceState]) -> None:
        assert self.view.handle_diff(diff, self.channel_ref) == []
        self.pending.append(diff)

    @precondition(lambda self: bool(self.synced_ref) and self.synced_ref == self.channel_ref)
    @rule(diff=DIFFS)
    def diff_event(self, diff: dict[str, PresenceState]) -> None:
        calls, on_join, on_leave = recorder()
        self.state = sync_diff(self.state, diff, on_join, on_leave)
        changes = self.view.handle_diff(diff, self.channel_ref)
        assert changes == [*map(as_change, calls), PresenceSynced()]

    @invariant()
    def view_matches_model(self) -> None:
        assert self.view.state == self.state
        assert list(self.view.state) == list(self.state)
        assert self.view.list() == list_presences(self.state)
        assert self.view.pending_diffs == self.pending
        assert self.view.join_ref == self.synced_ref


def as_change(call: Call) -> PresenceChange:
    kind, key, current, presence = call
    if kind == "join":
        return PresenceJoin(key=key, current=current, joined=presence)
    return PresenceLeave(key=key, current=current, left=presence)


TestPresenceSyncMachine = PresenceSyncMachine.TestCase


# --- Part 4: malformed payloads ---------------------------------------------------------------

BAD_STATES: list[tuple[Any, str]] = [
    ([], r"presence state must be an object, got an array"),
    (None, r"presence state must be an object, got null"),
    ({1: metas("a")}, r"presence state has a key that is not a string: 1"),
    ({"u": "x"}, r"presence state\['u'\] must be an object, got a string"),
    ({"u": {}}, r"""presence state\['u'\]\["metas"\] must be an array, got nothing"""),
    ({"u": {"metas": {}}}, r"""\["metas"\] must be an array, got an object"""),
    ({"u": {"metas": [3]}}, r"""\['u'\]\["metas"\]\[0\] must be an object, got a number"""),
    ({"u": {"metas": [{}]}}, r"""\["metas"\]\[0\]\["phx_ref"\] must be a string, got nothing"""),
    (
        {"u": {"metas": [{"phx_ref": "a"}, {"phx_ref": 1}]}},
        r"""\["metas"\]\[1\]\["phx_ref"\] must be a string, got a number""",
    ),
    ({"u": {"metas": [{"phx_ref": True}]}}, r"must be a string, got a boolean"),
    ({"u": {"metas": [{"phx_ref": 1.0}]}}, r"must be a string, got a number"),
    ({"u": {"metas": [{"phx_ref": ("a",)}]}}, r"must be a string, got tuple"),
]

BAD_DIFFS: list[tuple[Any, str]] = [
    ("diff", r"presence diff must be an object, got a string"),
    ({"joins": {}}, r"""presence diff\["leaves"\] must be an object, got nothing"""),
    ({"leaves": {}}, r"""presence diff\["joins"\] must be an object, got nothing"""),
    ({"joins": [], "leaves": {}}, r"""presence diff\["joins"\] must be an object, got an array"""),
    (
        {"joins": {"u": metas("a")}, "leaves": {"u": {"metas": None}}},
        r"""presence diff\["leaves"\]\['u'\]\["metas"\] must be an array, got null""",
    ),
    (
        {"joins": {"u": {"metas": [{"phx_ref": None}]}}, "leaves": {}},
        r"""presence diff\["joins"\]\['u'\]\["metas"\]\[0\]\["phx_ref"\]""",
    ),
]


def synced_view() -> PresenceSync:
    view = PresenceSync()
    view.handle_state({"u": metas("a"), "v": metas("b")}, "1")
    view.handle_diff({"joins": {"w": metas("c")}, "leaves": {}}, "2")
    return view


def snapshot(view: PresenceSync) -> tuple[Any, ...]:
    return view.state, view.pending_diffs, view.join_ref


@pytest.mark.parametrize(("payload", "message"), BAD_STATES)
def test_malformed_state_is_rejected_without_changes(payload: Any, message: str) -> None:
    view = synced_view()
    before = snapshot(view)
    with pytest.raises(RemoteProtocolError, match=message):
        view.handle_state(payload, "2")
    assert snapshot(view) == before
    with pytest.raises(RemoteProtocolError, match=message.replace("presence state", "new.*")):
        sync_state({}, payload)
    with pytest.raises(ValueError, match=message):
        sync_state(payload, {})
    with pytest.raises(ValueError, match=message):
        sync_diff(payload, {"joins": {}, "leaves": {}})


@pytest.mark.parametrize(("payload", "message"), BAD_DIFFS)
@pytest.mark.parametrize("channel_join_ref", ["1", "2"], ids=["synced", "pending"])
def test_malformed_diff_is_rejected_without_changes(
    payload: Any, message: str, channel_join_ref: str
) -> None:
    view = synced_view()
    before = snapshot(view)
    with pytest.raises(RemoteProtocolError, match=message):
        view.handle_diff(payload, channel_join_ref)
    assert snapshot(view) == before
    with pytest.raises(RemoteProtocolError, match=message):
        sync_diff({}, payload)


def test_malformed_payload_errors_are_protocol_errors() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        PresenceSync().handle_state([], "1")
    assert copy.copy(info.value).args == info.value.args
