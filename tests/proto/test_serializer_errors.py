"""Serializer errors: what cannot be encoded (``EncodeError``, valid UTF-8 for lone
surrogates) and the exact ``RemoteProtocolError`` of every malformed V2 frame.

How these tests run: ``tests/proto/serializer_helpers.py``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.helpers import msg
from tests.proto.serializer_helpers import (
    ALL_SERIALIZERS,
    SERIALIZER_IDS,
    V1_CLIENT,
    V1_SERVER,
    V2_CLIENT,
    V2_SERVER,
    b,
)
from trio_phoenix.proto import EncodeError, Frame, ProtocolError, RemoteProtocolError, Serializer

pytestmark = pytest.mark.usefixtures("json_backend")


# -- encode errors ---------------------------------------------------------------------------


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
