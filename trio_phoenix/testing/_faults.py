"""Network faults: a gate that can stall traffic, and a TCP stream wrapper that obeys it.

Both the test server (under its WebSocket layer) and the fault proxy move bytes through these, so
"stall", "resume" and "drop" mean the same thing everywhere:

* *stall*: no byte moves in either direction, as on a half-open connection. Bytes the peer sends
  pile up in the kernel; bytes we would send are held back. Nothing is lost; ``resume`` lets it
  all through, in order.
* *drop*: the TCP socket is closed at once, with no WebSocket close frame; the peer sees the
  stream end (close code 1006 on the WebSocket level). Tasks blocked on the stream wake up with
  ``trio.ClosedResourceError``.

The stream also records when data last arrived, which is what Phoenix's idle timeout measures
("no data received for ``timeout`` ms", pings included).
"""

from __future__ import annotations

from typing import final

import attrs
import trio

__all__ = ["Gate", "GatedStream"]


@final
@attrs.define(eq=False)
class Gate:
    """An open/stalled switch that tasks can wait on; closing it wakes every waiter for good."""

    _stalled: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _lot: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot, init=False)

    @property
    def stalled(self) -> bool:
        """Whether traffic is currently held back."""
        return self._stalled

    def stall(self) -> None:
        """Hold back all traffic until `resume` (idempotent)."""
        self._stalled = True

    def resume(self) -> None:
        """Let traffic through again (idempotent)."""
        self._stalled = False
        self._lot.unpark_all()

    def close(self) -> None:
        """Wake every waiter; from now on `wait_open` raises ``trio.ClosedResourceError``."""
        self._closed = True
        self._lot.unpark_all()

    async def wait_open(self) -> None:
        """Return once the gate is open (a checkpoint even when it already is).

        Raises:
            trio.ClosedResourceError: the gate was closed.
        """
        await trio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the connection was dropped")
            if not self._stalled:
                return
            await self._lot.park()


@final
@attrs.define(eq=False)
class GatedStream(trio.abc.HalfCloseableStream):
    """A ``trio.SocketStream`` whose traffic a `Gate` can stall and which can be dropped."""

    _inner: trio.SocketStream
    gate: Gate = attrs.field(factory=Gate, init=False)
    #: ``trio.current_time()`` when data last arrived (or when the stream was wrapped).
    last_received: float = attrs.field(factory=trio.current_time, init=False)
    _dropped: bool = attrs.field(default=False, init=False)

    @property
    def dropped(self) -> bool:
        """Whether `drop` was called."""
        return self._dropped

    def peer(self) -> tuple[str, int]:
        """The remote address as ``(host, port)``."""
        host, port, *_ = self._inner.socket.getpeername()
        return str(host), int(port)

    def drop(self) -> None:
        """Close the TCP socket now, without any goodbye (idempotent)."""
        self._dropped = True
        self.gate.close()
        self._inner.socket.close()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send when the gate is open."""
        await self.gate.wait_open()
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Delegate to the socket."""
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close our direction."""
        await self.gate.wait_open()
        await self._inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive when the gate is open; data that arrives during a stall waits for `resume`."""
        await self.gate.wait_open()
        data = await self._inner.receive_some(max_bytes)
        if self.gate.stalled:
            await self.gate.wait_open()
        if data:
            self.last_received = trio.current_time()
        return bytes(data)

    async def aclose(self) -> None:
        """Close the socket (idempotent) and wake anything stalled on it."""
        self.gate.close()
        await self._inner.aclose()
