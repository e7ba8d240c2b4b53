"""The public surface is typed: ``mypy --strict`` catches a misspelled or mistyped option.

Runs mypy on a small program that uses ``open_socket`` as users do, once correct and once with
the mistakes a user makes, and checks that each mistake is reported on its line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

PROGRAM = """\
import trio
from trio_phoenix import SocketOptions, open_socket


async def main() -> None:
    options: SocketOptions = {"timeout": 5.0}
    async with open_socket("ws://localhost:4000/socket", **options):
        pass
    async with open_socket("ws://localhost:4000/socket", heartbeat_intervall=30):  # line 9
        pass
    async with open_socket("ws://localhost:4000/socket", timeout="5"):  # line 11
        pass
    async with open_socket("ws://localhost:4000/socket", params="token=abc"):  # line 13
        pass
"""


def test_mypy_catches_misspelled_and_mistyped_options(tmp_path: Path) -> None:
    source = tmp_path / "program.py"
    source.write_text(PROGRAM)
    stdout, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    assert status == 1, stdout
    lines = {int(line.split(":")[1]) for line in stdout.splitlines() if ": error:" in line}
    assert lines == {9, 11, 13}, stdout
    assert "heartbeat_intervall" in stdout
