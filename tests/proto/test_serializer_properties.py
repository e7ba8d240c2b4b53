"""Serializer properties with Hypothesis: round trips in every direction and version, and
decoder fuzzing (arbitrary, wrong-shaped, truncated frames).

How these tests run: ``tests/proto/serializer_helpers.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings, strategies as st

from tests.helpers import msg
from tests.proto.serializer_helpers import V1_CLIENT, V1_SERVER, V2_CLIENT, V2_SERVER
from trio_phoenix.proto import PHX_REPLY, Frame, Message, RemoteProtocolError, Serializer

pytestmark = pytest.mark.usefixtures("json_backend")


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
