"""Fidelity check: the official phoenix.js client (npm ``phoenix`` + ``ws``) against our server.

``tests/js/scenarios.mjs`` runs one scenario per server behaviour and prints one JSON line
each; this test starts the server the script expects and requires every scenario to pass.
Missing Node.js or npm packages fail the test rather than skip it: run ``npm ci`` in tests/js
(``make test`` does).
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
import trio

from tests.helpers import JS_DIR
from trio_phoenix.testing import (
    ChannelHandler,
    ChannelSocket,
    ConnectInfo,
    HandleInResult,
    Reject,
    Reply,
    demo_channels,
    open_test_server,
)

pytestmark = pytest.mark.node

SCENARIOS = [
    "join_ok",
    "join_error",
    "unmatched_topic",
    "echo_reply",
    "error_reply",
    "noreply_times_out",
    "broadcast",
    "server_push",
    "binary_push",
    "binary_reply",
    "crash_then_rejoin",
    "server_stop",
    "leave",
    "disconnect_then_reconnect",
    "heartbeat",
    "rejected_token",
    "presence",
]


class ControlChannel(ChannelHandler):
    """Lets the script ask for server-side actions: ``disconnect`` a socket id."""

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        await trio.lowlevel.checkpoint()
        if event == "disconnect":
            socket.socket_ref().reply(Reply.ok())  # before the close frame
            socket.server.disconnect(str(payload["id"]))
            return None
        return Reply.error({"reason": "unknown event"})


def connect(params: dict[str, Any], info: ConnectInfo) -> str | None:
    """Refuse the token "bad"; the ``id`` param becomes the socket id."""
    if info.auth_token == "bad":
        raise Reject(403)
    socket_id = params.get("id")
    return socket_id if isinstance(socket_id, str) else None


async def test_phoenix_js_scenarios() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed (needed for the phoenix.js fidelity check)")
    for package in ("phoenix", "ws"):
        if not (JS_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"tests/js/node_modules/{package} is missing: run `npm ci` in tests/js")

    channels = {**demo_channels(), "control:*": ControlChannel}
    async with open_test_server(channels, connect=connect, auth_token=True) as server:
        with trio.fail_after(60):
            result = await trio.run_process(
                [node, "scenarios.mjs", server.url],
                cwd=JS_DIR,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    outcomes: dict[str, dict[str, Any]] = {}
    for line in result.stdout.decode().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            outcomes[record["name"]] = record
    report = "\n".join(
        [
            f"  {o['name']}: {'ok' if o['ok'] else 'FAILED'} - {o['detail']}"
            for o in outcomes.values()
        ]
        + [f"stderr: {result.stderr.decode()[-2000:]}"]
    )
    failed = [name for name, o in outcomes.items() if not o["ok"]]
    missing = [name for name in SCENARIOS if name not in outcomes]
    assert not failed, f"phoenix.js scenarios failed: {failed}\n{report}"
    assert not missing, f"phoenix.js scenarios did not run: {missing}\n{report}"
    assert result.returncode == 0, f"node exited with {result.returncode}\n{report}"


async def test_phoenix_js_over_longpoll() -> None:
    """The official client's LongPoll transport (fetch in Node) against the test server."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed (needed for the phoenix.js fidelity check)")
    async with open_test_server(
        demo_channels(), connect=connect, auth_token=True, longpoll=True, longpoll_window=1.0
    ) as server:
        with trio.fail_after(60):
            result = await trio.run_process(
                [node, "longpoll.mjs", server.url],
                cwd=JS_DIR,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        assert all(c.transport == "longpoll" for c in server.accepted_connections)
    records = [json.loads(line) for line in result.stdout.decode().splitlines() if line[:1] == "{"]
    report = "\n".join(f"  {r['name']}: {r['ok']} - {r['detail']}" for r in records)
    assert [r["name"] for r in records] == ["join_push_broadcast", "refused_token"], (
        f"{report}\nstderr: {result.stderr.decode()[-2000:]}"
    )
    assert all(r["ok"] for r in records), report
    assert result.returncode == 0, report
