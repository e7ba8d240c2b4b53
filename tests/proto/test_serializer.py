"""Serializers: golden frames from phoenix.js and Phoenix, round trips, and decoder fuzzing.

Golden frames come from protocol.md §2.1-2.3 (Phoenix's serializers), §12.4 (phoenix.js's
serializer_test.js) and §13 (wire transcripts). Decoders must only ever raise
``RemoteProtocolError`` (a ``ProtocolError``), whatever arrives.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings, strategies as st

from tests.helpers import JS_DIR, msg
from trio_phoenix.proto import (
    PHX_REPLY,
    V1_VSN,
    V2_VSN,
    EncodeError,
    Frame,
    LocalProtocolError,
    Message,
    ProtocolError,
    RemoteProtocolError,
    Serializer,
    V1JSONSerializer,
    V2JSONSerializer,
    _serializer,
)

BACKENDS = ["json", "orjson"]


@pytest.fixture(autouse=True, params=BACKENDS)
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with each JSON decoder (orjson: the ``fast`` extra)."""
    backend: str = request.param
    if backend == "orjson":
        pytest.importorskip("orjson")
        monkeypatch.setattr(_serializer, "_load", _serializer._load_orjson)
    else:
        monkeypatch.setattr(_serializer, "_load", _serializer._load_stdlib)
    return backend


V2_CLIENT = V2JSONSerializer()
V2_SERVER = V2JSONSerializer("server")
V1_CLIENT = V1JSONSerializer()
V1_SERVER = V1JSONSerializer("server")


def b(*parts: int | str | bytes) -> bytes:
    """Bytes from ints (single bytes), str (UTF-8) and bytes."""
    out = bytearray()
    for part in parts:
        if isinstance(part, int):
            out.append(part)
        elif isinstance(part, str):
            out += part.encode("utf-8")
        else:
            out += part
    return bytes(out)


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


# -- encode errors ---------------------------------------------------------------------------

ALL_SERIALIZERS: list[Serializer] = [V2_CLIENT, V2_SERVER, V1_CLIENT, V1_SERVER]
SERIALIZER_IDS = ["v2-client", "v2-server", "v1-client", "v1-server"]


def _circular() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


