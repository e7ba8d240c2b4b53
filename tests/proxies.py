"""Real proxy servers for the tests: ``pproxy`` (PyPI) as a subprocess on loopback.

``run_proxy("http")`` starts an HTTP CONNECT proxy, ``run_proxy("socks5")`` a SOCKS5 proxy
(``"socks4"`` too), optionally asking for ``USER`` / ``PASSWORD`` on every connection; its
verbose log tells which connections it made (``connections_to(port)``).
"""

from __future__ import annotations

import re
import socket as stdlib_socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from tests.helpers import REAL_LIMIT

USER, PASSWORD = "alice", "s3cret-pass"


@attrs.define
class RunningProxy:
    """A pproxy subprocess listening on ``port``; ``log`` is its verbose output so far."""

    scheme: str
    port: int
    auth: bool
    log: list[str] = attrs.field(factory=list)

    def url(self, user: str | None = USER, password: str | None = PASSWORD) -> str:
        userinfo = f"{user}:{password}@" if self.auth and user is not None else ""
        return f"{self.scheme}://{userinfo}127.0.0.1:{self.port}"

    def connections_to(self, port: int) -> list[str]:
        """The log lines of the connections the proxy made to ``port``."""
        return [line for line in self.log if re.search(rf" -> \S+:{port}\b", line)]


def free_port() -> int:
    with stdlib_socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _read_log(process: trio.Process, proxy: RunningProxy, ready: trio.Event) -> None:
    assert process.stdout is not None
    pending = b""
    async for chunk in process.stdout:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            proxy.log.append(text)
            if text.startswith("Serving on"):
                ready.set()


@asynccontextmanager
async def run_proxy(scheme: str, *, auth: bool = False) -> AsyncIterator[RunningProxy]:
    """Run ``pproxy -l scheme://127.0.0.1:PORT[#user:password] -v`` for the block."""
    port = free_port()
    users = f"#{USER}:{PASSWORD}" if auth else ""
    command = [sys.executable, "-u", "-m", "pproxy", "-v", "--auth", "0"]
    command += ["-l", f"{scheme}://127.0.0.1:{port}/{users}"]
    proxy = RunningProxy(scheme, port, auth)
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            nursery.start_soon(_read_log, process, proxy, ready)
            with trio.fail_after(REAL_LIMIT):
                await ready.wait()
            yield proxy
            nursery.cancel_scope.cancel()
    finally:
        process.terminate()
        with trio.CancelScope(shield=True):
            await process.wait()
            assert process.stdout is not None
            await process.stdout.aclose()
