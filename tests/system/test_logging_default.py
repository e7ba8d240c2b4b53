"""The library leaves logging output to the application (a ``NullHandler``, nothing else)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import socket, trio
from trio_phoenix import ConnectTimeout, open_socket

with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]

async def main():
    try:
        with trio.fail_after(0.5):  # a few refused attempts, each logged at WARNING
            async with open_socket(f"ws://127.0.0.1:{port}/socket"):
                pass
    except ConnectTimeout:
        pass

trio.run(main)
print("done")
"""


def test_no_log_output_without_logging_configured() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")


def test_warnings_reach_a_configured_application() -> None:
    script = "import logging; logging.basicConfig()\n" + SCRIPT
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert "WARNING:trio_phoenix" in done.stderr
