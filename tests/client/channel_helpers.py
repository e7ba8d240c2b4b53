"""The channel handlers of the channel tests (``tests/client/test_channel_*.py``): a slow join,
a recorder of joins and a channel that refuses some joins. The ``server`` fixture that routes
them (``slow:*``, ``rec:*``, ``flaky:*``) is in ``tests/client/conftest.py``.

The channel tests use a real client, the real in-process server and real loopback WebSockets;
anything timed runs on ``autojump_clock``, every test has an absolute deadline, and
``ServerConnection.received`` shows exactly what the client sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

import trio

from trio_phoenix.testing import ChannelSocket, EchoChannel, Reply


class SlowJoin(EchoChannel):
    """An echo channel whose join takes ``delay`` seconds (the socket process waits)."""

    delay: ClassVar[float] = 1.0

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        await trio.sleep(self.delay)
        return Reply.ok()


class Recorder(EchoChannel):
    """An echo channel that keeps the ``ChannelSocket`` of every join it accepted."""

    sockets: ClassVar[list[ChannelSocket]] = []

    async def after_join(self, socket: ChannelSocket) -> None:
        await trio.lowlevel.checkpoint()
        Recorder.sockets.append(socket)


class Flaky(EchoChannel):
    """Accepts the first join, refuses the next ``refusals``, then accepts again."""

    joins: ClassVar[int] = 0
    refusals: ClassVar[int] = 3

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        await trio.lowlevel.checkpoint()
        Flaky.joins += 1
        if 1 < Flaky.joins <= 1 + Flaky.refusals:
            return Reply.error({"reason": "busy"})
        return Reply.ok({"join": Flaky.joins})
