"""The V1 (JSON object) serializer: join refs by role, missing keys, wrong types, no binary
(protocol.md §2.3).

How these tests run: ``tests/proto/serializer_helpers.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import msg
from tests.proto.serializer_helpers import V1_CLIENT, V1_SERVER
from trio_phoenix.proto import EncodeError, RemoteProtocolError, Serializer

pytestmark = pytest.mark.usefixtures("json_backend")


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
