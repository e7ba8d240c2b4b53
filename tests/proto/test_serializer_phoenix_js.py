"""The V2 serializer against phoenix.js itself: random messages encoded and decoded by both
(needs Node.js and tests/js/node_modules; ``node`` marker).

How these tests run: ``tests/proto/serializer_helpers.py``.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from typing import Any

import pytest

from tests.helpers import JS_DIR, msg
from tests.proto.serializer_helpers import V2_CLIENT, V2_SERVER
from trio_phoenix.proto import PHX_REPLY, Message

pytestmark = pytest.mark.usefixtures("json_backend")


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