def _deep(n: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize("serializer", ALL_SERIALIZERS, ids=SERIALIZER_IDS)
@pytest.mark.parametrize(
    "payload",
    [
        object(),
        {1, 2},
        {"nested": [object()]},
        {(1, 2): "tuple key"},
        math.nan,
        {"x": math.inf},
        [-math.inf],
        _circular(),
        _deep(100_000),
    ],
    ids=["object", "set", "nested", "tuple-key", "nan", "inf", "-inf", "circular", "deep"],
)
def test_non_json_payload(serializer: Serializer, payload: Any) -> None:
    with pytest.raises(EncodeError, match="payload is not JSON-serializable") as info:
        serializer.encode(msg("1", "1", "t", "e", payload))
    assert isinstance(info.value, ValueError)


PEERS: list[tuple[Serializer, Serializer]] = [
    (V2_CLIENT, V2_SERVER),
    (V2_SERVER, V2_CLIENT),
    (V1_CLIENT, V1_SERVER),
    (V1_SERVER, V1_CLIENT),
]


@pytest.mark.parametrize(("serializer", "peer"), PEERS, ids=SERIALIZER_IDS)
def test_lone_surrogate_gives_a_valid_utf8_frame(serializer: Serializer, peer: Serializer) -> None:
    message = msg("1", "1", "t", "e", {"text": "a\ud800b", "other": "café"})
    frame = serializer.encode(message)
    assert isinstance(frame, str)
    frame.encode("utf-8")  # would raise on a raw surrogate
    assert "\\ud800" in frame
    # JSON.stringify escapes lone surrogates too; the escaped text decodes to the same string.
    assert peer.decode(frame).payload == {"text": "a\ud800b", "other": "café"}


def test_lone_surrogate_in_topic_gives_a_valid_utf8_frame() -> None:
    frame = V2_CLIENT.encode(msg(None, "1", "t\udfff", "e", {}))
    assert frame == '[null,"1","t\\udfff","e",{}]'
    assert V2_SERVER.decode(frame).topic == "t\udfff"


# -- V1 --------------------------------------------------------------------------------------


def test_v1_server_frame_never_carries_join_ref() -> None:
    message = msg("1", "1", "room:lobby", "phx_reply", {"response": {}, "status": "ok"})
    frame = V1_SERVER.encode(message)
    assert frame == (
        '{"event":"phx_reply","payload":{"response":{},"status":"ok"},'
        '"ref":"1","topic":"room:lobby"}'
    )
    assert V1_CLIENT.decode(frame) == msg(
        None, "1", "room:lobby", "phx_reply", {"response": {}, "status": "ok"}
    )


def test_v1_server_broadcast() -> None:
    frame = V1_SERVER.encode(msg(None, None, "room:lobby", "new_msg", {"body": "hi"}))
    assert frame == '{"event":"new_msg","payload":{"body":"hi"},"ref":null,"topic":"room:lobby"}'
    assert V1_CLIENT.decode(frame) == msg(None, None, "room:lobby", "new_msg", {"body": "hi"})


def test_v1_client_frame_carries_join_ref() -> None:
    message = msg("3", "4", "room:lobby", "new_msg", {"body": "hi"})
    frame = V1_CLIENT.encode(message)
    assert frame == (
        '{"event":"new_msg","payload":{"body":"hi"},"ref":"4","topic":"room:lobby","join_ref":"3"}'
    )
    assert V1_SERVER.decode(frame) == message
    heartbeat = V1_CLIENT.encode(msg(None, "5", "phoenix", "heartbeat", {}))
    assert heartbeat == (
        '{"event":"heartbeat","payload":{},"ref":"5","topic":"phoenix","join_ref":null}'
    )


def test_v1_join_ref_is_optional_when_decoding() -> None:
    frame = '{"topic":"t","event":"e","payload":{},"ref":null}'
    assert V1_SERVER.decode(frame) == msg(None, None, "t", "e", {})


@pytest.mark.parametrize("serializer", [V1_CLIENT, V1_SERVER], ids=["client", "server"])
@pytest.mark.parametrize("missing", ["topic", "event", "payload", "ref"])
def test_v1_missing_key(serializer: Serializer, missing: str) -> None:
    data: dict[str, Any] = {"topic": "t", "event": "e", "payload": {}, "ref": "1"}
    del data[missing]
    with pytest.raises(RemoteProtocolError, match=f"V1 frame is missing the key '{missing}'"):
        serializer.decode(json.dumps(data))


@pytest.mark.parametrize("serializer", [V1_CLIENT, V1_SERVER], ids=["client", "server"])
@pytest.mark.parametrize("text", ["[]", '["1","1","t","e",{}]', "null", "1", '"s"'])
def test_v1_non_object(serializer: Serializer, text: str) -> None:
    with pytest.raises(RemoteProtocolError, match="V1 frame must be a JSON object"):
        serializer.decode(text)


@pytest.mark.parametrize("serializer", [V1_CLIENT, V1_SERVER], ids=["client", "server"])
@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"topic": 1, "event": "e", "payload": {}, "ref": None},
            "topic must be a string, got int",
        ),
        ({"topic": "t", "event": None, "payload": {}, "ref": None}, "event must be a string"),
        ({"topic": "t", "event": "e", "payload": {}, "ref": 5}, "ref must be a string or null"),
        (
            {"topic": "t", "event": "e", "payload": {}, "ref": None, "join_ref": []},
            "join_ref must be a string or null, got list",
        ),
    ],
)
def test_v1_wrong_types(serializer: Serializer, data: dict[str, Any], error: str) -> None:
    with pytest.raises(RemoteProtocolError, match=error):
        serializer.decode(json.dumps(data))


@pytest.mark.parametrize("serializer", [V1_CLIENT, V1_SERVER], ids=["client", "server"])
def test_v1_binary_frame(serializer: Serializer) -> None:
    with pytest.raises(RemoteProtocolError, match="only accepts text frames"):
        serializer.decode(b'{"topic":"t","event":"e","payload":{},"ref":null}')


