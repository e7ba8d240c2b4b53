"""Proxies for the tests, on loopback.

``run_proxy("http")`` starts a real HTTP CONNECT proxy (``pproxy`` from PyPI, as a subprocess),
``run_proxy("socks5")`` a SOCKS5 proxy (``"socks4"`` too), optionally asking for ``USER`` /
``PASSWORD`` on every connection; its verbose log tells which connections it made
(``connections_to(port)``).

``block_websockets(port, mode)`` is a relay in front of a server that lets plain HTTP (LongPoll)
through and mistreats WebSocket upgrades, as a middlebox that blocks WebSockets does.
"""

from __future__ import annotations

import re
import socket as stdlib_socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Final, Literal

import attrs
import trio

from tests.helpers import REAL_LIMIT, pipe
from trio_phoenix._groups import owning_nursery

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


#: How `WebSocketBlocker` treats a WebSocket upgrade: ``"relay"`` passes it on (the server
#: answers), ``"blackhole"`` accepts the connection and never answers, ``"mute"`` passes on the
#: server's answer and then nothing more, either way.
BlockMode = Literal["relay", "blackhole", "mute"]

_CHUNK: Final = 65536


@attrs.define
class WebSocketBlocker:
    """A TCP relay on loopback in front of the server at ``target_port``: it relays HTTP and
    treats each WebSocket upgrade (a request for ``.../websocket``) as ``mode`` says."""

    target_port: int
    mode: BlockMode
    port: int = 0
    #: WebSocket upgrade requests seen.
    upgrades: int = 0

    def url_for(self, url: str) -> str:
        """``url`` through the relay (its port instead of the server's)."""
        return url.replace(f":{self.target_port}/", f":{self.port}/", 1)

    async def serve(self, client: trio.SocketStream) -> None:
        """Handle one client connection."""
        try:
            head = await _read_until(client, b"\r\n")
            upgrade = b"/websocket" in head.partition(b"\r\n")[0]
            self.upgrades += upgrade
            if upgrade and self.mode == "blackhole":
                await _swallow(client)
                return
            async with await trio.open_tcp_stream("127.0.0.1", self.target_port) as upstream:
                await upstream.send_all(head)
                if upgrade and self.mode == "mute":
                    await client.send_all(await _read_until(upstream, b"\r\n\r\n"))
                    await _swallow(client)
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pipe, client, upstream, nursery.cancel_scope)
                    nursery.start_soon(pipe, upstream, client, nursery.cancel_scope)
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError):
            pass
        finally:
            await trio.aclose_forcefully(client)


async def _read_until(stream: trio.SocketStream, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = await stream.receive_some(_CHUNK)
        if not chunk:
            raise EOFError
        data += chunk
    return data


async def _swallow(stream: trio.SocketStream) -> None:
    """Read and drop whatever comes, until the peer closes."""
    while await stream.receive_some(_CHUNK):
        pass


@asynccontextmanager
async def block_websockets(target_port: int, mode: BlockMode) -> AsyncIterator[WebSocketBlocker]:
    """Run a `WebSocketBlocker` in front of ``127.0.0.1:target_port`` for the block."""
    blocker = WebSocketBlocker(target_port, mode)
    async with owning_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, blocker.serve, 0, host="127.0.0.1")
        )
        blocker.port = listeners[0].socket.getsockname()[1]
        yield blocker
