"""Channels: join and leave, join failures and timeouts, cancelled joins, joins made while
disconnected or interrupted by a drop, rejoin timeouts, one live channel per topic.

How these tests run: ``tests/client/channel_helpers.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio

from tests.client.channel_helpers import SlowJoin
from tests.helpers import LIMIT, wire
from trio_phoenix import (
    ChannelClosed,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    Disconnected,
    JoinError,
    JoinTimeout,
    LocalProtocolError,
    PhoenixTimeout,
    ReconnectScheduled,
    RejoinScheduled,
    ReplyLost,
    open_socket,
)
from trio_phoenix.testing import (
    ChannelSocket,
    EchoChannel,
    Reply,
    TestServer,
    demo_channels,
    open_test_server,
)


async def test_async_with_joins_and_leaves(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            async with socket.channel("echo:a", {"x": 1}) as channel:
                assert channel.join_response == {"x": 1}
                assert channel.params == {"x": 1}
                assert (channel.state, channel.join_ref) == (ChannelState.JOINED, "1")
                assert server.accepted_connections[0].topics == {"echo:a": "1"}
            assert channel.state is ChannelState.CLOSED
            # leave() waited for the server: it has dropped the channel already.
            assert server.accepted_connections[0].topics == {}
            assert wire(server) == [
                ("1", "1", "echo:a", "phx_join", {"x": 1}),
                ("1", "2", "echo:a", "phx_leave", {}),
            ]
            assert repr(channel) == "<trio_phoenix.Channel 'echo:a' closed>"


async def test_manual_join_and_leave(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:m", {"y": 2})
            assert channel.state is ChannelState.CLOSED
            assert channel.join_response is None
            assert await channel.join() == {"y": 2}
            await channel.wait_joined()
            await trio.sleep(11)  # past the join timeout: nothing more happens
            assert channel.statistics().state is ChannelState.JOINED
            assert [event for _, _, _, event, _ in wire(server)] == ["phx_join"]
            await channel.leave()
            await channel.leave()  # leaving a closed channel does nothing
            with pytest.raises(ChannelClosed) as info:
                await channel.wait_joined()
            assert info.value.reason == "left"
            with pytest.raises(LocalProtocolError, match="multiple times"):
                await channel.join()
            assert [await events.receive() for _ in range(2)] == [
                ChannelJoined(topic="echo:m", response={"y": 2}, rejoin=False),
                ChannelEnded(topic="echo:m", reason="left"),
            ]
            assert [event for _, _, _, event, _ in wire(server)] == ["phx_join", "phx_leave"]


async def test_leaving_a_channel_that_never_joined_does_nothing(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("echo:never-joined")
            await channel.leave()
            assert trio.current_time() == 0
            assert channel.statistics().state is ChannelState.CLOSED
            assert wire(server) == []


@pytest.mark.parametrize(
    ("topic", "params", "response"),
    [
        ("echo:e", {"reject": "nope"}, {"reason": "nope"}),
        ("nowhere:1", {}, {"reason": "unmatched topic"}),
        ("echo:c", {"crash": True}, {"reason": "join crashed"}),
    ],
    ids=["refused", "unmatched-topic", "join-crashed"],
)
async def test_a_refused_join_raises_join_error_and_is_not_retried(
    server: TestServer,
    topic: str,
    params: dict[str, Any],
    response: dict[str, str],
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel(topic, params)
            with pytest.raises(JoinError) as info:
                await channel.join()
            assert (info.value.topic, info.value.status, info.value.response) == (
                topic,
                "error",
                response,
            )
            assert channel.state is ChannelState.CLOSED
            assert await events.receive() == ChannelEnded(
                topic=topic, reason="join_failed", payload=response
            )
            await trio.sleep(30)
            assert wire(server) == [("1", "1", topic, "phx_join", params)]
            with pytest.raises(ChannelClosed):
                async with channel.subscribe():
                    pass
            # The topic is free again for a new channel.
            assert socket.statistics().channels == 0


@pytest.mark.parametrize(("channel_timeout", "expected"), [(..., 10.0), (2.0, 2.0)])
async def test_join_timeout(
    server: TestServer, channel_timeout: Any, expected: float, autojump_clock: trio.abc.Clock
) -> None:
    SlowJoin.delay = 15
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("slow:t", timeout=channel_timeout)
            with pytest.raises(JoinTimeout) as info:
                await channel.join()
            assert isinstance(info.value, PhoenixTimeout)
            assert isinstance(info.value, trio.TooSlowError)
            assert trio.current_time() == expected
            assert channel.state is ChannelState.CLOSED
            # The server was told to drop the join (once it gets to read again).
            await trio.sleep_until(16)
            assert wire(server) == [
                ("1", "1", "slow:t", "phx_join", {}),
                ("1", "2", "slow:t", "phx_leave", {}),
            ]
            # Its late join reply, leave reply and phx_close are dropped, not delivered.
            assert socket.statistics().dropped_messages == 3
            assert server.accepted_connections[0].topics == {}


async def test_a_cancelled_join_leaves(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    SlowJoin.delay = 3
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("slow:c")
            with pytest.raises(trio.TooSlowError) as info:
                with trio.fail_after(1):
                    await channel.join()
            assert not isinstance(info.value, PhoenixTimeout)
            # Leaving: the server reads the leave once its join is done.
            assert channel.state is ChannelState.LEAVING
            await trio.sleep(3)
            assert channel.statistics().state is ChannelState.CLOSED
            assert wire(server) == [
                ("1", "1", "slow:c", "phx_join", {}),
                ("1", "2", "slow:c", "phx_leave", {}),
            ]


async def test_a_join_made_while_disconnected_is_sent_on_connect(
    closed_port: int, autojump_clock: trio.abc.Clock
) -> None:
    async def serve_later(task_status: trio.TaskStatus[TestServer]) -> None:
        await trio.sleep(5)
        async with open_test_server(demo_channels(), port=closed_port) as late:
            task_status.started(late)
            await trio.sleep_forever()

    url = f"ws://127.0.0.1:{closed_port}/socket"
    with trio.fail_after(LIMIT):
        async with open_socket(url, wait_connected=False) as socket:
            # Nobody listens: the join keeps its 10 s deadline.
            with pytest.raises(JoinTimeout):
                await socket.channel("echo:early").join()
            assert trio.current_time() == 10
            assert socket.statistics().frames_sent == 0
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            server: TestServer = await nursery.start(serve_later)
            async with open_socket(url, wait_connected=False) as socket:
                channel = socket.channel("echo:early", {"e": 1})
                assert await channel.join() == {"e": 1}
                assert trio.current_time() - start < 10
                assert wire(server) == [("1", "1", "echo:early", "phx_join", {"e": 1})]
            nursery.cancel_scope.cancel()


async def test_a_join_interrupted_by_a_drop_is_resent_with_a_new_join_ref(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    SlowJoin.delay = 2
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("slow:i")
            async with trio.open_nursery() as nursery:

                async def drop_soon() -> None:
                    await server.accepted_connections[0].wait_message(
                        lambda m: m.topic == "slow:i"
                    )
                    await trio.sleep(1)
                    server.accepted_connections[0].drop()

                nursery.start_soon(drop_soon)
                assert await channel.join() == {}
            assert trio.current_time() == pytest.approx(1.01 + 2)
            assert [await events.receive() for _ in range(5)] == [
                Disconnected(code=1006, reason=None),
                ChannelErrored(
                    topic="slow:i", payload={"source": "transport", "reason": "connection_closed"}
                ),
                ReconnectScheduled(delay=0.01, attempt=1),
                Connected(connects=2),
                ChannelJoined(topic="slow:i", response={}, rejoin=False),
            ]
            assert wire(server, 0) == [("1", "1", "slow:i", "phx_join", {})]
            assert wire(server, 1) == [("2", "2", "slow:i", "phx_join", {})]


class SlowRejoin(EchoChannel):
    """Accepts the first join at once; the second join takes 5 s."""

    joins: ClassVar[int] = 0

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        SlowRejoin.joins += 1
        await trio.sleep(5 if SlowRejoin.joins == 2 else 0)
        return Reply.ok({"join": SlowRejoin.joins})


async def test_a_rejoin_that_times_out_is_retried_with_backoff(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    SlowRejoin.joins = 0
    server.channel("slowrejoin:*", SlowRejoin)
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("slowrejoin:1", timeout=2)
            await channel.join()
            await events.receive()
            with pytest.raises(ReplyLost):
                await channel.push("crash", {})
            start = trio.current_time()
            assert [await events.receive() for _ in range(5)] == [
                ChannelErrored(topic="slowrejoin:1", payload={"reason": "channel_crash"}),
                RejoinScheduled(topic="slowrejoin:1", delay=1.0, attempt=1),
                ChannelErrored(
                    topic="slowrejoin:1", payload={"source": "client", "reason": "join_timeout"}
                ),
                RejoinScheduled(topic="slowrejoin:1", delay=2.0, attempt=2),
                ChannelJoined(topic="slowrejoin:1", response={"join": 3}, rejoin=True),
            ]
            # Rejoin at +1 s, timed out at +3 s (its leave names the timed-out join ref),
            # next rejoin at +5 s, answered once the server is done with the slow join (+6 s).
            assert trio.current_time() - start == pytest.approx(6)
            assert [(jr, ref, event) for jr, ref, _, event, _ in wire(server)] == [
                ("1", "1", "phx_join"),
                ("1", "2", "crash"),
                ("3", "3", "phx_join"),
                ("3", "4", "phx_leave"),
                ("5", "5", "phx_join"),
            ]
            assert channel.join_ref == "5"
            assert server.accepted_connections[0].topics == {"slowrejoin:1": "5"}


async def test_one_live_channel_per_topic_and_one_join_per_channel(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            first = socket.channel("echo:d")
            await first.join()
            second = socket.channel("echo:d")
            with pytest.raises(LocalProtocolError, match="already has a joined channel"):
                await second.join()
            with pytest.raises(LocalProtocolError, match="multiple times"):
                await first.join()
            await first.leave()
            await second.join()
            assert second.join_ref == "3"
            assert wire(server) == [
                ("1", "1", "echo:d", "phx_join", {}),
                ("1", "2", "echo:d", "phx_leave", {}),
                ("3", "3", "echo:d", "phx_join", {}),
            ]
