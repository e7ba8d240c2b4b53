"""The fallback to LongPoll (``longpoll_fallback``) where WebSockets are blocked, against both
servers, over both WebSocket transports.

Each socket goes through a relay (`tests.proxies.block_websockets`) that lets LongPoll's HTTP
through and counts the WebSocket upgrades; three ways of blocking them:

* ``refused``: the server itself refuses, as Phoenix does at a mount with ``websocket: false``
  (the real app's ``/lp_only``: HTTP 404; the test server: ``reject_upgrades(404)``);
* ``blackholed``: the relay accepts the connection and never answers the upgrade, so the
  fallback timer decides;
* ``muted``: the upgrade succeeds, then nothing gets through either way, so the WebSocket fails
  phoenix.js's health check (its first heartbeat unanswered within the fallback time).

In every case the socket ends up on LongPoll with one `TransportFallback` event, channels work
there, and it stays there across a server-side disconnect and a `~Socket.reconnect`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Literal
from urllib.parse import urlsplit

import attrs
import pytest
import trio

from tests.proxies import BlockMode, WebSocketBlocker, block_websockets
from trio_phoenix import (
    ChannelJoined,
    Connected,
    ConnectError,
    LifecycleEvent,
    Subscription,
    TransportFallback,
    open_socket,
)
from trio_phoenix._longpoll import LongPollTransport
from trio_phoenix.testing import TestServerOptions as ServerOptions, open_test_server

from . import app
from .conftest import LIMIT, TESTING_OPTIONS, ScenarioServer, disconnect_me

Block = Literal["refused", "blackholed", "muted"]

#: Seconds a WebSocket has to open and answer its first heartbeat.
FALLBACK = 0.5

_MODES: dict[Block, BlockMode] = {"refused": "relay", "blackholed": "blackhole", "muted": "mute"}


@attrs.frozen
class Blocked:
    """How WebSockets are blocked, the URL to give the client, and the relay on the way."""

    block: Block
    url: str
    relay: WebSocketBlocker


@pytest.fixture(params=list(_MODES))
async def blocked(
    request: pytest.FixtureRequest, server: ScenarioServer
) -> AsyncIterator[Blocked]:
    block: Block = request.param
    if block != "refused":
        async with _through_relay(server.url, block) as relay:
            yield Blocked(block, relay.url_for(server.url), relay)
        return
    if server.kind == "phoenix":
        url = server.url.rsplit("/", 1)[0] + "/lp_only"
        async with _through_relay(url, block) as relay:
            yield Blocked(block, relay.url_for(url), relay)
        return
    options: ServerOptions = {**TESTING_OPTIONS, "path": "/lp_only"}
    async with open_test_server(app.channels(), **options) as test:
        test.reject_upgrades(404)  # Phoenix's answer at a mount with `websocket: false`
        async with _through_relay(test.url, block) as relay:
            yield Blocked(block, relay.url_for(test.url), relay)


def _through_relay(url: str, block: Block) -> AbstractAsyncContextManager[WebSocketBlocker]:
    port = urlsplit(url).port
    assert port is not None
    return block_websockets(port, _MODES[block])


async def _until(
    events: Subscription[LifecycleEvent], seen: list[LifecycleEvent], kind: type, rejoin: bool
) -> LifecycleEvent:
    """Collect events into ``seen`` up to the next of ``kind`` (a rejoin, if ``rejoin``)."""
    async for event in events:
        seen.append(event)
        if isinstance(event, kind) and (not rejoin or getattr(event, "rejoin", False)):
            return event
    raise AssertionError(f"the lifecycle stream ended before a {kind.__name__}")


@pytest.mark.transports("websocket", "trio-websocket")
async def test_falls_back_to_longpoll_for_the_socket_life(
    server: ScenarioServer, blocked: Blocked
) -> None:
    seen: list[LifecycleEvent] = []
    with trio.fail_after(LIMIT):
        start = trio.current_time()
        async with (
            open_socket(
                blocked.url,
                **server.options,
                longpoll_fallback=FALLBACK,
                params={"user": f"fallback-{blocked.block}"},
                wait_connected=False,
            ) as socket,
            socket.lifecycle() as events,
        ):
            fallback = await _until(events, seen, TransportFallback, rejoin=False)
            assert isinstance(fallback, TransportFallback)
            assert fallback.transport == "longpoll"
            if blocked.block == "refused":
                assert isinstance(fallback.error, ConnectError)
                assert fallback.error.status == 404
            elif blocked.block == "blackholed":
                assert fallback.error is not None
                assert f"did not open within {FALLBACK} s" in str(fallback.error)
            else:
                assert fallback.error is None  # it opened, but did not answer in time
            if blocked.block != "refused":
                assert trio.current_time() - start >= FALLBACK  # the timer decided
            await _until(events, seen, Connected, rejoin=False)
            assert isinstance(socket._transport, LongPollTransport)
            assert socket.transport == "longpoll"

            async with (
                socket.channel("echo:fallback", {"k": "v"}) as channel,
                channel.subscribe("news") as news,
            ):
                assert channel.join_response == {"k": "v"}
                assert await channel.push("echo", {"n": 1}) == {"n": 1}
                await channel.push("broadcast", {"event": "news", "payload": {"v": 1}})
                assert (await news.receive()).payload == {"v": 1}

                await disconnect_me(channel)  # a server-side disconnect ...
                await _until(events, seen, ChannelJoined, rejoin=True)
                assert await channel.push("echo", {"n": 2}) == {"n": 2}
                await socket.reconnect()  # ... and one asked for
                await _until(events, seen, ChannelJoined, rejoin=True)
                assert await channel.push("echo", {"n": 3}) == {"n": 3}
                await channel.push("broadcast", {"event": "news", "payload": {"v": 2}})
                assert (await news.receive()).payload == {"v": 2}

            assert isinstance(socket._transport, LongPollTransport)
            kinds = [type(event) for event in seen]
            assert kinds.count(TransportFallback) == 1
            # The one WebSocket attempt was the first: the choice is kept for the socket's life.
            assert blocked.relay.upgrades == 1
            # LongPoll three times (after the muted WebSocket's one connection).
            assert socket.statistics().connects == (4 if blocked.block == "muted" else 3)
