"""The JSON decoders (stdlib ``json`` and ``orjson``, the ``fast`` extra): numbers JSON cannot
hold are malformed, and both decoders give the same values and refuse the same frames.

How these tests run: ``tests/proto/serializer_helpers.py``.
"""

from __future__ import annotations

import json

import pytest

from tests.proto.serializer_helpers import V2_CLIENT
from trio_phoenix.proto import RemoteProtocolError, _serializer

pytestmark = pytest.mark.usefixtures("json_backend")


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
