"""The ``trio-phoenix`` command line: every command, option family and exit status.

Commands that talk to a server run in-process (``run(argv)`` returns the exit status) in a
worker thread, with its own ``trio.run``, against the fixture's server in the test's event loop.
``serve``, ``demo`` and Ctrl-C are exercised as subprocesses (``python -m trio_phoenix``).
"""

from __future__ import annotations

import json
import os
import signal
import socket as stdlib_socket
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from tests.helpers import REAL_LIMIT
from trio_phoenix import V1JSONSerializer, open_socket
from trio_phoenix.__main__ import _socket_options, run
from trio_phoenix._cli_args import _build_parser
from trio_phoenix.testing import (
    ChannelHandler,
    ChannelSocket,
    ConnectInfo,
    PhoenixServerFactory,
    Reject,
    TestServer,
    demo_channels,
)

LIMIT = REAL_LIMIT  # seconds any command may take (a hang guard, generous for a busy machine)
PYTHON = [sys.executable, "-X", "dev", "-m", "trio_phoenix"]
ENV = {**os.environ, "PYTHONWARNINGS": "error"}


async def cli(*argv: str) -> int:
    """Run the command line in a thread (it calls ``trio.run`` itself); return its status."""
    with trio.fail_after(LIMIT):
        return await trio.to_thread.run_sync(partial(run, list(argv)), abandon_on_cancel=True)


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
async def server(phoenix_server_factory: PhoenixServerFactory) -> TestServer:
    """The demo server, with a short close_timeout: when a client drops TCP right after its
    close frame, the server waits that long for the connection at shutdown."""
    return await phoenix_server_factory(demo_channels(), close_timeout=0.5)


def free_port() -> int:
    with stdlib_socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_joined(server: TestServer, topic: str) -> None:
    """Wait until the server has a channel joined to ``topic`` (polling: no event to wait on)."""
    for _ in range(int(LIMIT / 0.01)):
        if any(topic in connection.topics for connection in server.connections):
            return
        await trio.sleep(0.01)
    raise AssertionError(f"nobody joined {topic!r}")


