"""Every example runs, as a user would run it, and says what it should.

Each example is run as a subprocess of this Python (the venv's) with a time limit, and its exit
status and output are checked; ``examples/test_my_app.py`` is run with pytest. The chat demo is
run exactly as ``make demo`` runs it: no arguments, no stdin.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence

import pytest
import trio

from tests.helpers import ROOT
from trio_phoenix import open_socket
from trio_phoenix.testing import TestServer

EXAMPLES = ROOT / "examples"
LIMIT = 20.0  # seconds any example may take
TESTED = {"chat.py", "presence.py", "reconnect.py", "binary.py", "test_my_app.py"}


def run_example(
    name: str, *args: str, stdin: str | None = None, module: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` (or ``python -m <module...>``) and return the finished process."""
    command = [sys.executable, "-X", "dev", *(module or [str(EXAMPLES / name)]), *args]
    return subprocess.run(
        command,
        cwd=ROOT,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


def succeeded(process: subprocess.CompletedProcess[str]) -> list[str]:
    """Assert a clean exit (status 0, nothing on stderr); return the stdout lines."""
    assert process.returncode == 0, process.stdout + process.stderr
    assert process.stderr == "", process.stderr
    return process.stdout.splitlines()


def assert_in_order(lines: list[str], expected: Sequence[str]) -> None:
    """Each expected text starts some line, after the line of the previous one."""
    position = 0
    for text in expected:
        for index in range(position, len(lines)):
            if lines[index].startswith(text):
                position = index + 1
                break
        else:
            raise AssertionError(f"{text!r} not found in order in:\n" + "\n".join(lines))


def test_every_example_is_tested() -> None:
    assert {path.name for path in EXAMPLES.glob("*.py")} == TESTED


CHAT_TRANSCRIPT = (
    "# an embedded Phoenix-protocol server on ws://127.0.0.1:",
    "* connected to ws://127.0.0.1:",
    "* joined room:lobby: {'topic': 'room:lobby', 'user': 'you'}",
    "* online: alice, bob, you",
    "> hello everyone!",
    "<you> hello everyone!",
    "<alice> hi you, welcome to room:lobby!",
    "> anyone here using Trio?",
    "<you> anyone here using Trio?",
    "<bob> you: yes, structured concurrency all the way down",
    "<bob> gotta run, bye!",
    "* bob left",
    "# the server drops our connection (code 1001",
    "* connection closed (code 1001); reconnecting",
    "* reconnected",
    "* rejoined room:lobby",
    "> /who",
    "* online: alice, you",
    "> back again!",
    "<you> back again!",
    "<alice> welcome back, you!",
    "> /quit",
    "* left room:lobby",
    "# done",
)


def test_make_demo_runs_the_scripted_chat_to_completion() -> None:
    """``make demo``: no arguments and no stdin give the whole scripted transcript."""
    lines = succeeded(run_example("chat.py"))
    assert_in_order(lines, CHAT_TRANSCRIPT)
    assert not any(line.startswith("!") for line in lines), lines  # no failed push


def test_cli_demo_prints_the_same_transcript_as_the_example() -> None:
    """``trio-phoenix demo`` and ``examples/chat.py`` run the same client
    (``trio_phoenix.demo.chat``) on the same demo: the same output."""

    def normalized(lines: list[str]) -> list[str]:
        return sorted(re.sub(r"127\.0\.0\.1:\d+", "HOST", line) for line in lines)

    example = succeeded(run_example("chat.py", "--pace", "0.05"))
    cli = succeeded(run_example("", "demo", "--pace", "0.05", module=["-m", "trio_phoenix"]))
    assert_in_order(cli, CHAT_TRANSCRIPT)
    assert normalized(cli) == normalized(example)


def test_chat_interactive_reads_stdin_until_quit() -> None:
    lines = succeeded(
        run_example("chat.py", "--interactive", "--name", "zoe", stdin="hi all\n/who\n/quit\nx\n")
    )
    assert_in_order(lines, ["* joined room:lobby", "<zoe> hi all", "* online: "])
    assert_in_order(lines, ["* left room:lobby", "# done"])
    assert "<zoe> x" not in lines  # nothing after /quit is sent


async def test_chat_with_url_pushes_piped_lines(phoenix_server: TestServer) -> None:
    """With --url the example is a plain client: here of the fixture's server."""
    async with (
        open_socket(phoenix_server.url) as socket,
        socket.channel("room:lobby", {"user": "observer"}) as channel,
        channel.subscribe("new_msg") as messages,
    ):
        command = [sys.executable, str(EXAMPLES / "chat.py"), "--url", phoenix_server.url]
        with trio.fail_after(LIMIT):
            process = await trio.run_process(
                [*command, "--name", "ann"],
                stdin=b"hello from a pipe\n",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            message = await messages.receive()
    assert process.returncode == 0, process.stderr
    lines = process.stdout.decode().splitlines()
    assert_in_order(lines, ["* connected to " + phoenix_server.url, "* joined room:lobby"])
    assert_in_order(lines, ["* left room:lobby"])
    assert message.payload == {"body": "hello from a pipe", "user": "ann"}


def test_presence_example() -> None:
    assert succeeded(run_example("presence.py")) == [
        "the watcher joins; the first presence_state lists who is there",
        "  + watcher is online",
        "online: watcher",
        "ann and bob join",
        "  + ann is online",
        "  + bob is online",
        "online: watcher, ann, bob",
        "ann sets her status",
        "  ~ ann is now away",
        "online: watcher, ann (away), bob",
        "bob leaves",
        "  - bob went offline",
        "online: watcher, ann (away)",
    ]


def test_reconnect_example_refreshes_the_token() -> None:
    lines = succeeded(run_example("reconnect.py"))
    assert_in_order(
        lines,
        [
            "client: fetched token-1",
            "server: accepted token-1",
            "client: joined room:lobby",
            "server: disconnecting user_socket:ann",
            "client: disconnected (code 1001)",
            "client: fetched token-2",
            "server: accepted token-2",
            "client: connected (connection #2)",
            "client: rejoined room:lobby",
            "client: the room got 'sent while offline'",
            "server: the connection's token is token-2",
        ],
    )
    assert not any("refused" in line for line in lines)


def test_binary_example() -> None:
    assert succeeded(run_example("binary.py")) == [
        "pushed 1024 bytes, got bytes of 1024 bytes back",
        "same bytes: True (sha256 785b0751fc2c53dc...)",
        "broadcast 'chunk': b'\\xca\\xfe\\x00'",
    ]


def test_pytest_example_passes() -> None:
    process = run_example(
        "", "-p", "no:cacheprovider", "-q", "examples/test_my_app.py", module=["-m", "pytest"]
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert re.search(r"\b4 passed\b", process.stdout), process.stdout


@pytest.mark.parametrize("name", sorted(TESTED))
def test_example_docstrings_say_how_to_run_them(name: str) -> None:
    """Each example starts with a docstring that says how to run it."""
    text = (EXAMPLES / name).read_text()
    assert text.startswith('"""')
    assert f"examples/{name}" in text
