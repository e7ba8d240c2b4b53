"""Presence at lobby scale: trio_phoenix's presence view against phoenix.js's ``Presence``.

Both sides get the same workload (a JSON file written here: a ``presence_state`` of N keys and
diffs that each join one new key and make one present key leave, so the view keeps N keys)
and do the same operations; phoenix.js runs in one long-lived Node process
(``benchmarks/presence.mjs``, phoenix from ``tests/js/node_modules``). For each size and run,
every operation is measured once on each side, back to back, alternating which side goes
first; ratio = trio_phoenix / phoenix.js, the median of the per-run ratios.

trio_phoenix is measured through ``Presence``, the client's view, fed the ``Message`` values
the socket's reader hands it (on a stand-in channel with no subscribers, as the phoenix.js
view has no callbacks). Payloads are parsed before timing on both sides.
"""

from __future__ import annotations

import json
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import attrs

from trio_phoenix._presence import Presence
from trio_phoenix.proto import Message

from ._report import Row

_ROOT: Final = Path(__file__).resolve().parent.parent
_SCRIPT: Final = _ROOT / "benchmarks" / "presence.mjs"
_PHOENIX: Final = _ROOT / "tests" / "js" / "node_modules" / "phoenix" / "package.json"
_STRIDE: Final = 7919  # a prime: visits the keys scattered, each once per pass
_TOPIC: Final = "room:lobby"


@attrs.frozen(kw_only=True)
class PresenceConfig:
    """Sizes and repetitions of the presence rows."""

    sizes: tuple[int, ...]
    runs: int
    diffs: int
    #: list() calls per run: about ``list_budget / keys``, at least 5.
    list_budget: int
    lookups: int
    #: len() calls per run on the phoenix.js side (it is O(keys) there).
    len_budget: int

    @classmethod
    def full(cls) -> PresenceConfig:
        return cls(
            sizes=(1_000, 10_000, 50_000),
            runs=5,
            diffs=2_000,
            list_budget=1_000_000,
            lookups=100_000,
            len_budget=2_000_000,
        )

    @classmethod
    def quick(cls) -> PresenceConfig:
        return cls(
            sizes=(1_000, 10_000),
            runs=1,
            diffs=500,
            list_budget=100_000,
            lookups=20_000,
            len_budget=200_000,
        )


# --- the workload -----------------------------------------------------------------------------


def _presence(index: int, ref: int) -> dict[str, Any]:
    # What Phoenix.Presence sends for a tracked device: its phx_ref and the tracked metadata.
    meta = {"phx_ref": f"F{ref:015x}", "online_at": 1_764_000_000_000 + index, "kind": "sensor"}
    return {"metas": [meta]}


def workload(keys: int, diffs: int, integer_keys: bool = False) -> dict[str, Any]:
    """A state of ``keys`` keys and ``diffs`` diffs: diff j joins key ``keys + j`` and makes
    key j leave. Keys are ``"device:<i>"``, or ``"<i>"`` (array indices to JavaScript, kept
    in numeric order: numeric user ids)."""

    def key(index: int) -> str:
        return str(index) if integer_keys else f"device:{index}"

    state = {key(index): _presence(index, index) for index in range(keys)}
    changes = [
        {
            "joins": {key(keys + j): _presence(keys + j, keys + j)},
            "leaves": {key(j): _presence(j, j)},
        }
        for j in range(diffs)
    ]
    return {"state": state, "diffs": changes}


# --- trio_phoenix's side ----------------------------------------------------------------------


@attrs.define
class _StubCore:
    close_reason: str | None = None


@attrs.define
class _StubChannel:
    """What ``Presence`` reads of its channel."""

    join_ref: str | None = "1"
    topic: str = _TOPIC
    _core: _StubCore = attrs.Factory(_StubCore)


def _message(event: str, payload: Any) -> Message:
    return Message(join_ref="1", ref=None, topic=_TOPIC, event=event, payload=payload)


def _synced(data: dict[str, Any]) -> tuple[_StubChannel, Presence]:
    channel = _StubChannel()
    presence = Presence(channel, "presence_state", "presence_diff")  # type: ignore[arg-type]
    presence._handle(_message("presence_state", data["state"]))
    return channel, presence