@pytest.mark.parametrize("serializer", [V1_CLIENT, V1_SERVER], ids=["client", "server"])
@pytest.mark.parametrize(
    "payload",
    [b"x", bytearray(b"x"), memoryview(b"x"), {"status": "ok", "response": b"x"}, {"a": b"x"}],
    ids=["bytes", "bytearray", "memoryview", "reply", "nested"],
)
def test_v1_bytes_cannot_be_encoded(serializer: Serializer, payload: Any) -> None:
    with pytest.raises(EncodeError):
        serializer.encode(msg("1", "1", "t", "e", payload))


# -- decode errors (exact) -------------------------------------------------------------------

V2_BAD_FRAMES: list[tuple[Frame, str]] = [
    ("", "not valid JSON"),
    ("[", "not valid JSON"),
    ("NaN-ish", "not valid JSON"),
    ("[" * 100_000, "not valid JSON"),  # RecursionError inside json
    ("1" * 5000, "not valid JSON"),  # int max str digits
    ("{}", "must be a JSON array"),
    ('["1","1","t","e"]', "must be a JSON array"),
    ("[]", "must be a JSON array"),
    ('"text"', "must be a JSON array"),
    ('[1,"1","t","e",{}]', "join_ref must be a string or null, got int"),
    ('["1",2.5,"t","e",{}]', "ref must be a string or null, got float"),
    ('["1","1",null,"e",{}]', "topic must be a string, got NoneType"),
    ('["1","1","t",["e"],{}]', "event must be a string, got list"),
    (b"", "empty binary frame"),
]


@pytest.mark.parametrize("serializer", [V2_CLIENT, V2_SERVER], ids=["client", "server"])
@pytest.mark.parametrize(("frame", "error"), V2_BAD_FRAMES)
def test_v2_bad_frames(serializer: Serializer, frame: Frame, error: str) -> None:
    with pytest.raises(RemoteProtocolError, match=error):
        serializer.decode(frame)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b(3, 1, 1, "t", "e"), "unknown binary frame kind 3"),
        (b(255), "unknown binary frame kind 255"),
        (b(0, 1, 1), "too short for its 4-byte header"),
        (b(1, 1, 1, 1), "too short for its 5-byte header"),
        (b(2, 1), "too short for its 3-byte header"),
        (b(2), "too short for its 3-byte header"),
        (b(0, 1, 1, 5, "1", "t", "ev"), "shorter than its header says"),
        (b(1, 0, 0, 1, 3, "t", "o"), "shorter than its header says"),
        (b(2, 1, 2, "t", 0xFF, 0xFE), "field is not UTF-8"),
    ],
)
def test_v2_client_bad_binary_frames(frame: bytes, error: str) -> None:
    with pytest.raises(RemoteProtocolError, match=error):
        V2_CLIENT.decode(frame)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b(1, 0, 0, 1, 1, "t", "e"), "a client binary frame must be a push \\(0\\), got 1"),
        (b(2, 1, 1, "t", "e"), "must be a push \\(0\\), got 2"),
        (b(0, 0, 0, 1), "too short for its 5-byte header"),
        (b(0, 0, 0, 1, 9, "t", "e"), "shorter than its header says"),
        (b(0, 1, 0, 1, 1, 0xC3, "t", "e"), "field is not UTF-8"),
    ],
)
def test_v2_server_bad_binary_frames(frame: bytes, error: str) -> None:
    with pytest.raises(RemoteProtocolError, match=error):
        V2_SERVER.decode(frame)