# -- help, version, usage errors ------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["listen"], ["push"], ["serve"], ["demo"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: trio-phoenix {' '.join(command)}".rstrip())
    if command in ([], ["listen"], ["push"]):
        assert "exit status:" in out
        assert "3    could not connect or join" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("trio-phoenix 0.")


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["push", "ws://h/socket", "t", "e", "{bad"], "argument JSON: not valid JSON"),
        (["push", "ws://h/socket", "t", "e", "--join-params", "[1]"], "expected a JSON object"),
        (["push", "ws://h/socket", "t", "e", "--param", "novalue"], "expected NAME=VALUE"),
        (["push", "ws://h/socket", "t", "e", "--header", "nocolon"], "expected 'Name: value'"),
        (["push", "ws://h/socket", "t", "e", "--timeout", "0"], "expected a positive number"),
        (["listen", "ws://h/socket", "t", "--count", "0"], "expected at least 1"),
        (["push", "ftp://h/socket", "t", "e"], "socket URL must start with ws://"),
        (["push", "ws://h/s", "t", "e", "--cafile", "/nonexistent"], "cannot load the TLS files"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


# -- push -----------------------------------------------------------------------------------


async def test_push_ok_prints_the_reply(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("push", server.url, "echo:x", "echo", '{"a": [1, "é"]}') == 0
    assert json_lines(capsys.readouterr().out) == [{"status": "ok", "response": {"a": [1, "é"]}}]


async def test_push_without_payload_sends_an_empty_object(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("push", server.url, "echo:x", "echo") == 0
    assert json_lines(capsys.readouterr().out) == [{"status": "ok", "response": {}}]


async def test_push_error_reply_exits_1(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("push", server.url, "echo:x", "error", '{"reason": "bad"}') == 1
    assert json_lines(capsys.readouterr().out) == [
        {"status": "error", "response": {"reason": "bad"}}
    ]


@pytest.mark.parametrize(
    ("event", "status", "message"),
    [
        ("noreply", 4, "no reply to 'noreply' on 'echo:x' within 0.2 s"),
        ("crash", 4, "the reply to 'crash' was lost"),
        ("stop", 1, "the server closed echo:x"),
    ],
)
async def test_push_without_an_ok_reply(
    server: TestServer,
    capsys: pytest.CaptureFixture[str],
    event: str,
    status: int,
    message: str,
) -> None:
    assert await cli("push", server.url, "echo:x", event, "--timeout", "0.2") == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"trio-phoenix: {message}")


async def test_refused_join_exits_3(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("push", server.url, "echo:x", "echo", "--join-params", '{"reject": "nope"}')
    assert await cli(*argv) == 3
    assert "joining 'echo:x' failed: {'reason': 'nope'}" in capsys.readouterr().err


async def test_connection_refused_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"ws://127.0.0.1:{free_port()}/socket"
    assert await cli("push", url, "echo:x", "echo") == 3
    captured = capsys.readouterr()
    assert captured.err.startswith(f"trio-phoenix: cannot connect to {url}/websocket")
    assert captured.err.count("\n") == 1  # one clear line, no traceback
    assert captured.out == ""


async def test_retry_waits_for_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/socket"
    status: list[int] = []
    done = trio.Event()

    async def push() -> None:
        status.append(await cli("push", url, "echo:x", "echo", "[1]", "--retry"))
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(push)
        await trio.sleep(0.3)  # a few refused attempts
        server = TestServer(demo_channels(), port=port, close_timeout=0.5)
        await nursery.start(server.run)
        with trio.fail_after(LIMIT):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert status == [0]
    captured = capsys.readouterr()
    assert "; retrying" in captured.err
    assert json_lines(captured.out) == [{"status": "ok", "response": [1]}]


async def test_token_params_and_headers_reach_the_server(
    phoenix_server_factory: PhoenixServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    def connect(params: dict[str, Any], info: ConnectInfo) -> str:
        if info.auth_token != "s3cret":
            raise Reject(403)
        return "user_socket:1"

    server = await phoenix_server_factory(
        demo_channels(), connect=connect, auth_token=True, close_timeout=0.5
    )
    base = ("push", server.url, "echo:x", "echo")
    assert await cli(*base, "--param", "user=ann", "--header", "X-Trace: 42") == 3
    assert capsys.readouterr().err == (
        f"trio-phoenix: the server refused the WebSocket upgrade to {server.url}/websocket"
        "?user=[REDACTED]&vsn=2.0.0: HTTP 403\n"
    )

    argv = (*base, "--token", "s3cret", "--param", "user=ann", "--header", "X-Trace: 42")
    assert await cli(*argv) == 0
    connection = server.accepted_connections[-1]
    assert connection.params == {"user": "ann", "vsn": "2.0.0"}
    assert connection.connect_info.header("x-trace") == "42"
    assert connection.connect_info.auth_token == "s3cret"


async def test_vsn_1(server: TestServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("push", "--vsn", "1", server.url, "echo:x", "echo", "[2]") == 0
    assert json_lines(capsys.readouterr().out) == [{"status": "ok", "response": [2]}]
    assert isinstance(server.accepted_connections[-1].serializer, V1JSONSerializer)


def test_tls_options_build_the_ssl_context(tmp_path: Path) -> None:
    authority = trustme.CA()
    cafile = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(cafile))
    parser = _build_parser()

    verified = _socket_options(
        parser.parse_args(["push", "wss://h/s", "t", "e", "--cafile", str(cafile)])
    )
    assert verified["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    assert verified["ssl_context"].check_hostname

    insecure = _socket_options(parser.parse_args(["push", "wss://h/s", "t", "e", "--insecure"]))
    assert insecure["ssl_context"].verify_mode.name == "CERT_NONE"

    assert (
        _socket_options(parser.parse_args(["push", "wss://h/s", "t", "e"]))["ssl_context"] is None
    )


# -- listen ---------------------------------------------------------------------------------


async def test_listen_prints_count_messages_as_json_lines(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with trio.open_nursery() as nursery:
        status: list[int] = []

        async def listen() -> None:
            status.append(await cli("listen", server.url, "echo:news", "--count", "3"))

        nursery.start_soon(listen)
        await wait_joined(server, "echo:news")
        server.broadcast("echo:news", "headline", {"text": "one"})
        server.broadcast("echo:news", "chunk", b"\x00\xff")
        server.broadcast("echo:news", "headline", {"text": "two"})
        server.broadcast("echo:news", "headline", {"text": "not printed"})
    assert status == [0]
    captured = capsys.readouterr()
    assert json_lines(captured.out) == [
        {
            "topic": "echo:news",
            "event": "headline",
            "payload": {"text": "one"},
            "join_ref": None,
            "ref": None,
        },
        {"topic": "echo:news", "event": "chunk", "binary": "AP8=", "join_ref": None, "ref": None},
        {
            "topic": "echo:news",
            "event": "headline",
            "payload": {"text": "two"},
            "join_ref": None,
            "ref": None,
        },
    ]
    assert captured.err == "trio-phoenix: joined echo:news: {}\n"


async def test_listen_filters_events_and_reports_reconnects(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with trio.open_nursery() as nursery:
        status: list[int] = []
        argv = ("listen", server.url, "room:lobby", "--event", "new_msg", "--count", "1")

        async def listen() -> None:
            status.append(await cli(*argv, "--join-params", '{"user": "lis"}'))

        nursery.start_soon(listen)
        await wait_joined(server, "room:lobby")
        server.connections[-1].close(1001)  # the client must reconnect and rejoin
        await server.wait_connections(2)
        await wait_joined(server, "room:lobby")
        async with (
            open_socket(server.url) as socket,
            socket.channel("room:lobby", {"user": "ann"}) as channel,
        ):
            await channel.push("new_msg", {"body": "hi"})
    assert status == [0]
    captured = capsys.readouterr()
    assert [line["payload"] for line in json_lines(captured.out)] == [
        {"body": "hi", "user": "ann"}
    ]
    assert "trio-phoenix: disconnected (code 1001); reconnecting\n" in captured.err
    assert "trio-phoenix: rejoined room:lobby\n" in captured.err


class ClosedAfterJoin(ChannelHandler):
    """A channel the server closes (``phx_close``) right after the join."""

    async def after_join(self, socket: ChannelSocket) -> None:
        await trio.lowlevel.checkpoint()
        socket.push("phx_close", {"why": "test"})


async def test_listen_exits_1_when_the_server_closes_the_channel(
    phoenix_server_factory: PhoenixServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await phoenix_server_factory({"closing:*": ClosedAfterJoin}, close_timeout=0.5)
    assert await cli("listen", server.url, "closing:x", "--quiet") == 1
    captured = capsys.readouterr()
    assert captured.err == 'trio-phoenix: the server closed closing:x ({"why": "test"})\n'
    assert captured.out == ""


# -- serve, demo, Ctrl-C (subprocesses) -----------------------------------------------------


async def read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> str:
    """The next line of ``stream`` (bytes after it stay in ``buffer``)."""
    with trio.fail_after(LIMIT):
        while b"\n" not in buffer:
            chunk = await stream.receive_some()
            if not chunk:
                raise EOFError(buffer.decode())
            buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


async def test_serve_runs_until_ctrl_c(capsys: pytest.CaptureFixture[str]) -> None:
    process = await trio.lowlevel.open_process(
        [*PYTHON, "serve", "--port", "0", "--bots"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        first = await read_line(process.stdout, bytearray())
        prefix = "trio-phoenix: serving the demo channels on "
        assert first.startswith(prefix)
        url = first.removeprefix(prefix)

        argv = ("push", url, "room:lobby", "new_msg", '{"body": "hello"}', "--param", "user=t")
        assert await cli(*argv) == 0
        assert json_lines(capsys.readouterr().out) == [{"status": "ok", "response": {}}]

        process.send_signal(signal.SIGINT)
        with trio.fail_after(LIMIT):
            assert await process.wait() == 0
        assert (await process.stderr.receive_some()).decode() == "trio-phoenix: stopped\n"
    finally:
        process.kill()
        await process.wait()


def test_serve_on_a_busy_port_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with stdlib_socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run(["serve", "--port", str(port)]) == 3
    assert "address already in use" in capsys.readouterr().err.lower()


def test_demo_finishes_with_0() -> None:
    process = subprocess.run(
        [*PYTHON, "demo", "--pace", "0", "--name", "dee"],
        capture_output=True,
        text=True,
        timeout=LIMIT * 2,
        env=ENV,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    lines = process.stdout.splitlines()
    assert "* rejoined room:lobby" in lines
    assert "<alice> welcome back, dee!" in lines
    assert lines[-2:] == [
        "* left room:lobby",
        "# done: that was trio_phoenix on an in-process server (no Phoenix needed)",
    ]


async def test_ctrl_c_interrupts_listen_with_130(server: TestServer) -> None:
    process = await trio.lowlevel.open_process(
        [*PYTHON, "listen", server.url, "echo:x"], stderr=subprocess.PIPE, env=ENV
    )
    try:
        assert process.stderr is not None
        assert await read_line(process.stderr, bytearray()) == "trio-phoenix: joined echo:x: {}"
        process.send_signal(signal.SIGINT)
        with trio.fail_after(LIMIT):
            assert await process.wait() == 130
    finally:
        process.kill()
        await process.wait()


# -- under pressure ----------------------------------------------------------------------------


async def test_listen_into_a_closed_pipe_ends_quietly_with_0(server: TestServer) -> None:
    """``trio-phoenix listen ... | head -1``: the reader goes away; ``listen`` stops, exit 0."""
    process = await trio.lowlevel.open_process(
        [*PYTHON, "listen", "-q", server.url, "echo:pipe"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        await wait_joined(server, "echo:pipe")
        for n in range(2):
            server.broadcast("echo:pipe", "tick", {"n": n})
        assert json.loads(await read_line(process.stdout, bytearray()))["payload"] == {"n": 0}
        await process.stdout.aclose()  # like `head -1` exiting
        for n in range(2, 50):  # whatever comes next has nowhere to go
            server.broadcast("echo:pipe", "tick", {"n": n})
        with trio.fail_after(LIMIT):
            assert await process.wait() == 0
        errors = b""
        while chunk := await process.stderr.receive_some():
            errors += chunk
        assert errors == b""
    finally:
        process.kill()
        await process.wait()


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_serve_rejects_bad_ports(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["serve", "--port", port]) == 2
    assert "port" in capsys.readouterr().err


async def test_options_between_positionals(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["push", server.url, "echo:i", "echo", "--vsn", "1", '{"a": 1}', "--timeout", "5"]
    assert await cli(*argv) == 0
    assert json_lines(capsys.readouterr().out) == [{"status": "ok", "response": {"a": 1}}]
