"""Serializers on golden frames: construction, phoenix.js's serializer_test.js (protocol.md
§12.4), Phoenix's V2 serializer (§2.2) and the wire transcripts of §2.1 and §13.

How these tests run: ``tests/proto/serializer_helpers.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import msg
from tests.proto.serializer_helpers import V1_CLIENT, V1_SERVER, V2_CLIENT, V2_SERVER, b
from trio_phoenix.proto import (
    PHX_REPLY,
    V1_VSN,
    V2_VSN,
    EncodeError,
    LocalProtocolError,
    Message,
    Serializer,
    V1JSONSerializer,
    V2JSONSerializer,
)

pytestmark = pytest.mark.usefixtures("json_backend")


# -- construction ----------------------------------------------------------------------------


def test_vsn_and_roles() -> None:
    assert V2_CLIENT.vsn == V2_VSN == "2.0.0"
    assert V1_CLIENT.vsn == V1_VSN == "1.0.0"
    assert V2_CLIENT.role == "client"
    assert V2_SERVER.role == "server"
    assert repr(V2_SERVER) == "V2JSONSerializer(role='server')"
    assert repr(V1_CLIENT) == "V1JSONSerializer(role='client')"


@pytest.mark.parametrize("cls", [V2JSONSerializer, V1JSONSerializer])
def test_bad_role(cls: Callable[[Any], object]) -> None:
    with pytest.raises(ValueError, match="role must be 'client' or 'server', not 'peer'"):
        cls("peer")


def test_serializers_satisfy_the_protocol() -> None:
    serializers: list[Serializer] = [V2_CLIENT, V2_SERVER, V1_CLIENT, V1_SERVER]
    assert [s.vsn for s in serializers] == ["2.0.0", "2.0.0", "1.0.0", "1.0.0"]


# -- phoenix.js serializer_test.js (§12.4) ---------------------------------------------------


def test_js_json_encode_and_decode() -> None:
    message = msg("0", "1", "t", "e", {"foo": 1})
    frame = '["0","1","t","e",{"foo":1}]'
    assert V2_CLIENT.encode(message) == frame
    assert V2_SERVER.decode(frame) == message
    assert V2_CLIENT.decode(frame) == message
    assert V2_SERVER.encode(message) == frame


def test_js_binary_encode() -> None:
    frame = V2_CLIENT.encode(msg("0", "1", "t", "e", b"\x01"))
    assert frame == bytes.fromhex("00 01 01 01 01 30 31 74 65 01")


def test_js_binary_encode_variable_length_segments() -> None:
    frame = V2_CLIENT.encode(msg("10", "1", "top", "ev", b"\x01"))
    assert frame == b(0, 2, 1, 3, 2, "10", "1", "top", "ev", 1)


@pytest.mark.parametrize("payload", [bytearray(b"\x01"), memoryview(b"\x01")])
def test_binary_encode_accepts_bytes_like(payload: bytearray | memoryview) -> None:
    assert V2_CLIENT.encode(msg("0", "1", "t", "e", payload)) == bytes.fromhex(
        "00 01 01 01 01 30 31 74 65 01"
    )


def test_js_binary_decode_push() -> None:
    frame = b(0, 3, 3, 10, "123", "top", "some-event", 1, 1)
    assert V2_CLIENT.decode(frame) == msg("123", None, "top", "some-event", b"\x01\x01")


def test_js_binary_decode_reply() -> None:
    frame = b(1, 3, 2, 3, 2, "100", "12", "top", "ok", 1, 1)
    message = V2_CLIENT.decode(frame)
    assert message == msg("100", "12", "top", PHX_REPLY, {"status": "ok", "response": b"\x01\x01"})
    assert message.event == "phx_reply"


def test_js_binary_decode_broadcast() -> None:
    frame = b(2, 3, 10, "top", "some-event", 1, 1)
    assert V2_CLIENT.decode(frame) == msg(None, None, "top", "some-event", b"\x01\x01")


def test_js_binary_utf8_byte_lengths() -> None:
    message = msg("🚀", "1", "room:café", "π", b"\x07")
    frame = V2_CLIENT.encode(message)
    assert frame == b(0, 4, 1, 10, 2, "🚀", "1", "room:café", "π", 7)
    assert V2_SERVER.decode(frame) == message
    # The server's push layout (no ref) has the same UTF-8 sizes.
    push = V2_SERVER.encode(msg("🚀", None, "room:café", "π", b"\x07"))
    assert push == b(0, 4, 10, 2, "🚀", "room:café", "π", 7)
    assert V2_CLIENT.decode(push) == msg("🚀", None, "room:café", "π", b"\x07")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("join_ref", msg("j" * 256, "1", "t", "e", b"")),
        ("ref", msg("1", "r" * 256, "t", "e", b"")),
        ("topic", msg("1", "1", "é" * 128, "e", b"")),  # 128 characters, 256 bytes
        ("event", msg("1", "1", "t", "€" * 86, b"")),  # 86 characters, 258 bytes
    ],
)
def test_js_binary_field_over_255_bytes(field: str, message: Message) -> None:
    with pytest.raises(EncodeError, match=rf"^unable to convert {field} to binary") as info:
        V2_CLIENT.encode(message)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LocalProtocolError)
    assert "must be less than or equal to 255 bytes, but is" in str(info.value)


def test_binary_field_of_exactly_255_bytes_is_fine() -> None:
    topic = "t" * 255
    frame = V2_CLIENT.encode(msg(None, None, topic, "e", b"x"))
    assert frame == b(0, 0, 0, 255, 1, topic, "e", "x")
    assert V2_SERVER.decode(frame) == msg("", "", topic, "e", b"x")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("topic", msg("1", None, "t" * 256, "e", b"")),
        ("status", msg("1", "2", "t", PHX_REPLY, {"status": "s" * 256, "response": b""})),
    ],
)
def test_server_binary_field_over_255_bytes(field: str, message: Message) -> None:
    with pytest.raises(EncodeError, match=f"unable to convert {field} to binary"):
        V2_SERVER.encode(message)


def test_binary_field_with_lone_surrogate() -> None:
    with pytest.raises(EncodeError, match="unable to convert event to binary"):
        V2_CLIENT.encode(msg("1", "1", "t", "\ud800", b""))


# -- Phoenix's V2 serializer (§2.2) ----------------------------------------------------------


def test_server_decodes_client_binary_push() -> None:
    frame = b(0, 2, 3, 5, 5, "12", "123", "topic", "event", 0x65, 0x66, 0x67)
    assert V2_SERVER.decode(frame) == msg("12", "123", "topic", "event", b"efg")


def test_server_decodes_client_binary_push_without_refs() -> None:
    frame = b(0, 0, 0, 5, 5, "topic", "event", "x")
    # Phoenix keeps absent refs of a binary push as "" (an empty join_ref is a stale one).
    assert V2_SERVER.decode(frame) == msg("", "", "topic", "event", b"x")


def test_server_encodes_binary_push() -> None:
    frame = V2_SERVER.encode(msg("12", None, "topic", "event", b"efg"))
    assert frame == b(0, 2, 5, 5, "12", "topic", "event", "efg")
    # The server push layout has no ref: one given is not sent.
    assert V2_SERVER.encode(msg("12", "99", "topic", "event", b"efg")) == frame


def test_server_encodes_binary_push_with_null_join_ref_but_a_ref() -> None:
    frame = V2_SERVER.encode(msg(None, "99", "topic", "event", b"efg"))
    assert frame == b(0, 0, 5, 5, "topic", "event", "efg")
    # phoenix.js keeps "" as the join_ref of a push (it matches any channel).
    assert V2_CLIENT.decode(frame) == msg("", None, "topic", "event", b"efg")


def test_server_encodes_binary_reply() -> None:
    message = msg("12", "123", "topic", PHX_REPLY, {"status": "ok", "response": b"efg"})
    frame = V2_SERVER.encode(message)
    assert frame == b(1, 2, 3, 5, 2, "12", "123", "topic", "ok", "efg")
    assert V2_CLIENT.decode(frame) == message


def test_server_encodes_binary_reply_with_null_refs() -> None:
    message = msg(None, None, "topic", PHX_REPLY, {"status": "error", "response": b""})
    frame = V2_SERVER.encode(message)
    assert frame == b(1, 0, 0, 5, 5, "topic", "error")
    assert V2_CLIENT.decode(frame) == message


def test_server_encodes_binary_broadcast() -> None:
    frame = V2_SERVER.encode(msg(None, None, "topic", "event", b"efg"))
    assert frame == b(2, 5, 5, "topic", "event", "efg")
    assert V2_CLIENT.decode(frame) == msg(None, None, "topic", "event", b"efg")


def test_server_binary_reply_needs_a_string_status() -> None:
    with pytest.raises(EncodeError, match="reply status must be a string, got int"):
        V2_SERVER.encode(msg("1", "1", "t", PHX_REPLY, {"status": 1, "response": b""}))


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "ok", "response": {"a": 1}},
        {"status": "ok"},
        ["not", "a", "dict"],
    ],
)
def test_server_json_reply(payload: Any) -> None:
    frame = V2_SERVER.encode(msg("1", "2", "t", PHX_REPLY, payload))
    assert frame == json.dumps(["1", "2", "t", "phx_reply", payload], separators=(",", ":"))


def test_server_reply_with_raw_bytes_payload_is_not_json() -> None:
    # A reply's binary data goes in "response"; bytes as the whole payload cannot be encoded.
    with pytest.raises(EncodeError, match="not JSON-serializable"):
        V2_SERVER.encode(msg("1", "2", "t", PHX_REPLY, b"raw"))


def test_client_reply_event_with_bytes_goes_binary() -> None:
    # The client role has no reply layout: a "phx_reply" push is just a push.
    frame = V2_CLIENT.encode(msg("1", "2", "t", PHX_REPLY, b"x"))
    assert frame == b(0, 1, 1, 1, 9, "1", "2", "t", "phx_reply", "x")


# -- §2.1 and §13 transcripts ----------------------------------------------------------------

OK = {"response": {}, "status": "ok"}


def error(reason: str) -> dict[str, Any]:
    return {"response": {"reason": reason}, "status": "error"}


CLIENT_FRAMES = [
    (
        '["3","3","room:lobby","phx_join",{"token":"x"}]',
        msg("3", "3", "room:lobby", "phx_join", {"token": "x"}),
    ),
    (
        '["3","4","room:lobby","new_msg",{"body":"hi"}]',
        msg("3", "4", "room:lobby", "new_msg", {"body": "hi"}),
    ),
    ('[null,"5","phoenix","heartbeat",{}]', msg(None, "5", "phoenix", "heartbeat", {})),
    (
        '["3","3","room:1","phx_join",{"user":"a"}]',
        msg("3", "3", "room:1", "phx_join", {"user": "a"}),
    ),
    (
        '["3","4","room:1","new_msg",{"body":"hi"}]',
        msg("3", "4", "room:1", "new_msg", {"body": "hi"}),
    ),
    ('["9","9","room:1","phx_join",{}]', msg("9", "9", "room:1", "phx_join", {})),
    ('["3","7","room:lobby","phx_leave",{}]', msg("3", "7", "room:lobby", "phx_leave", {})),
]

SERVER_FRAMES = [
    (
        '["3","3","room:1","phx_reply",{"response":{},"status":"ok"}]',
        msg("3", "3", "room:1", "phx_reply", OK),
    ),
    (
        '[null,null,"room:1","new_msg",{"body":"hi"}]',
        msg(None, None, "room:1", "new_msg", {"body": "hi"}),
    ),
    (
        '["3","4","room:1","phx_reply",{"response":{},"status":"ok"}]',
        msg("3", "4", "room:1", "phx_reply", OK),
    ),
    (
        '[null,"5","phoenix","phx_reply",{"response":{},"status":"ok"}]',
        msg(None, "5", "phoenix", "phx_reply", OK),
    ),
    (
        '["3","3","room:x","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]',
        msg("3", "3", "room:x", "phx_reply", error("unauthorized")),
    ),
    (
        '[null,"3","nope","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]',
        msg(None, "3", "nope", "phx_reply", error("unmatched topic")),
    ),
    (
        '["3","3","room:1","phx_error",{"reason":"channel_crash"}]',
        msg("3", "3", "room:1", "phx_error", {"reason": "channel_crash"}),
    ),
    (
        '["9","9","room:1","phx_reply",{"response":{},"status":"ok"}]',
        msg("9", "9", "room:1", "phx_reply", OK),
    ),
    ('["3","3","room:1","phx_close",{}]', msg("3", "3", "room:1", "phx_close", {})),
    (
        '["3",null,"room:1","joined",{"status":"connected"}]',
        msg("3", None, "room:1", "joined", {"status": "connected"}),
    ),
    (
        '["3","7","room:lobby","phx_reply",{"response":{},"status":"ok"}]',
        msg("3", "7", "room:lobby", "phx_reply", OK),
    ),
]


@pytest.mark.parametrize(("text", "message"), CLIENT_FRAMES)
def test_transcript_client_frames(text: str, message: Message) -> None:
    assert V2_CLIENT.encode(message) == text
    assert V2_SERVER.decode(text) == message


@pytest.mark.parametrize(("text", "message"), SERVER_FRAMES)
def test_transcript_server_frames(text: str, message: Message) -> None:
    assert V2_CLIENT.decode(text) == message
    assert V2_SERVER.encode(message) == text


def test_v2_decode_ignores_extra_elements() -> None:
    # Phoenix requires at least five elements and ignores the rest; so do we.
    assert V2_SERVER.decode('["1","2","t","e",{},"extra",7]') == msg("1", "2", "t", "e", {})


@pytest.mark.parametrize("payload", [None, 1, "text", [1, 2], True])
def test_v2_any_json_payload(payload: Any) -> None:
    text = json.dumps(["1", None, "t", "e", payload], separators=(",", ":"))
    assert V2_CLIENT.decode(text) == msg("1", None, "t", "e", payload)


def test_v2_text_frame_keeps_non_ascii() -> None:
    frame = V2_CLIENT.encode(msg("1", "1", "salle:café", "ü", {"body": "π🚀"}))
    assert frame == '["1","1","salle:café","ü",{"body":"π🚀"}]'


def test_v2_accepts_bytes_like_frames() -> None:
    frame = b(2, 1, 1, "t", "e", "x")
    expected = msg(None, None, "t", "e", b"x")
    for bytes_like in (bytearray(frame), memoryview(frame)):
        frame_: Any = bytes_like  # accepted, though Frame only names str and bytes
        assert V2_CLIENT.decode(frame_) == expected
