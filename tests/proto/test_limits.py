"""The sans-IO guards and bounds (``trio_phoenix.proto._limits``) and where the core uses them:
hostile presence payloads (huge decimal keys, deep nesting, endless pending diffs), frame
sizes on delivered messages, header checks, buffer bounds in items and bytes."""

from __future__ import annotations

import gc
import json
import sys
import weakref
from typing import Any

import pytest

from trio_phoenix.proto import (
    InvalidHeader,
    LocalProtocolError,
    MessageReceived,
    PresenceSync,
    PushTimedOut,
    RemoteProtocolError,
    SocketCore,
    encode_params,
    js_keys,
    sync_state,
)
from trio_phoenix.proto._limits import (
    MAX_NESTING,
    BufferBound,
    check_headers,
    check_nesting,
    is_array_index,
)

HUGE_KEY = "9" * 5000  # int() refuses more than 4,300 digits


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def meta(ref: str, **extra: Any) -> dict[str, Any]:
    return {"phx_ref": ref, **extra}


# -- huge decimal keys -----------------------------------------------------------------------


def test_a_key_of_5000_digits_is_an_ordinary_key() -> None:
    assert sys.get_int_max_str_digits() < 5000  # what made int(key) raise
    assert not is_array_index(HUGE_KEY, 2**32 - 2)
    assert js_keys(["b", HUGE_KEY, "2"]) == ["2", "b", HUGE_KEY]
    view = PresenceSync()
    changes = view.handle_state({HUGE_KEY: {"metas": [meta("a")]}, "1": {"metas": []}}, "1")
    assert [getattr(change, "key", None) for change in changes] == ["1", HUGE_KEY, None]
    assert encode_params({HUGE_KEY: 1, "0": 2}) == f"0=2&{HUGE_KEY}=1"


@pytest.mark.parametrize(
    ("key", "index"),
    [("0", True), ("4294967294", True), ("4294967295", False), ("01", False), ("", False)],
)
def test_array_index_edges(key: str, index: bool) -> None:
    assert is_array_index(key, 2**32 - 2) is index


# -- nesting ---------------------------------------------------------------------------------


def test_check_nesting_counts_lists_and_objects_without_recursion() -> None:
    check_nesting(nested(MAX_NESTING), MAX_NESTING, "x")
    check_nesting({"a": nested(MAX_NESTING - 1)}, MAX_NESTING, "x")
    check_nesting("scalar", 1, "x")
    with pytest.raises(RemoteProtocolError, match="x nests deeper than 100 levels"):
        check_nesting({"a": nested(MAX_NESTING)}, MAX_NESTING, "x")
    with pytest.raises(RemoteProtocolError):
        check_nesting(nested(100_000), MAX_NESTING, "x")  # far past the recursion limit


@pytest.mark.parametrize("depth", [600, 5000])
def test_a_deeply_nested_meta_is_malformed_not_a_crash(depth: int) -> None:
    view = PresenceSync()
    view.handle_state({"u": {"metas": [meta("a")]}}, "1")
    deep = {"u": {"metas": [meta("b", deep=nested(depth))]}}
    with pytest.raises(RemoteProtocolError, match="nests deeper"):
        view.handle_state(deep, "1")
    with pytest.raises(RemoteProtocolError, match="nests deeper"):
        view.handle_diff({"joins": deep, "leaves": {}}, "1")
    assert view.list() == [{"metas": [meta("a")]}]  # nothing changed
    with pytest.raises(ValueError, match="nests deeper"):
        sync_state(deep, {})  # the caller's own state: the caller's fault


def test_nesting_up_to_the_limit_is_kept_intact() -> None:
    view = PresenceSync()
    value = meta("a", deep=nested(MAX_NESTING - 2))
    view.handle_state({"u": {"metas": [value]}}, "1")
    assert view.state == {"u": {"metas": [value]}}


# -- pending presence diffs ------------------------------------------------------------------


