"""Autobahn|Testsuite's client cases against the client's WebSocket transport.

The fuzzing server (``tests/system/autobahn_server.py``, the ``kosoku`` package) runs every case
but the performance (9.*) and compression (12.*, 13.*) groups; the client under test echoes each
message back until the case closes the connection, as Autobahn's clients do. Each case's
verdict must be OK (or INFORMATIONAL where the spec leaves the behaviour open).

Every verdict must also be strict: no case may be NON-STRICT. 6.4.3 and 6.4.4 send one text
frame whose payload turns invalid early, in three TCP chunks with pauses between them, and
expect the client to close with 1007 at the invalid chunk, before the frame is complete:
websockets' protocol (our engine) only parses whole frames, so the transport watches the
frame it is still waiting for and validates its text as it comes (``_text_watch.py``).

The compression groups, run by hand with ``compress=True``
(``python tests/system/autobahn_server.py '12.*' '13.*'`` and the client of this file): 162 OK and
54 UNIMPLEMENTED (13.2-13.7: offers with parameters our client does not make), 0 failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_phoenix._handshake import open_transport
from trio_phoenix._transport import TransportClosed

SERVER = Path(__file__).with_name("autobahn_server.py")
AGENT = "trio_phoenix"
MAX = 2**25


async def run_cases(port: int, *, compress: bool = False) -> None:
    """The client side of an Autobahn run: every case, then the report."""
    base = f"ws://127.0.0.1:{port}"
    transport = await open_transport(f"{base}/getCaseCount", max_message_size=MAX)
    try:
        count = int(str((await transport.receive_batch())[0]))
    finally:
        await transport.abort()
    for case in range(1, count + 1):
        transport = await open_transport(
            f"{base}/runCase?case={case}&agent={AGENT}", max_message_size=MAX, compress=compress
        )
        try:
            with trio.fail_after(60):
                while True:
                    await transport.send_many(await transport.receive_batch())
        except TransportClosed:
            pass
        finally:
            await transport.abort()
    transport = await open_transport(f"{base}/updateReports?agent={AGENT}", max_message_size=MAX)
    try:
        while True:
            await transport.receive_batch()
    except TransportClosed:
        pass
    finally:
        await transport.abort()


def start_server(cases: tuple[str, ...]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SERVER), *cases],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


async def autobahn(*cases: str, compress: bool = False) -> list[dict[str, Any]]:
    """Run the fuzzing server and our client; return the server's verdicts."""
    pytest.importorskip("kosoku")
    process = start_server(cases)
    try:
        assert process.stdout is not None
        line = await trio.to_thread.run_sync(process.stdout.readline)
        assert line.startswith("PORT "), line
        await run_cases(int(line.split()[1]), compress=compress)
        report = await trio.to_thread.run_sync(process.stdout.readline)
        verdicts: list[dict[str, Any]] = json.loads(report)
        return verdicts
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def test_autobahn_client_cases() -> None:
    with trio.fail_after(240):
        verdicts = await autobahn()
    assert len(verdicts) == 247
    failed = [
        v
        for v in verdicts
        if "FAILED" in (v["behavior"], v["close"]) or v["close"] not in ("OK", "INFORMATIONAL")
    ]
    non_strict = [v["case"] for v in verdicts if v["behavior"] == "NON-STRICT"]
    assert failed == []
    assert non_strict == []