@pytest.mark.parametrize("serializer", ALL_SERIALIZERS, ids=SERIALIZER_IDS)
@pytest.mark.parametrize("frame", [None, 42, ["a"], {"topic": "t"}])
def test_decode_non_frame_objects(serializer: Serializer, frame: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        serializer.decode(frame)


def test_decode_errors_are_remote_protocol_errors() -> None:
    with pytest.raises(ProtocolError) as info:
        V2_CLIENT.decode("nope")
    assert type(info.value) is RemoteProtocolError
    assert isinstance(info.value.__cause__, ValueError)


# -- Hypothesis: round trips -----------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
any_refs = st.none() | st.text(max_size=12)
names = st.text(max_size=30)


def _utf8_max(n: int) -> Callable[[str], bool]:
    def ok(text: str) -> bool:
        try:
            return len(text.encode("utf-8")) <= n
        except UnicodeEncodeError:
            return False

    return ok


binary_fields = st.text(max_size=60).filter(_utf8_max(255))
binary_refs = st.none() | binary_fields.filter(bool)
# A server-side "phx_reply" is a reply ({"status", "response"}), never a push of raw bytes.
binary_events = binary_fields.filter(lambda event: event != PHX_REPLY)
payload_bytes = st.binary(max_size=64)

FAST = settings(max_examples=150, deadline=None)


@FAST
@given(join_ref=any_refs, ref=any_refs, topic=names, event=names, payload=json_values)
def test_roundtrip_json_client_to_server(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
) -> None:
    message = msg(join_ref, ref, topic, event, payload)
    frame = V2_CLIENT.encode(message)
    assert isinstance(frame, str)
    frame.encode("utf-8")
    assert V2_SERVER.decode(frame) == message


@FAST
@given(join_ref=any_refs, ref=any_refs, topic=names, event=names, payload=json_values)
def test_roundtrip_json_server_to_client(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
) -> None:
    message = msg(join_ref, ref, topic, event, payload)
    frame = V2_SERVER.encode(message)
    assert isinstance(frame, str)
    assert V2_CLIENT.decode(frame) == message


@FAST
@given(
    join_ref=binary_refs,
    ref=binary_refs,
    topic=binary_fields,
    event=binary_fields,
    payload=payload_bytes,
)
def test_roundtrip_binary_client_to_server(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: bytes
) -> None:
    message = msg(join_ref, ref, topic, event, payload)
    frame = V2_CLIENT.encode(message)
    assert isinstance(frame, bytes)
    assert V2_SERVER.decode(frame) == attrs.evolve(
        message, join_ref=message.join_ref or "", ref=message.ref or ""
    )


@FAST
@given(
    kind=st.sampled_from(["push", "reply", "broadcast"]),
    join_ref=binary_refs,
    ref=binary_refs,
    topic=binary_fields,
    event=binary_events,
    payload=payload_bytes,
)
def test_roundtrip_binary_server_to_client(
    kind: str,
    join_ref: str | None,
    ref: str | None,
    topic: str,
    event: str,
    payload: bytes,
) -> None:
    if kind == "push":
        # Server pushes carry a join ref and never a ref.
        message = msg(join_ref or "1", None, topic, event, payload)
    elif kind == "reply":
        message = msg(join_ref, ref, topic, PHX_REPLY, {"status": event, "response": payload})
    else:
        message = msg(None, None, topic, event, payload)
    frame = V2_SERVER.encode(message)
    assert isinstance(frame, bytes)
    assert frame[0] == {"push": 0, "reply": 1, "broadcast": 2}[kind]
    assert V2_CLIENT.decode(frame) == message


@FAST
@given(join_ref=any_refs, ref=any_refs, topic=names, event=names, payload=json_values)
def test_roundtrip_v1(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
) -> None:
    message = msg(join_ref, ref, topic, event, payload)
    client_frame = V1_CLIENT.encode(message)
    assert V1_SERVER.decode(client_frame) == message
    server_frame = V1_SERVER.encode(message)
    assert "join_ref" not in json.loads(server_frame)
    assert V1_CLIENT.decode(server_frame) == msg(None, ref, topic, event, payload)


# -- Hypothesis: decoder fuzzing -------------------------------------------------------------

DECODERS: list[Serializer] = [V2_CLIENT, V2_SERVER, V1_CLIENT, V1_SERVER]


def _decode_or_protocol_error(frame: Frame) -> None:
    for serializer in DECODERS:
        try:
            message = serializer.decode(frame)
        except RemoteProtocolError:  # anything else fails the test
            continue
        assert isinstance(message, Message)
        assert message.join_ref is None or type(message.join_ref) is str
        assert message.ref is None or type(message.ref) is str
        assert type(message.topic) is str
        assert type(message.event) is str


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_fuzz_arbitrary_frames(frame: Frame) -> None:
    _decode_or_protocol_error(frame)


wrong_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(wrong_json_values, max_size=7))
def test_fuzz_json_arrays(values: list[Any]) -> None:
    _decode_or_protocol_error(json.dumps(values))