def _lookup_keys(data: dict[str, Any], count: int, scattered: bool) -> list[str]:
    # One key (the middle one) again and again: the cost of the operation itself. Or every key
    # in a scattered order: what a hash table costs once it outgrows the CPU caches.
    keys = list(data["state"])
    if not scattered:
        return [keys[len(keys) // 2]] * count
    return [keys[(index * _STRIDE) % len(keys)] for index in range(count)]


def _py_diff(text: str, count: int) -> float:
    data = json.loads(text)
    _, presence = _synced(data)
    messages = [_message("presence_diff", diff) for diff in data["diffs"][:count]]
    handle = presence._handle
    start = time.perf_counter()
    for message in messages:
        handle(message)
    return time.perf_counter() - start


def _py_list(text: str, count: int) -> float:
    data = json.loads(text)
    _, presence = _synced(data)
    total = 0.0
    for diff in data["diffs"][:count]:
        presence._handle(_message("presence_diff", diff))
        start = time.perf_counter()
        presence.list()
        total += time.perf_counter() - start
    return total


def _py_sync(text: str, count: int) -> float:
    message = _message("presence_state", json.loads(text)["state"])
    presence = Presence(_StubChannel(), "presence_state", "presence_diff")  # type: ignore[arg-type]
    start = time.perf_counter()
    presence._handle(message)
    return time.perf_counter() - start


def _py_resync(text: str, count: int) -> float:
    channel, presence = _synced(json.loads(text))
    message = _message("presence_state", json.loads(text)["state"])
    channel.join_ref = "2"
    start = time.perf_counter()
    presence._handle(message)
    return time.perf_counter() - start


def _py_get(text: str, count: int, scattered: bool = False) -> float:
    data = json.loads(text)
    _, presence = _synced(data)
    keys = _lookup_keys(data, count, scattered)
    found = 0
    start = time.perf_counter()
    for key in keys:
        if presence.get(key) is not None:
            found += 1
    return time.perf_counter() - start


def _py_scan(text: str, count: int) -> float:
    return _py_get(text, count, scattered=True)


def _py_in(text: str, count: int) -> float:
    data = json.loads(text)
    _, presence = _synced(data)
    keys = _lookup_keys(data, count, scattered=False)
    found = 0
    start = time.perf_counter()
    for key in keys:
        if key in presence:
            found += 1
    return time.perf_counter() - start


def _dict_scan(text: str, count: int) -> float:
    # A plain dict with the view's entries, read the same scattered way: the reference for
    # what the memory hierarchy adds at a size.
    data = json.loads(text)
    _, presence = _synced(data)
    entries = dict(presence.state)
    keys = _lookup_keys(data, count, scattered=True)
    found = 0
    start = time.perf_counter()
    for key in keys:
        if entries.get(key) is not None:
            found += 1
    return time.perf_counter() - start


def _py_len(text: str, count: int) -> float:
    _, presence = _synced(json.loads(text))
    total = 0
    start = time.perf_counter()
    for _ in range(count):
        total += len(presence)
    return time.perf_counter() - start


_PY_OPS: Final[dict[str, Callable[[str, int], float]]] = {
    "diff": _py_diff,
    "list": _py_list,
    "sync": _py_sync,
    "resync": _py_resync,
    "get": _py_get,
    "in": _py_in,
    "len": _py_len,
    "scan": _py_scan,
}


# --- phoenix.js's side ------------------------------------------------------------------------


class _Node:
    """The long-lived Node process running ``presence.mjs``."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None or not _PHOENIX.is_file():
            raise RuntimeError(
                "the presence rows need Node.js and phoenix.js: run `npm ci` in tests/js"
            )
        self._process = subprocess.Popen(
            [node, str(_SCRIPT)],
            cwd=_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = self._read()
        self.versions = f"phoenix.js {hello['phoenix']} on Node {hello['node']}"

    def run(self, op: str, path: Path, count: int) -> float:
        assert self._process.stdin is not None
        request = {"op": op, "workload": str(path), "count": count}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        seconds: float = self._read()["seconds"]
        return seconds

    def _read(self) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], 600)
        line = stdout.readline() if ready else ""
        if not line:
            raise RuntimeError("benchmarks/presence.mjs died or hung")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def _node() -> Iterator[_Node]:
    node = _Node()
    try:
        yield node
    finally:
        node.close()


# --- the rows ---------------------------------------------------------------------------------

#: op -> (label, unit, seconds -> unit factor, target ratio at the largest size).
_OPS: Final[dict[str, tuple[str, str, float, float | None]]] = {
    "diff": ("apply one diff", "us", 1e6, 1.0),
    "list": ("list()", "ms", 1e3, 1.0),
    "sync": ("sync a presence_state (join)", "ms", 1e3, 1.2),
    "resync": ("sync a presence_state (rejoin)", "ms", 1e3, 1.2),
    "get": ("get(key)", "ns", 1e9, None),
    "in": ("key in presence", "ns", 1e9, None),
    "len": ("len(presence)", "ns", 1e9, None),
    "scan": ("get(key), keys scattered", "ns", 1e9, None),
}
_NOTES: Final = {
    "get": "one key again and again; phoenix.js: presence.state[key]",
    "in": "one key again and again; phoenix.js: key in presence.state",
    "len": "phoenix.js has no count: Object.keys(presence.state).length, O(keys)",
    "scan": "every key in a scattered order; phoenix.js: presence.state[key]",
}
_LOOKUPS: Final = ("get", "in", "len", "scan")


def _counts(config: PresenceConfig, keys: int) -> dict[str, tuple[int, int]]:
    """op -> (trio_phoenix count, phoenix.js count) per run."""
    lists = max(5, config.list_budget // keys)
    lens = max(10, config.len_budget // keys)
    return {
        "diff": (config.diffs, config.diffs),
        "list": (lists, lists),
        "sync": (1, 1),
        "resync": (1, 1),
        "get": (config.lookups, config.lookups),
        "in": (config.lookups, config.lookups),
        "len": (config.lookups, lens),
        "scan": (config.lookups, config.lookups),
    }


def _measure(
    node: _Node, config: PresenceConfig, path: Path, text: str, ops: tuple[str, ...], keys: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call seconds of each op, trio_phoenix's and phoenix.js's, one of each per run."""
    counts = _counts(config, keys)
    # Warm-up (imports, the JIT), not measured.
    _PY_OPS["diff"](text, 50)
    node.run("diff", path, 50)
    ours: dict[str, list[float]] = {op: [] for op in ops}
    theirs: dict[str, list[float]] = {op: [] for op in ops}
    for run in range(config.runs):
        print(f"  presence {path.stem}: run {run + 1}", file=sys.stderr, flush=True)
        for op in ops:
            py_count, js_count = counts[op]
            if run % 2 == 0:
                ours[op].append(_PY_OPS[op](text, py_count) / py_count)
                theirs[op].append(node.run(op, path, js_count) / js_count)
            else:
                theirs[op].append(node.run(op, path, js_count) / js_count)
                ours[op].append(_PY_OPS[op](text, py_count) / py_count)
    return ours, theirs


def presence(config: PresenceConfig) -> tuple[str, list[Row]]:
    """Measure every presence row; return a summary line and the rows."""
    rows: list[Row] = []
    per_call: dict[tuple[str, int], list[float]] = {}
    references: dict[int, list[float]] = {}
    smallest, largest = min(config.sizes), max(config.sizes)
    # Every size with "device:<i>" keys, then the largest with integer keys (main ops only).
    cases = [(keys, False) for keys in config.sizes] + [(largest, True)]
    with tempfile.TemporaryDirectory() as tmp, _node() as node:
        for keys, integer_keys in cases:
            lists = _counts(config, keys)["list"][0]
            data = workload(keys, max(config.diffs, lists), integer_keys)
            path = Path(tmp) / f"{keys}-{'integer-keys' if integer_keys else 'keys'}.json"
            text = json.dumps(data)
            path.write_text(text, encoding="utf-8")
            ops = tuple(op for op in _OPS if not (integer_keys and op in _LOOKUPS))
            if not integer_keys:
                references[keys] = [
                    _dict_scan(text, config.lookups) / config.lookups for _ in range(config.runs)
                ]
            ours, theirs = _measure(node, config, path, text, ops, keys)
            for op in ops:
                label, unit, factor, target = _OPS[op]
                if not integer_keys:
                    per_call[op, keys] = ours[op]
                note = _NOTES.get(op, "") if keys == smallest and not integer_keys else ""
                if integer_keys and op == "diff":
                    note = 'keys "0", "1", ...: JavaScript orders them numerically'
                rows.append(
                    Row(
                        name=f"{keys:,} {'integer keys' if integer_keys else 'keys'}: {label}",
                        unit=unit,
                        phoenix=tuple(value * factor for value in ours[op]),
                        raw=tuple(value * factor for value in theirs[op]),
                        higher_is_better=False,
                        target=target if keys == largest else None,
                        note=note,
                    )
                )
        versions = node.versions
    growth = [
        f"{op} {_median(per_call[op, largest]) / _median(per_call[op, smallest]):.2f}x"
        for op in _LOOKUPS
    ]
    plain = _median(references[largest]) / _median(references[smallest])
    summary = (
        f"{versions}\ntrio_phoenix at {largest:,} keys / at {smallest:,} keys: "
        f"{', '.join(growth)} (a plain dict.get, keys scattered: {plain:.2f}x)"
    )
    return summary, rows


def _median(values: list[float]) -> float:
    return statistics.median(values)
