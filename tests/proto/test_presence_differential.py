"""Differential tests: our presence port against the real phoenix.js ``Presence``.

Hypothesis generates sequences of ``presence_state`` / ``presence_diff`` payloads, with rejoins
(the channel's join ref changes), presence updates (leave of the old meta + join of the new one
with ``phx_ref_prev``, in one diff) and keys chosen to exercise JavaScript key order
(``"1"``, ``"10"``, ``"2"``, ``"01"``, ``"4294967295"``, ``__proto__``, ``constructor``). Each
sequence runs through ``PresenceSync`` here and through a phoenix.js ``Presence`` on a fake
channel in one long-running Node process (``tests/js/presence_oracle.mjs``); state, ``list()``
output and the callback sequence must be identical after every step.

Node and ``tests/js/node_modules`` are required: the test command installs them, so their
absence fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import random
import select
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import pytest
from hypothesis import given, settings, strategies as st

from tests.helpers import JS_DIR
from trio_phoenix.proto._presence import (
    OnJoin,
    OnLeave,
    PresenceChange,
    PresenceEntry,
    PresenceJoin,
    PresenceLeave,
    PresenceSynced,
    sync_diff,
    sync_state,
)
from trio_phoenix.proto._presence_view import PresenceSync
from trio_phoenix.proto._readonly import thaw

pytestmark = pytest.mark.node

ORACLE_SCRIPT = "presence_oracle.mjs"
PHOENIX_PACKAGE = JS_DIR / "node_modules" / "phoenix" / "package.json"
#: Seconds to wait for one answer from Node before declaring the oracle hung.
ANSWER_TIMEOUT = 30.0


def missing_prerequisite() -> str | None:
    """Say what is missing to run phoenix.js, or ``None`` if nothing is."""
    if shutil.which("node") is None:
        return "`node` is not on PATH: install Node.js to run the phoenix.js differential tests"
    if not PHOENIX_PACKAGE.is_file():
        return (
            f"{PHOENIX_PACKAGE.parent} is missing: run `npm ci` in {JS_DIR} "
            "(`make test` does it) to install phoenix.js"
        )
    return None


class Oracle:
    """A Node process running presence cases through phoenix.js, one JSON line each way."""

    def __init__(self, stderr: IO[bytes]) -> None:
        self._stderr = stderr
        self._process = subprocess.Popen(
            ["node", ORACLE_SCRIPT],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )
        hello = self._read()
        assert hello.get("ready") is True, hello
        self.phoenix_version: str = hello["phoenix"]

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        """Send one case, return phoenix.js's answer."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(case) + "\n")
        self._process.stdin.flush()
        answer = self._read()
        assert "error" not in answer, f"phoenix.js threw: {answer['error']}"
        return answer

    def _read(self) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], ANSWER_TIMEOUT)
        line = stdout.readline() if ready else ""
        if not line:
            self._process.kill()
            self._process.wait()
            pytest.fail(f"the presence oracle died or hung; its stderr:\n{self._stderr_text()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def close(self) -> None:
        """Close stdin (the script then exits) and reap the process."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        finally:
            self._process.kill()
            self._process.wait()
            self._process.stdout.close()


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    problem = missing_prerequisite()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with tempfile.TemporaryFile() as stderr:
        oracle = Oracle(stderr)
        try:
            yield oracle
        finally:
            oracle.close()


def test_node_and_phoenix_js_are_installed() -> None:
    problem = missing_prerequisite()
    assert problem is None, problem


def test_oracle_runs_the_pinned_phoenix_js(oracle: Oracle) -> None:
    package = json.loads((JS_DIR / "package.json").read_text(encoding="utf-8"))
    assert oracle.phoenix_version == package["dependencies"]["phoenix"]


# --- strategies -------------------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "1",
        "10",
        "2",
        "0",
        "01",
        "-1",
        "4294967294",
        "4294967295",
        "a",
        "b",
        "u1",
        "__proto__",
        "constructor",
        "hasOwnProperty",
        "toString",
    ]
)
# A small pool, so refs collide: across keys, across states, even inside one metas list.
REFS = st.sampled_from(["r1", "r2", "r3", "r4", "r5"])
JOIN_REFS = st.sampled_from(["1", "2", "3", None, ""])
METAS = st.fixed_dictionaries(
    {"phx_ref": REFS, "n": st.integers(0, 2)}, optional={"phx_ref_prev": REFS}
)
PRESENCES = st.fixed_dictionaries(
    {"metas": st.lists(METAS, max_size=3)}, optional={"extra": st.integers(0, 2)}
)
STATES = st.dictionaries(KEYS, PRESENCES, max_size=5)


@st.composite
def updates(draw: st.DrawFn) -> dict[str, Any]:
    """A ``Presence.update`` diff: leave of the old meta, join of the new one, same key."""
    key = draw(KEYS)
    old = draw(REFS)
    new = draw(REFS.filter(lambda ref: ref != old))
    n = draw(st.integers(0, 2))
    return {
        "joins": {key: {"metas": [{"phx_ref": new, "phx_ref_prev": old, "n": n}]}},
        "leaves": {key: {"metas": [{"phx_ref": old, "n": n - 1}]}},
    }


DIFFS = st.one_of(st.fixed_dictionaries({"joins": STATES, "leaves": STATES}), updates())


# Diffs are the most common event; a rejoin changes the channel's join ref.
OP_KINDS = ["state", "diff", "diff", "diff", "rejoin"]


@st.composite
def op_sequences(draw: st.DrawFn) -> list[dict[str, Any]]:
    """State and diff events as a channel delivers them, with its join ref at that moment."""
    join_ref = draw(st.sampled_from(["1", "1", None]))
    ops: list[dict[str, Any]] = []
    kinds = draw(
        st.lists(st.sampled_from(["state", "diff", "diff", "diff", "rejoin"]), max_size=12)
    )
    for kind in kinds:
        if kind == "rejoin":
            join_ref = draw(JOIN_REFS)
            continue
        payload = draw(STATES if kind == "state" else DIFFS)
        ops.append({"op": kind, "payload": payload, "join_ref": join_ref})
    return ops


# --- our side, in the oracle's answer format --------------------------------------------------


def as_call(change: PresenceChange) -> list[Any]:
    match change:
        case PresenceJoin(key=key, current=current, joined=joined):
            return ["join", key, current, joined]
        case PresenceLeave(key=key, current=current, left=left):
            return ["leave", key, current, left]
        case PresenceSynced():
            return ["sync"]


def run_instance(ops: list[dict[str, Any]]) -> dict[str, Any]:
    view = PresenceSync()
    steps = []
    for op in ops:
        if op["op"] == "state":
            changes = view.handle_state(op["payload"], op["join_ref"])
        else:
            changes = view.handle_diff(op["payload"], op["join_ref"])
        steps.append(
            {
                "calls": [as_call(change) for change in changes],
                "state": [[key, presence] for key, presence in view.state.items()],
                "list": view.list(),
                "keys": view.list(lambda key, presence: key),
                "pending": len(view.pending_diffs),
                "join_ref": view.join_ref,
            }
        )
    return {"steps": steps}


def recorder() -> tuple[list[list[Any]], OnJoin, OnLeave]:
    calls: list[list[Any]] = []

    def on_join(key: str, current: PresenceEntry | None, joined: PresenceEntry) -> None:
        calls.append(["join", key, current, joined])

    def on_leave(key: str, current: PresenceEntry, left: PresenceEntry) -> None:
        calls.append(["leave", key, current, left])

    return calls, on_join, on_leave


# --- the differential tests -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(op_sequences())
def test_presence_instance_matches_phoenix_js(oracle: Oracle, ops: list[dict[str, Any]]) -> None:
    expected = oracle.run({"kind": "instance", "ops": ops})
    assert run_instance(ops) == expected


@settings(max_examples=200, deadline=None)
@given(STATES, STATES)
def test_sync_state_matches_phoenix_js(
    oracle: Oracle, state: dict[str, Any], new_state: dict[str, Any]
) -> None:
    expected = oracle.run({"kind": "sync_state", "state": state, "new_state": new_state})
    calls, on_join, on_leave = recorder()
    result = sync_state(state, new_state, on_join, on_leave)
    assert {"calls": calls, "state": [list(item) for item in result.items()]} == expected


@settings(max_examples=200, deadline=None)
@given(STATES, DIFFS)
def test_sync_diff_matches_phoenix_js(
    oracle: Oracle, state: dict[str, Any], diff: dict[str, Any]
) -> None:
    expected = oracle.run({"kind": "sync_diff", "state": state, "diff": diff})
    calls, on_join, on_leave = recorder()
    result = sync_diff(state, diff, on_join, on_leave)
    assert {"calls": calls, "state": [list(item) for item in result.items()]} == expected


def test_protocol_md_examples_match_phoenix_js(oracle: Oracle) -> None:
    # The rejoin scenario of presence_test.js, run through both, as a readable anchor.
    user1 = {"metas": [{"id": 1, "phx_ref": "1"}]}
    user2 = {"metas": [{"id": 2, "phx_ref": "2"}]}
    user3 = {"metas": [{"id": 3, "phx_ref": "3"}]}
    ops = [
        {"op": "diff", "payload": {"joins": {}, "leaves": {"u2": user2}}, "join_ref": "1"},
        {"op": "state", "payload": {"u1": user1, "u2": user2}, "join_ref": "1"},
        {"op": "diff", "payload": {"joins": {}, "leaves": {"u1": user1}}, "join_ref": "2"},
        {"op": "state", "payload": {"u1": user1, "u3": user3}, "join_ref": "2"},
    ]
    ours = run_instance(ops)
    assert ours == oracle.run({"kind": "instance", "ops": ops})
    assert ours["steps"][-1]["list"] == [user3]


def test_a_larger_view_matches_phoenix_js(oracle: Oracle) -> None:
    # The generated histories above hold a handful of keys; this one holds hundreds, half of
    # them array indices, so the view's kept JavaScript order (and its sorted-index cache) is
    # exercised as keys come, go, come back and are re-synced after a rejoin.
    rng = random.Random(18)
    keys = [str(n) for n in rng.sample(range(100_000), 150)] + [f"user:{n}" for n in range(150)]
    refs = iter(range(1_000_000))

    def presence() -> dict[str, Any]:
        return {"metas": [{"phx_ref": f"r{next(refs)}"} for _ in range(rng.randint(1, 2))]}

    # A view of our own only picks realistic leaves (metas that are present); the oracle
    # judges the outcome.
    model = PresenceSync()
    ops: list[dict[str, Any]] = []

    def deliver(op: str, payload: Any, join_ref: str) -> None:
        ops.append({"op": op, "payload": payload, "join_ref": join_ref})
        (model.handle_state if op == "state" else model.handle_diff)(payload, join_ref)

    deliver("state", {key: presence() for key in rng.sample(keys, 200)}, "1")
    join_ref = "1"
    for step in range(60):
        if step == 40:
            join_ref = "2"  # a rejoin: this diff is queued until the new join's state
        present = list(model.state)
        leaves = {
            key: {"metas": thaw(model.state[key]["metas"][:1])}
            for key in rng.sample(present, min(len(present), rng.randint(0, 4)))
        }
        joins = {key: presence() for key in rng.sample(keys, rng.randint(0, 4))}
        deliver("diff", {"joins": joins, "leaves": leaves}, join_ref)
        if step == 40:
            kept = {key: thaw(value) for key, value in model.state.items() if rng.random() < 0.9}
            deliver("state", {**kept, **{key: presence() for key in rng.sample(keys, 20)}}, "2")
    ours = run_instance(ops)
    assert ours == oracle.run({"kind": "instance", "ops": ops})
    assert len(ours["steps"][-1]["keys"]) > 100