v1_keys = st.sampled_from(["topic", "event", "payload", "ref", "join_ref", "other"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(v1_keys, wrong_json_values, max_size=6))
def test_fuzz_json_objects(data: dict[str, Any]) -> None:
    _decode_or_protocol_error(json.dumps(data))


@settings(max_examples=300, deadline=None)
@given(
    kind=st.integers(min_value=0, max_value=3) | st.integers(min_value=0, max_value=255),
    sizes=st.lists(st.integers(min_value=0, max_value=255), max_size=5),
    body=st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode("utf-8", "replace")),
)
def test_fuzz_binary_headers(kind: int, sizes: list[int], body: bytes) -> None:
    _decode_or_protocol_error(bytes([kind, *sizes]) + body)


@settings(max_examples=200, deadline=None)
@given(
    message=st.builds(
        msg,
        binary_refs,
        binary_refs,
        binary_fields,
        binary_events,
        payload_bytes,
    ),
    cut=st.integers(min_value=0, max_value=300),
)
def test_fuzz_truncated_valid_frames(message: Message, cut: int) -> None:
    for serializer in (V2_CLIENT, V2_SERVER):
        frame = serializer.encode(message)
        assert isinstance(frame, bytes)
        _decode_or_protocol_error(frame[:cut])
        text = V2_CLIENT.encode(msg(message.join_ref, message.ref, message.topic, "e", {}))
        assert isinstance(text, str)
        _decode_or_protocol_error(text[:cut])


# -- phoenix.js itself -----------------------------------------------------------------------


_JS_ORACLE = r"""
import {Serializer} from "phoenix"
import {readFileSync} from "node:fs"
const hex = (buf) => Buffer.from(buf).toString("hex")
const buffer = (h) => new Uint8Array(Buffer.from(h, "hex")).buffer
const {encode, decode} = JSON.parse(readFileSync(0, "utf8"))
const out = {encoded: [], decoded: []}
for (const msg of encode) {
  if (msg.binary !== undefined) msg.payload = buffer(msg.binary)
  const keep = (frame) => out.encoded.push(typeof frame === "string" ? frame : {hex: hex(frame)})
  Serializer.encode(msg, keep)
}
for (const h of decode) {
  Serializer.decode(buffer(h), (msg) => {
    if (msg.payload instanceof ArrayBuffer) msg.payload = {hex: hex(msg.payload)}
    else msg.payload.response = {hex: hex(msg.payload.response)}
    out.decoded.push(msg)
  })
}
process.stdout.write(JSON.stringify(out))
"""

_JS_TEXT = ["a", "room:lobby", "café", "π", "🚀", "x y", "", "é" * 40, '"quoted"\\', "ü:1"]


def _js_cases(rnd: random.Random) -> tuple[list[Message], list[Message], list[Message]]:
    def text(empty: bool = True) -> str:
        value = "".join(rnd.choice(_JS_TEXT) for _ in range(rnd.randint(1, 3)))
        return value if value or empty else "t"

    def json_value(depth: int = 0) -> Any:
        roll = rnd.random()
        if depth < 3 and roll < 0.2:
            return {text(): json_value(depth + 1) for _ in range(rnd.randint(0, 3))}
        if depth < 3 and roll < 0.35:
            return [json_value(depth + 1) for _ in range(rnd.randint(0, 3))]
        return rnd.choice([None, True, False, 0, -7, 2**40, text(), ""])

    # phoenix.js payloads are objects (a null payload would crash its encoder).
    json_messages = [
        msg(rnd.choice([None, str(n)]), str(n + 1), text(), text(), {text(): json_value()})
        for n in range(100)
    ]
    binary_messages = [
        msg(str(n), str(n * 7), text(), text(), rnd.randbytes(rnd.randint(0, 8)))
        for n in range(100)
    ]
    server_messages: list[Message] = []
    for n in range(100):
        data = rnd.randbytes(rnd.randint(0, 8))
        kind = n % 3
        if kind == 0:
            server_messages.append(msg(str(n + 1), None, text(), text(False), data))
        elif kind == 1:
            reply = {"status": text(False), "response": data}
            server_messages.append(msg(str(n + 1), str(n + 2), text(), PHX_REPLY, reply))
        else:
            server_messages.append(msg(None, None, text(), text(False), data))
    return json_messages, binary_messages, server_messages