def diff(ref: str) -> dict[str, Any]:
    return {"joins": {"u": {"metas": [meta(ref)]}}, "leaves": {}}


def test_pending_diffs_are_bounded_in_count() -> None:
    view = PresenceSync(max_pending_diffs=3)
    for ref in "abc":
        assert view.handle_diff(diff(ref), "1") == []
    with pytest.raises(RemoteProtocolError, match=r"3 diffs \(0 bytes\) already wait"):
        view.handle_diff(diff("d"), "1")
    assert len(view.pending_diffs) == 3
    view.handle_state({}, "1")  # applies them and frees the bound
    assert [m["phx_ref"] for m in view.list()[0]["metas"]] == ["a", "b", "c"]
    for ref in "def":
        assert view.handle_diff(diff(ref), "2") == []
    assert len(view.pending_diffs) == 3


def test_pending_diffs_are_bounded_in_bytes() -> None:
    view = PresenceSync(max_pending_bytes=1000)
    view.handle_diff(diff("a"), "1", size=5000)  # an empty queue takes any one diff
    with pytest.raises(RemoteProtocolError, match=r"1 diffs \(5000 bytes\)"):
        view.handle_diff(diff("b"), "1", size=1)
    view.handle_state({}, "1")
    view.handle_diff(diff("b"), "2", size=600)
    with pytest.raises(RemoteProtocolError):
        view.handle_diff(diff("c"), "2", size=401)
    view.handle_diff(diff("c"), "2", size=400)
    assert len(view.pending_diffs) == 2


def test_a_synced_view_applies_diffs_of_any_size() -> None:
    view = PresenceSync(max_pending_diffs=1, max_pending_bytes=1)
    view.handle_state({}, "1")
    for ref in "abc":
        assert view.handle_diff(diff(ref), "1", size=10**6)


# -- buffer bounds ---------------------------------------------------------------------------


def test_buffer_bound_counts_items_and_bytes() -> None:
    bound = BufferBound(3, 100)
    assert bound.fits(10**9)  # empty: any one item
    bound.add(60)
    assert bound.fits(40)
    assert not bound.fits(41)
    bound.add(40)
    assert bound.fits(0)
    bound.add(0)
    assert not bound.fits(0)  # three items
    bound.remove(60)
    assert (bound.items, bound.bytes) == (2, 40)
    assert bound.fits(60)


@pytest.mark.parametrize(
    ("items", "size", "error", "message"),
    [
        (0, 1, ValueError, "max_buffer must be at least 1"),
        (1, 0, ValueError, "max_buffer_bytes must be at least 1"),
        (1.5, 1, TypeError, "max_buffer must be an int"),
        (1, "1", TypeError, "max_buffer_bytes must be an int"),
    ],
)
def test_buffer_bound_arguments(
    items: Any, size: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        BufferBound(items, size)


def test_delivered_messages_carry_their_frame_size() -> None:
    core = SocketCore()
    core.connection_started(0)
    core.connection_opened(0)
    channel = core.channel("room:1")
    core.join(channel, 0)
    core.data_to_send()
    core.receive('["1","1","room:1","phx_reply",{"status":"ok","response":{}}]', 0)
    core.events()
    frame = '[null,null,"room:1","news",{"body":"' + "x" * 1000 + '"}]'
    core.receive(frame, 0)
    (event,) = core.events()
    assert isinstance(event, MessageReceived)
    assert event.size == len(frame)


# -- headers ---------------------------------------------------------------------------------


def test_good_headers_pass_as_pairs() -> None:
    assert check_headers({"Authorization": "Bearer x", "X-A": "é"}) == [
        ("Authorization", "Bearer x"),
        ("X-A", "é"),
    ]
    assert check_headers([("X-A", "1"), ["X-B", "2"]]) == [("X-A", "1"), ("X-B", "2")]
    assert check_headers(()) == []


SECRET = "s3cr3t-value"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": f"Bearer {SECRET}\r\nX-Evil: 1"}, "'Authorization' contains CR, LF"),
        ({"Authorization": f"{SECRET}\n"}, "contains CR, LF or NUL"),
        ({"Authorization": f"{SECRET}\x00"}, "contains CR, LF or NUL"),
        (
            {"Authorization": f"Bearer {SECRET} ✓"},
            "'Authorization' has characters outside Latin-1",
        ),
        ({"Authorization": 7}, "must be a string, got int"),
        ({"Bad Name": SECRET}, "'Bad Name' is not a valid HTTP header name"),
        ({f"X-{SECRET}\r\n" * 10: "v"}, "a header is not a valid HTTP header name"),
        ({7: SECRET}, "a header is not a valid HTTP header name"),
        ([("X-A", "1", "2")], "sequence of \\(name, value\\) pairs"),
        ("X-A: 1", "sequence of \\(name, value\\) pairs"),
        (7, "sequence of \\(name, value\\) pairs"),
    ],
)
def test_bad_headers_are_refused_without_showing_the_value(headers: Any, message: str) -> None:
    with pytest.raises(InvalidHeader, match=message) as info:
        check_headers(headers)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LocalProtocolError)
    for text in (str(info.value), repr(info.value), repr(info.value.args)):
        assert SECRET not in text


