"""SocketCore's pushes and what it routes: replies, timeouts, buffering, drops, serializers,
statistics.

The helpers and the conventions are in ``tests/proto/core_helpers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.proto.core_helpers import (
    SERVER,
    TOPIC,
    connect,
    connected_core,
    done,
    frame,
    join_ok,
    msg,
    reply,
    sent,
    state,
    stats,
)
from trio_phoenix.proto import (
    ChannelClosed,
    ChannelEnded,
    ChannelJoined,
    ChannelState,
    EncodeError,
    FrameDropped,
    LocalProtocolError,
    MessageReceived,
    PhoenixError,
    PushFailed,
    PushKind,
    PushReplied,
    PushTimedOut,
    RemoteProtocolError,
    SocketClosed,
    SocketCore,
    SocketState,
    SocketStatistics,
    V1JSONSerializer,
)

# -- routing and drops -----------------------------------------------------------------------


def test_stale_join_ref_is_dropped_null_and_empty_pass() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.receive(frame("99", None, TOPIC, "news", {"a": 1}), 1)
    core.receive(frame(None, None, TOPIC, "news", {"a": 2}), 1)
    core.receive(frame("", None, TOPIC, "news", {"a": 3}), 1)
    core.receive(frame("1", None, TOPIC, "news", {"a": 4}), 1)
    core.receive(bytes([0, 0, 6, 4]) + b"room:1news\x07", 1)  # binary push, join_ref ""
    assert core.events() == [
        FrameDropped("stale_join_ref", msg("99", None, TOPIC, "news", {"a": 1})),
        MessageReceived(channel, msg(None, None, TOPIC, "news", {"a": 2})),
        MessageReceived(channel, msg("", None, TOPIC, "news", {"a": 3})),
        MessageReceived(channel, msg("1", None, TOPIC, "news", {"a": 4})),
        MessageReceived(channel, msg("", None, TOPIC, "news", b"\x07")),
    ]
    assert stats(core).dropped_messages == 1
    assert stats(core).frames_received == 6


def test_replies_for_unknown_refs_and_other_topics_are_dropped() -> None:
    core = connected_core()
    a = join_ok(core, "room:a")
    b = join_ok(core, "room:b")
    push = core.push(a, "ask", {}, 0)
    (frame_a,) = sent(core)
    assert frame_a == msg("1", "3", "room:a", "ask", {})
    # Same ref on the wrong topic, an unknown ref, a null ref.
    core.receive(reply("2", "3", "room:b"), 1)
    core.receive(reply("1", "77", "room:a"), 1)
    core.receive(reply("1", None, "room:a"), 1)
    events = core.events()
    assert [e.reason for e in events if isinstance(e, FrameDropped)] == ["unknown_ref"] * 3
    assert len(events) == 3
    assert stats(core).pending_replies == 1
    core.receive(reply("1", "3", "room:a", response={"answer": 42}), 2)
    assert core.events() == [PushReplied(push, "ok", {"answer": 42})]
    assert state(b) is ChannelState.JOINED


@pytest.mark.parametrize(
    "raw",
    ["not json", "[1,2]", '{"a":1}', b"\x09", b"", '["1","1",5,"e",{}]'],
)
def test_malformed_frames_are_dropped(raw: str | bytes) -> None:
    core = connected_core()
    channel = join_ok(core)
    core.receive(raw, 1)
    (event,) = core.events()
    assert isinstance(event, FrameDropped)
    assert event.reason == "malformed"
    assert event.message is None
    assert isinstance(event.error, RemoteProtocolError)
    assert stats(core).malformed_frames == 1
    assert stats(core).dropped_messages == 0
    # The socket keeps working.
    core.receive(frame(None, None, TOPIC, "ok", {}), 1)
    assert core.events() == [MessageReceived(channel, msg(None, None, TOPIC, "ok", {}))]


def test_unknown_topic_is_dropped() -> None:
    core = connected_core()
    core.receive(frame(None, None, "room:zzz", "news", {}), 0)
    assert core.events() == [
        FrameDropped("unknown_topic", msg(None, None, "room:zzz", "news", {}))
    ]
    assert stats(core).dropped_messages == 1


@pytest.mark.parametrize(
    "payload",
    [{"response": {}}, {"status": 1, "response": {}}, ["ok"], "ok", None, {"status": None}],
)
def test_reply_without_a_string_status_is_dropped(payload: Any) -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "ask", {}, 0)
    core.receive(frame("1", "2", TOPIC, "phx_reply", payload), 1)
    assert core.events() == [FrameDropped("bad_reply", msg("1", "2", TOPIC, "phx_reply", payload))]
    assert stats(core).pending_replies == 1
    assert not done(push)


def test_reply_with_custom_status_and_no_response() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "ask", {}, 0)
    core.receive(frame("1", "2", TOPIC, "phx_reply", {"status": "accepted"}), 1)
    assert core.events() == [PushReplied(push, "accepted", None)]


def test_server_messages_are_delivered_in_any_live_state() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    core.receive(frame(None, None, TOPIC, "early", {}), 0)
    assert core.events() == [MessageReceived(channel, msg(None, None, TOPIC, "early", {}))]


# -- pushes ----------------------------------------------------------------------------------


def test_push_while_joined() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "new_msg", {"body": "hi"}, 0)
    assert push.kind is PushKind.USER
    assert push.ref == "2"
    assert not done(push)
    assert repr(push) == "<trio_phoenix.proto.Push push 'new_msg' on 'room:1' ref=2>"
    assert sent(core) == [msg("1", "2", TOPIC, "new_msg", {"body": "hi"})]
    assert stats(core).pending_replies == 1
    assert core.next_deadline() == 10
    core.receive(reply("1", "2", status="error", response={"reason": "nope"}), 1)
    assert core.events() == [PushReplied(push, "error", {"reason": "nope"})]
    assert done(push)
    assert stats(core).pending_replies == 0
    assert core.next_deadline() is None


def test_push_timeout() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "ask", {}, 0, timeout=2.5)
    sent(core)
    core.handle_timers(2.4)
    assert core.events() == []
    core.handle_timers(2.5)
    assert core.events() == [PushTimedOut(push)]
    assert done(push)
    assert stats(core).pending_replies == 0
    core.receive(reply("1", "2"), 3)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_ref"]


def test_push_timeouts_default_to_the_channel_timeout() -> None:
    core = connected_core(timeout=7.0)
    channel = join_ok(core, timeout=4.0)
    core.push(channel, "a", {}, 0)
    assert core.next_deadline() == 4.0
    sent(core)
    no_timeout = join_ok(core, "room:2", timeout=None)
    core.push(no_timeout, "b", {}, 0)
    core.push(channel, "c", {}, 0, timeout=None)
    core.push(channel, "d", {}, 0, timeout=0)
    core.handle_timers(0)
    assert [type(e) for e in core.events()] == [PushTimedOut]
    core.handle_timers(4)
    assert [type(e) for e in core.events()] == [PushTimedOut]
    core.handle_timers(1e9)
    assert core.events() == []
    assert stats(core).pending_replies == 2


def test_pushes_are_buffered_while_joining_and_sent_in_order_after_join() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {})]
    first = core.push(channel, "a", {"n": 1}, 0)
    second = core.push(channel, "b", {"n": 2}, 0)
    assert first.ref is None
    assert core.data_to_send() == []
    assert stats(core).buffered_pushes == 2
    assert stats(core).pending_replies == 1  # the join
    core.receive(reply("1", "1"), 1)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert sent(core) == [msg("1", "2", TOPIC, "a", {"n": 1}), msg("1", "3", TOPIC, "b", {"n": 2})]
    assert [p.ref for p in (first, second)] == ["2", "3"]
    assert stats(core).buffered_pushes == 0
    assert stats(core).pending_replies == 2
    core.receive(reply("1", "3"), 2)
    core.receive(reply("1", "2"), 2)
    assert core.events() == [PushReplied(second, "ok", {}), PushReplied(first, "ok", {})]


def test_buffered_push_keeps_its_deadline() -> None:
    # Documented deviation: phoenix.js restarts the timeout when a buffered push is sent.
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    push = core.push(channel, "a", {}, 0, timeout=8)
    core.receive(reply("1", "1"), 5)
    core.events()
    assert sent(core)[-1] == msg("1", "2", TOPIC, "a", {})
    core.handle_timers(8)
    assert core.events() == [PushTimedOut(push)]


def test_timed_out_buffered_pushes_are_never_sent() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    sent(core)
    early = core.push(channel, "early", {}, 0, timeout=1)
    late = core.push(channel, "late", {}, 0, timeout=20)
    core.handle_timers(1)
    assert core.events() == [PushTimedOut(early)]
    assert stats(core).buffered_pushes == 1
    core.receive(reply("1", "1"), 5)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert sent(core) == [msg("1", "2", TOPIC, "late", {})]
    assert late.ref == "2"


def test_push_while_disconnected_waits_for_the_rejoin() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.events()
    push = core.push(channel, "offline", {"x": 1}, 1.5, timeout=None)
    assert core.data_to_send() == []
    core.connection_started(2)
    core.connection_opened(2)
    assert sent(core) == [msg("2", "2", TOPIC, "phx_join", {})]
    core.receive(reply("2", "2"), 2)
    assert sent(core) == [msg("2", "3", TOPIC, "offline", {"x": 1})]
    core.receive(reply("2", "3"), 2)
    assert core.events() == [
        ChannelJoined(channel.topic, {}, True, channel=channel),
        PushReplied(push, "ok", {}),
    ]


def test_join_error_keeps_the_buffer() -> None:
    core = connected_core()
    channel = join_ok(core)
    core.connection_lost(1, 1006)
    core.connection_started(1)
    core.connection_opened(1)
    push = core.push(channel, "held", {}, 1, timeout=None)
    core.receive(reply("2", "2", status="error"), 1)
    assert stats(core).buffered_pushes == 1
    core.handle_timers(2)
    core.receive(reply("3", "3"), 2)
    core.events()
    assert [f.event for f in sent(core)] == ["phx_join", "phx_join", "held"]
    assert push.ref == "4"


def test_payload_changed_after_buffering_fails_at_flush() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    payload: dict[str, Any] = {"ok": 1}
    push = core.push(channel, "a", payload, 0)
    kept = core.push(channel, "b", {}, 0)
    payload["bad"] = object()
    core.receive(reply("1", "1"), 1)
    events = core.events()
    assert events[0] == ChannelJoined(channel.topic, {}, False, channel=channel)
    failed = events[1]
    assert isinstance(failed, PushFailed)
    assert failed.push is push
    assert failed.reason == "encode_error"
    assert isinstance(failed.detail, EncodeError)
    assert len(events) == 2
    assert done(push)
    # The failed push consumed ref "2" (refs need not be contiguous, as in phoenix.js).
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {}), msg("1", "3", TOPIC, "b", {})]
    assert kept.ref == "3"
    assert stats(core).pending_replies == 1
    core.handle_timers(100)
    assert core.events() == [PushTimedOut(kept)]


def test_cancel_push_leaves_nothing_behind() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    join = core.join(channel, 0)
    buffered = core.push(channel, "buffered", {}, 0)
    core.cancel_push(buffered)
    assert done(buffered)
    assert stats(core).buffered_pushes == 0
    core.cancel_push(join)  # joins and leaves cannot be cancelled this way
    assert stats(core).pending_replies == 1
    core.receive(reply("1", "1"), 1)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert sent(core) == [msg("1", "1", TOPIC, "phx_join", {})]  # the buffered push never went
    pending = core.push(channel, "pending", {}, 1)
    assert stats(core).pending_replies == 1
    core.cancel_push(pending)
    core.cancel_push(pending)  # twice is fine
    assert stats(core).pending_replies == 0
    assert stats(core).buffered_pushes == 0
    assert sent(core) == [msg("1", "2", TOPIC, "pending", {})]  # already written stays written
    core.receive(reply("1", "2"), 2)
    assert [e.reason for e in core.events() if isinstance(e, FrameDropped)] == ["unknown_ref"]
    core.handle_timers(100)
    assert core.events() == []  # no timeout for cancelled pushes
    replied = core.push(channel, "x", {}, 100)
    core.receive(reply("1", "3"), 100)
    core.events()
    core.cancel_push(replied)  # after it ended: nothing happens
    assert core.events() == []


@pytest.mark.parametrize("event", ["phx_join", "phx_leave", "phx_reply", "phx_error", "phx_close"])
def test_reserved_events_cannot_be_pushed(event: str) -> None:
    core = connected_core()
    channel = join_ok(core)
    with pytest.raises(LocalProtocolError, match="is reserved by the Phoenix protocol"):
        core.push(channel, event, {}, 0)
    assert core.data_to_send() == []


def test_push_misuse_raises_before_sending() -> None:
    core = connected_core()
    never_joined = core.channel("room:0")
    with pytest.raises(LocalProtocolError, match="tried to push 'x' to 'room:0' before joining"):
        core.push(never_joined, "x", {}, 0)
    joined = join_ok(core)
    joining = core.channel("room:2")
    core.join(joining, 0)
    sent(core)
    before = stats(core)
    for channel in (joined, joining):
        with pytest.raises(TypeError, match="event must be a string, got int"):
            core.push(channel, 5, {}, 0)  # type: ignore[arg-type]
        with pytest.raises(EncodeError, match="not JSON-serializable"):
            core.push(channel, "x", {"x": {1, 2}}, 0)
        with pytest.raises(EncodeError, match="unable to convert event to binary"):
            core.push(channel, "e" * 256, b"data", 0)
        with pytest.raises(ValueError, match="timeout must be a non-negative number"):
            core.push(channel, "x", {}, 0, timeout=-1)
    assert core.data_to_send() == []
    assert core.events() == []
    assert stats(core) == before
    assert stats(core).pending_replies == 1  # the join of room:2
    assert stats(core).buffered_pushes == 0
    core.leave(joined, 0)
    sent(core)
    with pytest.raises(ChannelClosed, match=r"\(left\)"):
        core.push(joined, "x", {}, 0)  # leaving
    core.receive(reply("1", "3"), 0)
    with pytest.raises(ChannelClosed, match=r"\(left\)"):
        core.push(joined, "x", {}, 0)  # closed
    core.close()
    with pytest.raises(SocketClosed):
        core.push(joining, "x", {}, 0)
    assert core.data_to_send() == []


# -- serializers through the core ------------------------------------------------------------


def test_v1_end_to_end() -> None:
    server = V1JSONSerializer("server")
    core = connected_core(serializer=V1JSONSerializer())
    channel = core.channel(TOPIC, {"u": 1})
    core.join(channel, 0)
    assert core.data_to_send() == [
        '{"event":"phx_join","payload":{"u":1},"ref":"1","topic":"room:1","join_ref":"1"}'
    ]

    def server_frame(ref: str | None, event: str, payload: Any) -> str:
        text = server.encode(msg("ignored", ref, TOPIC, event, payload))
        assert isinstance(text, str)
        assert "join_ref" not in text
        return text

    core.receive(server_frame("1", "phx_reply", {"response": {}, "status": "ok"}), 0)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    push = core.push(channel, "new_msg", {"body": "hi"}, 0)
    assert core.data_to_send() == [
        '{"event":"new_msg","payload":{"body":"hi"},"ref":"2","topic":"room:1","join_ref":"1"}'
    ]
    core.receive(server_frame("2", "phx_reply", {"response": {"n": 1}, "status": "ok"}), 0)
    core.receive(server_frame(None, "new_msg", {"body": "hi"}), 0)
    assert core.events() == [
        PushReplied(push, "ok", {"n": 1}),
        MessageReceived(channel, msg(None, None, TOPIC, "new_msg", {"body": "hi"})),
    ]
    with pytest.raises(EncodeError, match="V1 serializer cannot carry binary"):
        core.push(channel, "bin", b"\x00", 0)
    assert core.data_to_send() == []
    core.receive(server_frame("1", "phx_close", {}), 0)
    assert core.events() == [ChannelEnded(channel.topic, "server_closed", {}, channel=channel)]


def test_binary_push_and_reply() -> None:
    core = connected_core()
    channel = join_ok(core)
    push = core.push(channel, "upload", b"\x01\x02\x03", 0)
    assert core.data_to_send() == [bytes([0, 1, 1, 6, 6]) + b"12room:1upload\x01\x02\x03"]
    binary_reply = SERVER.encode(
        msg("1", "2", TOPIC, "phx_reply", {"status": "ok", "response": b"\x04\x05"})
    )
    assert binary_reply == bytes([1, 1, 1, 6, 2]) + b"12room:1ok\x04\x05"
    core.receive(binary_reply, 1)
    assert core.events() == [PushReplied(push, "ok", b"\x04\x05")]
    core.receive(SERVER.encode(msg(None, None, TOPIC, "blob", b"\xff")), 1)
    core.receive(SERVER.encode(msg("1", None, TOPIC, "blob", b"\xfe")), 1)
    assert core.events() == [
        MessageReceived(channel, msg(None, None, TOPIC, "blob", b"\xff")),
        MessageReceived(channel, msg("1", None, TOPIC, "blob", b"\xfe")),
    ]


def test_binary_push_buffered_then_sent() -> None:
    core = connected_core()
    channel = core.channel(TOPIC)
    core.join(channel, 0)
    sent(core)
    core.push(channel, "upload", bytearray(b"\x09"), 0)
    core.receive(reply("1", "1"), 0)
    assert core.data_to_send() == [bytes([0, 1, 1, 6, 6]) + b"12room:1upload\x09"]


# -- statistics and exceptions ---------------------------------------------------------------


def test_statistics_count_frames() -> None:
    core = SocketCore()
    connect(core)
    join_ok(core)
    core.receive("garbage", 0)
    core.receive(frame(None, None, "nowhere", "x", {}), 0)
    core.handle_timers(30)
    core.events()
    assert stats(core) == SocketStatistics(
        state=SocketState.CONNECTED,
        channels=1,
        pending_replies=0,
        buffered_pushes=0,
        frames_received=3,
        frames_sent=2,
        malformed_frames=1,
        dropped_messages=1,
        heartbeats_sent=1,
        heartbeat_timeouts=0,
        connects=1,
        disconnects=0,
    )


def test_errors_are_phoenix_errors() -> None:
    for exc in (ChannelClosed("t", "left"), SocketClosed("closed"), EncodeError("x")):
        assert isinstance(exc, PhoenixError)
    closed = ChannelClosed("t", "server_closed", {"a": 1})
    assert closed.payload == {"a": 1}
    assert str(closed) == "channel 't' is closed (server_closed)"