@pytest.mark.node
def test_matches_phoenix_js_serializer() -> None:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "phoenix").is_dir():
        pytest.skip("node and tests/js/node_modules are needed")
    json_messages, binary_messages, server_messages = _js_cases(random.Random(1234))
    encode: list[dict[str, Any]] = [
        {
            "join_ref": m.join_ref,
            "ref": m.ref,
            "topic": m.topic,
            "event": m.event,
            "payload": m.payload,
        }
        for m in json_messages
    ]
    encode += [
        {
            "join_ref": m.join_ref,
            "ref": m.ref,
            "topic": m.topic,
            "event": m.event,
            "binary": m.payload.hex(),
        }
        for m in binary_messages
    ]
    server_frames = [V2_SERVER.encode(m) for m in server_messages]
    decode = [f.hex() for f in server_frames if isinstance(f, bytes)]
    assert len(decode) == len(server_frames)
    proc = subprocess.run(
        [node, "--input-type=module", "-e", _JS_ORACLE],
        input=json.dumps({"encode": encode, "decode": decode}),
        capture_output=True,
        text=True,
        cwd=JS_DIR,
        timeout=60,
        check=True,
    )
    result = json.loads(proc.stdout)
    expected_frames = [
        e if isinstance(e, str) else bytes.fromhex(e["hex"]) for e in result["encoded"]
    ]
    assert [V2_CLIENT.encode(m) for m in json_messages + binary_messages] == expected_frames
    for message, frame, js in zip(server_messages, server_frames, result["decoded"], strict=True):
        ours = V2_CLIENT.decode(frame)
        assert ours == message
        if message.event == PHX_REPLY:
            assert js["payload"] == {
                "status": message.payload["status"],
                "response": {"hex": message.payload["response"].hex()},
            }
        else:
            assert js["payload"] == {"hex": message.payload.hex()}
        # phoenix.js decodes absent refs as null (push ref, broadcast refs).
        assert (js["join_ref"], js["ref"], js["topic"], js["event"]) == (
            ours.join_ref,
            ours.ref,
            ours.topic,
            ours.event,
        )


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
def test_numbers_json_cannot_hold_are_malformed(number: str) -> None:
    # Phoenix's Jason and JSON.parse reject these; a double cannot hold 1e999.
    with pytest.raises(RemoteProtocolError, match="not valid JSON"):
        V2_CLIENT.decode(f'[null,null,"t","e",{{"n":{number}}}]')


# -- the two JSON decoders agree ---------------------------------------------------------------


def test_the_installed_decoder_is_named() -> None:
    try:
        import orjson  # noqa: F401
    except ImportError:  # pragma: no cover
        assert _serializer.JSON_BACKEND == "json"
    else:
        assert _serializer.JSON_BACKEND == "orjson"


@pytest.mark.parametrize(
    "payload",
    [
        "123456789012345678901234567890",  # orjson alone would give a float
        "18446744073709551615",
        "-9223372036854775808",
        "-9223372036854775809",  # 19 digits, below int64: orjson alone would give a float
        "[-9999999999999999999]",
        "1e-400",
        "-0.0",
        "0.1",
        "1.0000000000000002",
        '"\\ud800"',  # a lone surrogate, escaped
        '{"a":1,"a":2}',
        "[" * 600 + "]" * 600,
    ],
)
def test_both_decoders_give_the_same_values(payload: str) -> None:
    frame = f'[null,null,"t","e",{payload}]'
    expected = json.loads(frame)[4]
    got = V2_CLIENT.decode(frame).payload
    assert got == expected
    assert type(got) is type(expected)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize(
    "payload",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "1" * 5000,  # over Python's int digit limit
        "[" * 100_000 + "]" * 100_000,
        '"\x00"',
        "[1,]",
    ],
    ids=["nan", "inf", "-inf", "huge", "digits", "deep", "control", "trailing-comma"],
)
def test_both_decoders_refuse_the_same_frames(payload: str) -> None:
    frame = f'[null,null,"t","e",{payload}]'.replace("\\x00", "\x00")
    with pytest.raises(RemoteProtocolError, match="frame is not valid JSON"):
        V2_CLIENT.decode(frame)