# -- done is released ------------------------------------------------------------------------


class Payload(dict[str, Any]):
    """A JSON object that can be watched with a weak reference."""


def joined_core() -> tuple[SocketCore, Any]:
    core = SocketCore(timeout=60, heartbeat_interval=None)
    core.connection_started(0)
    core.connection_opened(0)
    channel = core.channel("room:1")
    core.join(channel, 0)
    core.data_to_send()
    core.receive('["1","1","room:1","phx_reply",{"status":"ok","response":{}}]', 0)
    core.events()
    return core, channel


@pytest.mark.parametrize("end", ["replied", "cancelled", "failed"])
def test_a_done_push_releases_its_payload_at_once(end: str) -> None:
    core, channel = joined_core()
    refs = []
    for n in range(300):
        payload = Payload(n=n)
        push = core.push(channel, "big", payload, 0)
        refs.append(weakref.ref(payload))
        if end == "replied":
            core.receive(json.dumps(["1", push.ref, "room:1", "phx_reply", {"status": "ok"}]), 1)
        elif end == "cancelled":
            core.cancel_push(push)
        del push, payload
    if end == "failed":
        core.receive('["1",null,"room:1","phx_error",{}]', 1)
    core.events()
    core.data_to_send()
    gc.disable()  # released by reference counting, not by a later collection
    try:
        del channel
        alive = [ref for ref in refs if ref() is not None]
    finally:
        gc.enable()
    assert alive == []
    # The heap is compacted: it does not grow with pushes that are done.
    assert len(core._timers) <= 64 + 3


def test_timers_still_fire_in_order_after_compaction() -> None:
    core, channel = joined_core()
    pushes = [core.push(channel, "e", {}, 0, timeout=float(n)) for n in range(1, 201)]
    for push in pushes[:150]:
        core.cancel_push(push)
    core.events()
    assert core.next_deadline() == 151.0
    core.handle_timers(160.0)
    timed_out = [event.push for event in core.events() if isinstance(event, PushTimedOut)]
    assert timed_out == pushes[150:160]


def test_a_deeply_nested_presence_field_is_malformed_not_a_crash() -> None:
    view = PresenceSync()
    deep = {"u": {"metas": [meta("b")], "extra": nested(600)}}
    with pytest.raises(RemoteProtocolError, match="nests deeper"):
        view.handle_diff({"joins": deep, "leaves": {}}, None)
    assert view.list() == []


def test_freeze_copies_a_flat_dict_read_only() -> None:
    from trio_phoenix.proto._readonly import ReadOnlyDict, freeze

    source = {"a": 1}
    frozen = freeze(source)
    assert isinstance(frozen, ReadOnlyDict)
    assert frozen == source
    assert frozen is not source
