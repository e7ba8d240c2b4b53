"""A fault-injecting TCP proxy, to put in front of any server (a real Phoenix included).

Each accepted connection opens its own connection to the target and relays bytes both ways.
Per connection you can `ProxyConnection.drop` it (both sockets closed at once: the client sees
the stream end without a WebSocket close frame), `ProxyConnection.stall` it (nothing is relayed
either way until `ProxyConnection.resume`: a half-open connection), or give it a latency with
`ProxyConnection.delay` (every chunk is held that long; order and throughput are kept). The
proxy itself can `FaultProxy.refuse` new connections: they are accepted and reset at once.

Delays use ``trio.current_time()``, so a ``MockClock`` drives them.
"""

from __future__ import annotations

import math
import socket as stdlib_socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Final, final
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio

from .._groups import owning_nursery
from ._faults import Gate

__all__ = ["FaultProxy", "ProxyConnection", "ProxyStatistics", "open_fault_proxy"]

_CHUNK: Final = 65536
_EOF: Final = b""


@attrs.frozen(kw_only=True)
class ProxyStatistics:
    """Counters of a `FaultProxy`."""

    connections_open: int
    connections_accepted: int
    connections_refused: int


@final
@attrs.define(eq=False, repr=False)
class ProxyConnection:
    """One relayed client connection and its faults."""

    _client: trio.SocketStream
    _upstream: trio.SocketStream | None = attrs.field(default=None, init=False)
    _gate: Gate = attrs.field(factory=Gate, init=False)
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False)
    _done: trio.Event = attrs.field(factory=trio.Event, init=False)
    _delay: float = attrs.field(default=0.0, init=False)
    #: Bytes relayed client → target.
    bytes_up: int = attrs.field(default=0, init=False)
    #: Bytes relayed target → client.
    bytes_down: int = attrs.field(default=0, init=False)

    def __repr__(self) -> str:
        return f"<trio_phoenix.testing.ProxyConnection up={self.bytes_up} down={self.bytes_down}>"

    @property
    def closed(self) -> bool:
        """Whether both sides are closed."""
        return self._done.is_set()

    @property
    def stalled(self) -> bool:
        """Whether relaying is stalled."""
        return self._gate.stalled

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before relaying it, in both directions (0: none)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = seconds

    def stall(self) -> None:
        """Stop relaying in both directions; bytes wait, in order, for `resume`."""
        self._gate.stall()

    def resume(self) -> None:
        """Relay again, starting with everything held back."""
        self._gate.resume()

    def drop(self) -> None:
        """Close both sockets now (no goodbye to either side)."""
        self._gate.close()
        _close_now(self._client)
        if self._upstream is not None:
            _close_now(self._upstream)
        self._scope.cancel()

    async def wait_closed(self) -> None:
        """Wait until the connection is over."""
        await self._done.wait()

    async def _run(self, target: tuple[str, int]) -> None:
        try:
            with self._scope:
                try:
                    self._upstream = await trio.open_tcp_stream(*target)
                except OSError:
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, self._client, self._upstream, True)
                    nursery.start_soon(self._pump, self._upstream, self._client, False)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._client)
                if self._upstream is not None:
                    await trio.aclose_forcefully(self._upstream)
            self._done.set()

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, up: bool) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward, receive, sink, up)
            async with send:
                try:
                    while True:
                        await self._gate.wait_open()
                        data = await source.receive_some(_CHUNK)
                        send.send_nowait((trio.current_time(), data))
                        if not data:
                            return
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._scope.cancel()

    async def _forward(
        self,
        receive: trio.MemoryReceiveChannel[tuple[float, bytes]],
        sink: trio.SocketStream,
        up: bool,
    ) -> None:
        try:
            async for received_at, data in receive:
                if self._delay > 0:
                    await trio.sleep_until(received_at + self._delay)
                await self._gate.wait_open()
                if data == _EOF:
                    await sink.send_eof()
                    return
                await sink.send_all(data)
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._scope.cancel()


@final
@attrs.define(eq=False, repr=False)
class FaultProxy:
    """A TCP proxy on ``127.0.0.1`` in front of ``target_host:target_port``.

    Example:
        >>> async with open_fault_proxy("127.0.0.1", server.port) as proxy:
        ...     url = proxy.url_for(server.url)   # same URL, through the proxy
    """

    target_host: str
    target_port: int
    host: str = attrs.field(default="127.0.0.1", kw_only=True)
    _requested_port: int = attrs.field(default=0, kw_only=True, alias="port")
    #: The connections being relayed now.
    connections: list[ProxyConnection] = attrs.field(factory=list, init=False)
    #: Every connection accepted, in order.
    accepted_connections: list[ProxyConnection] = attrs.field(factory=list, init=False)
    _port: int | None = attrs.field(default=None, init=False)
    _refusing: bool = attrs.field(default=False, init=False)
    _refused: int = attrs.field(default=0, init=False)
    _changed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot, init=False)

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "not started"
        return (
            f"<trio_phoenix.testing.FaultProxy {where} -> {self.target_host}:{self.target_port}>"
        )

    @property
    def target(self) -> tuple[str, int]:
        """``(target_host, target_port)``."""
        return (self.target_host, self.target_port)

    @property
    def port(self) -> int:
        """The listening port.

        Raises:
            RuntimeError: the proxy has not started.
        """
        if self._port is None:
            raise RuntimeError("the proxy has not started yet")
        return self._port

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (scheme, path, query kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.host}:{self.port}"))

    def refuse(self, refuse: bool = True) -> None:
        """Reset new connections at once (``refuse(False)`` relays them again)."""
        self._refusing = refuse

    async def wait_connections(self, count: int) -> ProxyConnection:
        """Wait until ``count`` connections have been accepted in all; return the last of them."""
        await trio.lowlevel.checkpoint()
        while len(self.accepted_connections) < count:
            await self._changed.park()
        return self.accepted_connections[count - 1]

    def statistics(self) -> ProxyStatistics:
        """Counters for tests."""
        return ProxyStatistics(
            connections_open=len(self.connections),
            connections_accepted=len(self.accepted_connections),
            connections_refused=self._refused,
        )

    async def run(
        self, *, task_status: trio.TaskStatus[FaultProxy] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Relay until cancelled; supports ``proxy = await nursery.start(proxy.run)``."""
        listeners = await trio.open_tcp_listeners(self._requested_port, host=self.host)
        self._port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio.serve_listeners, self._handle, listeners))
            task_status.started(self)

    async def _handle(self, client: trio.SocketStream) -> None:
        if self._refusing:
            self._refused += 1
            _close_now(client)
            await trio.lowlevel.checkpoint()
            return
        connection = ProxyConnection(client)
        self.connections.append(connection)
        self.accepted_connections.append(connection)
        self._changed.unpark_all()
        try:
            await connection._run(self.target)
        finally:
            self.connections.remove(connection)
            self._changed.unpark_all()


def _close_now(stream: trio.SocketStream) -> None:
    """Close with a TCP reset (linger 0), the way a dying peer or middlebox does."""
    try:
        stream.socket.setsockopt(
            stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    except OSError:
        pass
    stream.socket.close()


@asynccontextmanager
async def open_fault_proxy(
    target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[FaultProxy]:
    """Run a `FaultProxy` for the duration of an ``async with`` block."""
    proxy = FaultProxy(target_host, target_port, host=host, port=port)
    async with owning_nursery() as nursery:
        await nursery.start(proxy.run)
        yield proxy
