"""Socket URLs, phoenix.js ``Ajax.serialize`` params, auth-token subprotocols, redaction."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, strategies as st

from tests.helpers import JS_DIR
from trio_phoenix.proto import (
    AUTH_TOKEN_PREFIX,
    InvalidParams,
    InvalidURL,
    LocalProtocolError,
    auth_token_subprotocols,
    build_socket_url,
    encode_params,
    redact_url,
)

# -- protocol.md §1.1 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("wss://example.org/chat", "wss://example.org/chat/websocket?vsn=2.0.0"),
        ("https://example.com/socket", "wss://example.com/socket/websocket?vsn=2.0.0"),
        ("http://example.com/socket", "ws://example.com/socket/websocket?vsn=2.0.0"),
        ("ws://localhost:4000/socket", "ws://localhost:4000/socket/websocket?vsn=2.0.0"),
        ("WSS://Example.org/Chat", "wss://Example.org/Chat/websocket?vsn=2.0.0"),
        ("HTTP://h/s", "ws://h/s/websocket?vsn=2.0.0"),
        ("ws://[::1]:4000/socket", "ws://[::1]:4000/socket/websocket?vsn=2.0.0"),
        ("ws://user:pw@h/s", "ws://user:pw@h/s/websocket?vsn=2.0.0"),
    ],
)
def test_endpoint_urls(endpoint: str, url: str) -> None:
    assert build_socket_url(endpoint) == url


def test_params_come_before_vsn() -> None:
    assert (
        build_socket_url("wss://example.com/socket", {"token": "abc"})
        == "wss://example.com/socket/websocket?token=abc&vsn=2.0.0"
    )
    assert (
        build_socket_url("ws://h/socket", {"token": "abc", "user_id": 7})
        == "ws://h/socket/websocket?token=abc&user_id=7&vsn=2.0.0"
    )


def test_empty_params_add_nothing() -> None:
    assert build_socket_url("ws://h/socket", {}) == "ws://h/socket/websocket?vsn=2.0.0"
    assert build_socket_url("ws://h/socket", None) == "ws://h/socket/websocket?vsn=2.0.0"


def test_custom_vsn() -> None:
    assert (
        build_socket_url("ws://h/s", {"a": 1}, vsn="1.0.0") == "ws://h/s/websocket?a=1&vsn=1.0.0"
    )


@pytest.mark.parametrize(
    ("endpoint", "params", "url"),
    [
        # phoenix.js appends "/websocket" after the query ("ws://h/s?x=1/websocket&vsn=..."):
        # a 404. A query string is kept as params, before the given ones.
        ("ws://h/s?x=1", None, "ws://h/s/websocket?x=1&vsn=2.0.0"),
        ("ws://h/s?x=1", {"y": 2}, "ws://h/s/websocket?x=1&y=2&vsn=2.0.0"),
        ("ws://h/socket?token=abc", None, "ws://h/socket/websocket?token=abc&vsn=2.0.0"),
        # A name in both is taken from params (also nested ones); vsn from the serializer.
        ("ws://h/s?token=old&a=1", {"token": "new"}, "ws://h/s/websocket?a=1&token=new&vsn=2.0.0"),
        (
            "ws://h/s?u%5Bid%5D=1&v=2",
            {"u": {"id": 3}},
            "ws://h/s/websocket?v=2&u%5Bid%5D=3&vsn=2.0.0",
        ),
        ("ws://h/s?vsn=1.0.0&&a=%20", {}, "ws://h/s/websocket?a=%20&vsn=2.0.0"),
        ("ws://h/s?a=1#fragment", None, "ws://h/s/websocket?a=1&vsn=2.0.0"),
        # A trailing "/" is not doubled, an explicit "/websocket" is not repeated.
        ("ws://h/socket/", None, "ws://h/socket/websocket?vsn=2.0.0"),
        ("ws://h/", None, "ws://h/websocket?vsn=2.0.0"),
        ("ws://h", None, "ws://h/websocket?vsn=2.0.0"),
        ("ws://h/socket/websocket", None, "ws://h/socket/websocket?vsn=2.0.0"),
        ("ws://h/socket/websocket/?t=1", {"n": 2}, "ws://h/socket/websocket?t=1&n=2&vsn=2.0.0"),
    ],
)
def test_urls_as_users_write_them(endpoint: str, params: dict[str, Any] | None, url: str) -> None:
    assert build_socket_url(endpoint, params) == url


@pytest.mark.parametrize("params", ["token=abc", b"token=abc", [("token", "abc")], 7])
def test_params_must_be_a_mapping(params: Any) -> None:
    with pytest.raises(InvalidParams, match="params must be a mapping") as info:
        build_socket_url("ws://h/s", params)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, LocalProtocolError)


def test_params_that_serialize_to_nothing_keep_the_separator() -> None:
    # JS: Object.keys({a: null}).length is 1, so "?" + "" is appended, then "&vsn=...".
    assert build_socket_url("ws://h/s", {"a": None}) == "ws://h/s/websocket?&vsn=2.0.0"


# -- Ajax.serialize --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "query"),
    [
        ({"token": "abc"}, "token=abc"),
        ({"user": {"name": "x"}}, "user%5Bname%5D=x"),
        ({"user": {"name": "x", "age": 3}}, "user%5Bname%5D=x&user%5Bage%5D=3"),
        ({"list": ["a", "b"]}, "list%5B0%5D=a&list%5B1%5D=b"),
        ({"list": ("a",)}, "list%5B0%5D=a"),
        ({"m": [{"k": "v"}, [1]]}, "m%5B0%5D%5Bk%5D=v&m%5B1%5D%5B0%5D=1"),
        ({"a": {"b": {"c": "d"}}}, "a%5Bb%5D%5Bc%5D=d"),
        ({"safe": "-_.!~*'()"}, "safe=-_.!~*'()"),
        ({"sp ace": "a b"}, "sp%20ace=a%20b"),
        ({"reserved": ";,/?:@&=+$#"}, "reserved=%3B%2C%2F%3F%3A%40%26%3D%2B%24%23"),
        ({"u": "é"}, "u=%C3%A9"),
        ({"u": "π🚀"}, "u=%CF%80%F0%9F%9A%80"),
        ({"q": '"<>%[]{}|\\^`'}, "q=%22%3C%3E%25%5B%5D%7B%7D%7C%5C%5E%60"),
        ({"t": True, "f": False}, "t=true&f=false"),
        ({"i": 0, "n": -12}, "i=0&n=-12"),
        ({"one": 1.0, "half": 1.5, "neg": -2.0, "zero": -0.0}, "one=1&half=1.5&neg=-2&zero=0"),
        ({"small": 1e-7, "tiny": 1e-5, "micro": 1e-6}, "small=1e-7&tiny=0.00001&micro=0.000001"),
        ({"big": 1e21, "bigger": 1.5e300}, "big=1e%2B21&bigger=1.5e%2B300"),
        ({"b": 123456789012345680000.0}, "b=123456789012345680000"),
        ({"r": 0.1 + 0.2}, "r=0.30000000000000004"),
        ({"x": math.nan, "y": math.inf, "z": -math.inf}, "x=NaN&y=Infinity&z=-Infinity"),
        ({"bytes": b"caf\xc3\xa9"}, "bytes=caf%C3%A9"),
        ({"a": None, "b": 1}, "&b=1"),
        ({"a": 1, "b": None, "c": 2}, "a=1&&c=2"),
        ({"a": 1, "b": {}, "c": 2}, "a=1&&c=2"),
        ({"a": 1, "b": [], "c": 2}, "a=1&&c=2"),
        ({"a": [None, 1]}, "&a%5B1%5D=1"),
        ({7: "int key"}, "7=int%20key"),
        ({"2": "b", "x": "c", "1": "a"}, "1=a&2=b&x=c"),  # JS for-in: array indices first
        ({"01": "x", "1": "y"}, "1=y&01=x"),  # "01" is not an array index
        ({"4294967295": "x", "4294967294": "y"}, "4294967294=y&4294967295=x"),
        ({"": {"x": 1}}, "x=1"),  # JS: an empty parent key is falsy
        ({"n": {"": {"x": 1}}}, "n%5B%5D%5Bx%5D=1"),
    ],
)
def test_encode_params(params: dict[Any, Any], query: str) -> None:
    assert encode_params(params) == query


@given(st.floats())
def test_float_params_round_trip(value: float) -> None:
    text = unquote(encode_params({"x": value}).removeprefix("x="))
    if math.isnan(value):
        assert text == "NaN"
    else:
        assert float(text) == value
        assert "e-0" not in text
        assert "e+0" not in text
        assert not text.endswith(".0")


def test_encode_params_with_a_parent() -> None:
    assert encode_params({"a": 1}, "p") == "p%5Ba%5D=1"
    assert encode_params(["x", "y"], "l") == "l%5B0%5D=x&l%5B1%5D=y"


def test_lone_surrogate_in_params_is_a_value_error() -> None:
    # JS: encodeURIComponent throws URIError.
    with pytest.raises(ValueError):
        build_socket_url("ws://h/s", {"a": "\ud800"})


# -- invalid URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [
        ("ftp://h/socket", "must start with ws://, wss://, http:// or https://"),
        ("localhost:4000/socket", "must start with ws://"),
        ("/socket", "must start with ws://"),
        ("//example.org/chat", "must start with ws://"),  # no page to take the scheme from
        ("", "must start with ws://"),
        ("ws:///socket", "has no host"),
        ("wss://:4000/socket", "has no host"),
        ("ws://h:port/socket", "invalid socket URL"),
        ("ws://h:99999/socket", "invalid socket URL"),
        ("ws://[::1/socket", "invalid socket URL"),
    ],
)
def test_invalid_url(endpoint: str, error: str) -> None:
    with pytest.raises(InvalidURL, match=error) as info:
        build_socket_url(endpoint)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LocalProtocolError)


@pytest.mark.parametrize(
    ("endpoint", "kind"), [(b"ws://h/s", "bytes"), (["ws://h/s"], "list"), ({}, "dict")]
)
def test_invalid_url_type(endpoint: Any, kind: str) -> None:
    # (Unhashable ones too: a url callable may return anything.)
    for params in (None, {"a": 1}):
        with pytest.raises(InvalidURL, match=f"socket URL must be a string, got {kind}"):
            build_socket_url(endpoint, params)


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://h/s?token=secret", "ws://h:bad/s?token=secret", "ws:///s?token=secret"],
)
def test_invalid_url_message_is_redacted(endpoint: str) -> None:
    with pytest.raises(InvalidURL) as info:
        build_socket_url(endpoint)
    assert "secret" not in str(info.value)
    assert "token=[REDACTED]" in str(info.value)


# -- auth token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "entry"),
    [
        ("1234", "base64url.bearer.phx.MTIzNA"),
        ("5678", "base64url.bearer.phx.NTY3OA"),
        ("abc", "base64url.bearer.phx.YWJj"),  # no padding to strip
        ("ab", "base64url.bearer.phx.YWI"),  # one "=" stripped
        ("\x3e\x3f", "base64url.bearer.phx.Pj8"),
        ("??>", "base64url.bearer.phx.Pz8+"),  # standard alphabet: "+"
        ("???", "base64url.bearer.phx.Pz8/"),  # standard alphabet: "/"
        ("", "base64url.bearer.phx."),
    ],
)
def test_auth_token_subprotocols(token: str, entry: str) -> None:
    assert auth_token_subprotocols(token) == ["phoenix", entry]
    assert entry.startswith(AUTH_TOKEN_PREFIX)


# -- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "ws://h/s/websocket?token=abc&vsn=2.0.0",
            "ws://h/s/websocket?token=[REDACTED]&vsn=2.0.0",
        ),
        (
            "ws://h/s/websocket?a=1&b=2&vsn=2.0.0",
            "ws://h/s/websocket?a=[REDACTED]&b=[REDACTED]&vsn=2.0.0",
        ),
        ("ws://h/s/websocket?vsn=2.0.0", "ws://h/s/websocket?vsn=2.0.0"),
        ("ws://h/s/websocket", "ws://h/s/websocket"),
        ("ws://h/s?flag&x=", "ws://h/s?flag&x=[REDACTED]"),
        ("ws://h/s?&vsn=2.0.0", "ws://h/s?&vsn=2.0.0"),
        ("ws://h/s?u%5Bt%5D=x=y", "ws://h/s?u%5Bt%5D=[REDACTED]"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_built_url() -> None:
    url = build_socket_url("wss://h/socket", {"token": "s3cr3t", "user": {"id": "42"}})
    assert redact_url(url) == (
        "wss://h/socket/websocket?token=[REDACTED]&user%5Bid%5D=[REDACTED]&vsn=2.0.0"
    )


# -- phoenix.js itself -----------------------------------------------------------------------

_ORACLE = r"""
import {Socket} from "phoenix"
import {readFileSync} from "node:fs"
const cases = JSON.parse(readFileSync(0, "utf8"))
const out = cases.map(([endpoint, params]) => {
  const socket = new Socket(endpoint, {params})
  return {url: socket.endPointURL()}
})
process.stdout.write(JSON.stringify(out))
"""


def _random_params(rnd: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = ["token", "a b", "é", "2", "10", "0", "01", "x[y]", "-_.!~*'()", "&=", "🚀", ""]
    values: list[Any] = [
        "v",
        "",
        "a b&c=d",
        "ü/π?",
        0,
        -3,
        2**40,
        1.5,
        -0.25,
        1e-7,
        3e-5,
        2.5e22,
        True,
        False,
        None,
    ]
    params: dict[str, Any] = {}
    for _ in range(rnd.randint(0, 4)):
        key = rnd.choice(keys)
        roll = rnd.random()
        if depth < 2 and roll < 0.15:
            params[key] = _random_params(rnd, depth + 1)
        elif depth < 2 and roll < 0.3:
            params[key] = [rnd.choice(values) for _ in range(rnd.randint(0, 3))]
        else:
            params[key] = rnd.choice(values)
    return params


@pytest.mark.node
def test_matches_phoenix_js_end_point_url() -> None:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "phoenix").is_dir():
        pytest.skip("node and tests/js/node_modules are needed")
    rnd = random.Random(20240601)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("ws://example.com/socket", {}),
        ("wss://example.com/socket", {"token": "abc"}),
        ("ws://h/s", {"a": None}),
        ("ws://h/s", {"nested": {"list": [1, [2, {"deep": "x y"}]], "": {"e": 1}}}),
        ("ws://h/s", {"f": [1.0, 1.5, 1e-7, 1e-6, 1e21, 123456789012345680000.0, 5e-324]}),
        ("ws://h/s", {"2": "b", "x": "c", "1": "a", "4294967295": "m", "4294967294": "n"}),
    ]
    cases += [("ws://h/s", _random_params(rnd)) for _ in range(200)]
    floats = [rnd.choice([-1, 1]) * rnd.random() * 10 ** rnd.randint(-30, 30) for _ in range(300)]
    cases.append(("ws://h/s", {"floats": floats}))
    proc = subprocess.run(
        [node, "--input-type=module", "-e", _ORACLE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=JS_DIR,
        timeout=60,
        check=True,
    )
    expected = [item["url"] for item in json.loads(proc.stdout)]
    actual = [build_socket_url(endpoint, params) for endpoint, params in cases]
    mismatches = [
        (params, want, got)
        for (_, params), want, got in zip(cases, expected, actual, strict=True)
        if want != got
    ]
    assert mismatches == []


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("ws://ann:pa?ss@h/s", "ws://ann:[REDACTED]@h/s"),
        ("ws://ann:pa/ss@h:4000/s?t=1", "ws://ann:[REDACTED]@h:4000/s?t=[REDACTED]"),
        ("ws://ann:pa#ss@h/s", "ws://ann:[REDACTED]@h/s"),
        ("ws://ann:12/34@h/s", "ws://ann:[REDACTED]@h/s"),
        ("ws://ann:b?c=d@h/s", "ws://ann:[REDACTED]@h/s"),
        # Not a password: an "@" in a query value after a port.
        ("ws://h:4000/s?e=a@b", "ws://h:4000/s?e=[REDACTED]"),
        ("ws://h/s?e=a@b", "ws://h/s?e=[REDACTED]"),
    ],
)
def test_redact_url_hides_a_password_with_unencoded_delimiters(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize("delimiter", ["?", "/", "#"])
def test_invalid_url_message_never_shows_a_password(delimiter: str) -> None:
    with pytest.raises(InvalidURL, match="percent-encode") as info:
        build_socket_url(f"ws://ann:sec{delimiter}ret@h:4000/s")
    for text in (str(info.value), repr(info.value), repr(info.value.args)):
        assert "sec" not in text
        assert "ret@" not in text


def test_redact_url_hides_a_password() -> None:
    assert (
        redact_url("wss://ann:s3cret@example.org:4000/socket/websocket?token=x&vsn=2.0.0")
        == "wss://ann:[REDACTED]@example.org:4000/socket/websocket?token=[REDACTED]&vsn=2.0.0"
    )
    assert redact_url("ws://ann@example.org/socket") == "ws://ann:[REDACTED]@example.org/socket"
