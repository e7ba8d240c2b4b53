"""Channels: join and leave, join failures, rejoin after reconnects and crashes, server-side
closes, stale join refs, and push/reply with every outcome (ok, error, timeout, cancelled,
lost, buffered, binary, unencodable).

Real client, real in-process server, real loopback WebSockets; anything timed runs on
``autojump_clock``, every test has an absolute deadline, and ``ServerConnection.received``
shows exactly what the client sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio

from tests.helpers import LIMIT, wire
from trio_phoenix import (
    Channel,
    ChannelClosed,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    ConnectFailed,
    Disconnected,
    EncodeError,
    JoinError,
    JoinTimeout,
    LocalProtocolError,
    Message,
    PhoenixTimeout,
    PushError,
    PushTimeout,
    ReconnectScheduled,
    RejoinScheduled,
    ReplyLost,
    Socket,
    SocketState,
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
from trio_phoenix.testing._pytest_plugin import PhoenixServerFactory


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


@pytest.fixture
async def server(phoenix_server_factory: PhoenixServerFactory) -> TestServer:
    SlowJoin.delay = 1.0
    Recorder.sockets = []
    Flaky.joins = 0
    channels = {
        **demo_channels(),
        "slow:*": SlowJoin,
        "rec:*": Recorder,
        "flaky:*": Flaky,
    }
    return await phoenix_server_factory(channels)


# -- join and leave --------------------------------------------------------------------------


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


# -- rejoin ----------------------------------------------------------------------------------


async def test_rejoin_after_a_reconnect_uses_a_new_join_ref(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("echo:r", {"p": 1})
            await channel.join()
            await channel.push("echo", {"n": 1})
            server.accepted_connections[0].drop()
            await server.wait_connections(2)
            await channel.wait_joined()
            assert await channel.push("echo", {"n": 2}) == {"n": 2}
            assert channel.join_ref == "3"
            assert wire(server, 1) == [
                ("3", "3", "echo:r", "phx_join", {"p": 1}),
                ("3", "4", "echo:r", "echo", {"n": 2}),
            ]
            assert channel.join_response == {"p": 1}


async def test_rejoin_after_a_crash_waits_for_the_rejoin_backoff(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:x")
            await channel.join()
            await events.receive()
            with pytest.raises(ReplyLost) as info:
                await channel.push("crash", {})
            assert (info.value.event, info.value.reason) == ("crash", {"reason": "channel_crash"})
            crashed_at = trio.current_time()
            assert channel.state is ChannelState.ERRORED
            connection = server.accepted_connections[0]
            rejoin = await connection.wait_message(
                lambda m: m.event == "phx_join" and m.join_ref != "1"
            )
            assert trio.current_time() - crashed_at == pytest.approx(1.0)
            assert (rejoin.join_ref, rejoin.ref) == ("3", "3")
            await channel.wait_joined()
            assert [await events.receive() for _ in range(3)] == [
                ChannelErrored(topic="echo:x", payload={"reason": "channel_crash"}),
                RejoinScheduled(topic="echo:x", delay=1.0, attempt=1),
                ChannelJoined(topic="echo:x", response={}, rejoin=True),
            ]
            assert connection.topics == {"echo:x": "3"}


async def test_refused_rejoins_back_off_1_2_5_10_seconds(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("flaky:1")
            assert await channel.join() == {"join": 1}
            await events.receive()
            with pytest.raises(ReplyLost):
                await channel.push("crash", {})
            start = trio.current_time()
            seen = [await events.receive() for _ in range(6)]
            assert seen == [
                ChannelErrored(topic="flaky:1", payload={"reason": "channel_crash"}),
                RejoinScheduled(topic="flaky:1", delay=1.0, attempt=1),
                RejoinScheduled(topic="flaky:1", delay=2.0, attempt=2),
                RejoinScheduled(topic="flaky:1", delay=5.0, attempt=3),
                RejoinScheduled(topic="flaky:1", delay=10.0, attempt=4),
                ChannelJoined(topic="flaky:1", response={"join": 5}, rejoin=True),
            ]
            assert trio.current_time() - start == pytest.approx(18.0)
            assert [jr for jr, _, _, event, _ in wire(server) if event == "phx_join"] == [
                "1",
                "3",
                "4",
                "5",
                "6",
            ]
            assert channel.join_response == {"join": 5}


async def test_phx_close_ends_the_channel_for_good(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:s")
            await channel.join()
            await events.receive()
            async with channel.subscribe() as messages:
                with pytest.raises(ChannelClosed) as info:
                    await channel.push("stop", {})
                assert info.value.reason == "server_closed"
                with pytest.raises(ChannelClosed) as info:
                    await messages.receive()
                assert (info.value.topic, info.value.reason) == ("echo:s", "server_closed")
            assert channel.state is ChannelState.CLOSED
            assert await events.receive() == ChannelEnded(
                topic="echo:s", reason="server_closed", payload={}
            )
            with pytest.raises(ChannelClosed):
                await channel.push("echo", {})
            with pytest.raises(ChannelClosed):
                async with channel.subscribe():
                    pass
            await trio.sleep(30)
            assert [event for _, _, _, event, _ in wire(server)] == ["phx_join", "stop"]


async def test_stop_with_a_reply_answers_the_push_then_closes(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.lifecycle() as events:
            channel = socket.channel("echo:sr")
            await channel.join()
            await events.receive()
            assert await channel.push("stop_reply", {}) == {}
            assert await events.receive() == ChannelEnded(
                topic="echo:sr", reason="server_closed", payload={}
            )
            assert channel.state is ChannelState.CLOSED
            with pytest.raises(ChannelClosed):
                await channel.wait_joined()


async def test_messages_with_a_stale_join_ref_are_dropped(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("rec:1")
            async with channel.subscribe("note") as notes:
                await channel.join()
                with pytest.raises(ReplyLost):
                    await channel.push("crash", {})
                await trio.sleep(1.5)  # rejoined
                assert channel.join_ref == "3"
                old, new = Recorder.sockets
                assert (old.join_ref, new.join_ref) == ("1", "3")
                old.push("note", {"from": "old"})  # [ "1", null, "rec:1", "note", ...]
                new.push("note", {"from": "new"})
                server.broadcast("rec:1", "note", {"from": "broadcast"})
                assert await channel.push("echo", {}) == {}
                received = [notes.receive_nowait() for _ in range(2)]
                assert [(m.join_ref, m.payload) for m in received] == [
                    ("3", {"from": "new"}),
                    (None, {"from": "broadcast"}),
                ]
                with pytest.raises(trio.WouldBlock):
                    notes.receive_nowait()
                assert socket.statistics().dropped_messages == 1


# -- push ------------------------------------------------------------------------------------


async def test_push_returns_the_ok_response(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:p") as channel:
            assert await channel.push("echo", {"a": [1, "two"]}) == {"a": [1, "two"]}
            assert await channel.push("echo") == {}
            assert wire(server)[1:3] == [
                ("1", "2", "echo:p", "echo", {"a": [1, "two"]}),
                ("1", "3", "echo:p", "echo", {}),
            ]


async def test_concurrent_pushes_go_out_whole_and_in_ref_order(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """A push writes its frame in its own task when nobody is writing, else the writer does:
    either way frames keep the core's order, and a push cancelled while its frame is written
    does not cut the frame."""
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:o") as channel:
            scopes = [trio.CancelScope() for _ in range(60)]
            replied: list[int] = []

            async def pusher(index: int) -> None:
                with scopes[index]:
                    assert await channel.push("echo", {"i": index}) == {"i": index}
                    replied.append(index)

            async def canceller() -> None:
                await trio.lowlevel.checkpoint()  # the pushes are being written now
                for scope in scopes[::3]:
                    scope.cancel()

            async with trio.open_nursery() as nursery:
                for index in range(60):
                    nursery.start_soon(pusher, index)
                nursery.start_soon(canceller)
            sent = [payload["i"] for _, _, _, event, payload in wire(server) if event == "echo"]
            refs = [int(ref or 0) for _, ref, _, event, _ in wire(server) if event == "echo"]
            assert refs == sorted(refs)
            assert set(replied) == {index for index in range(60) if index % 3}
            assert set(replied) <= set(sent)
            assert socket.statistics().malformed_frames == 0
            assert await channel.push("echo", {"still": "fine"}) == {"still": "fine"}


async def test_an_error_reply_raises_push_error(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:pe") as channel:
            with pytest.raises(PushError) as info:
                await channel.push("error", {"why": "bad"})
            assert (info.value.event, info.value.status, info.value.response) == (
                "error",
                "error",
                {"why": "bad"},
            )
            assert channel.statistics().pending_replies == 0


@pytest.mark.parametrize(
    ("socket_timeout", "channel_timeout", "expected"),
    [(..., ..., 10.0), (3.0, ..., 3.0), (..., 2.0, 2.0)],
    ids=["default", "socket", "channel"],
)
async def test_no_reply_raises_push_timeout(
    server: TestServer,
    socket_timeout: Any,
    channel_timeout: Any,
    expected: float,
    autojump_clock: trio.abc.Clock,
) -> None:
    options = {} if socket_timeout is ... else {"timeout": socket_timeout}
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **options) as socket,
            socket.channel("echo:nr", timeout=channel_timeout) as channel,
        ):
            start = trio.current_time()
            with pytest.raises(PushTimeout) as info:
                await channel.push("noreply", {})
            assert isinstance(info.value, PhoenixTimeout)
            assert isinstance(info.value, trio.TooSlowError)
            assert trio.current_time() - start == expected
            assert channel.statistics().pending_replies == 0
            assert socket.statistics().pending_replies == 0


@pytest.mark.parametrize("where", ["socket", "channel"])
async def test_timeout_none_leaves_timing_to_the_caller(
    server: TestServer, where: str, autojump_clock: trio.abc.Clock
) -> None:
    socket_options: dict[str, Any] = {"timeout": None} if where == "socket" else {}
    channel_options: dict[str, Any] = {"timeout": None} if where == "channel" else {}
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url, **socket_options) as socket,
            socket.channel("echo:tn", **channel_options) as channel,
        ):
            with trio.move_on_after(100) as scope:
                await channel.push("noreply", {})
            assert scope.cancelled_caught
            assert trio.current_time() == pytest.approx(100)
            assert channel.statistics().pending_replies == 0
            assert socket.statistics().pending_replies == 0


async def test_caller_scopes_cancel_a_push_cleanly(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:cs") as channel:
            with pytest.raises(trio.TooSlowError) as info:
                with trio.fail_after(1):
                    await channel.push("reply_later", {"delay": 2, "payload": {"late": 1}})
            assert not isinstance(info.value, PushTimeout)
            assert channel.statistics().pending_replies == 0
            assert socket.statistics().pending_replies == 0
            with trio.move_on_after(0.5) as scope:
                await channel.push("noreply", {})
            assert scope.cancelled_caught
            assert channel.statistics().pending_replies == 0
            await trio.sleep(2)  # the late reply arrives and is ignored
            assert socket.statistics().dropped_messages == 1
            assert await channel.push("echo", {"still": "fine"}) == {"still": "fine"}
            # Already cancelled: nothing is sent at all.
            sent = socket.statistics().frames_sent
            with trio.CancelScope() as cancelled:
                cancelled.cancel()
                await channel.push("echo", {})
            assert socket.statistics().frames_sent == sent


async def test_pushes_during_the_join_are_buffered_and_sent_after_it(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    SlowJoin.delay = 1
    results: list[Any] = []
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("slow:b")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(channel.join)
                await server.accepted_connections[0].wait_message(lambda m: m.topic == "slow:b")

                async def push(n: int) -> None:
                    results.append(await channel.push("echo", {"n": n}))

                nursery.start_soon(push, 1)
                await trio.sleep(0.1)
                nursery.start_soon(push, 2)
                await trio.sleep(0.1)
                assert channel.state is ChannelState.JOINING
                assert channel.statistics().buffered_pushes == 2
                assert socket.statistics().buffered_pushes == 2
            assert results == [{"n": 1}, {"n": 2}]
            assert wire(server) == [
                ("1", "1", "slow:b", "phx_join", {}),
                ("1", "2", "slow:b", "echo", {"n": 1}),
                ("1", "3", "slow:b", "echo", {"n": 2}),
            ]
            await channel.leave()


async def _disconnect_and_keep_out(server: TestServer, socket: Socket, channel: Channel) -> None:
    """Drop the connection and refuse reconnects until the test lets the client back in."""
    server.reject_upgrades(503)
    async with socket.lifecycle() as events:
        server.accepted_connections[0].drop()
        assert await events.receive() == Disconnected(code=1006, reason=None)
    assert channel.state is ChannelState.ERRORED
    assert socket.state is SocketState.WAITING


async def test_pushes_during_a_reconnect_are_sent_after_the_rejoin(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url) as socket,
            socket.channel("echo:b", {"q": 1}) as channel,
        ):
            await _disconnect_and_keep_out(server, socket, channel)
            async with trio.open_nursery() as nursery, socket.lifecycle() as events:
                result: list[Any] = []

                async def push() -> None:
                    result.append(await channel.push("echo", {"buffered": True}))

                nursery.start_soon(push)
                await trio.sleep(0.005)
                assert socket.statistics().buffered_pushes == 1
                assert isinstance(await events.receive(), ConnectFailed)
                server.reject_upgrades(None)
            assert result == [{"buffered": True}]
            assert channel.join_ref == "2"
            assert wire(server, 1) == [
                ("2", "2", "echo:b", "phx_join", {"q": 1}),
                ("2", "3", "echo:b", "echo", {"buffered": True}),
            ]


async def test_a_buffered_push_that_times_out_is_never_sent(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            async with socket.channel("echo:bt", timeout=1) as channel:
                await _disconnect_and_keep_out(server, socket, channel)
                with pytest.raises(PushTimeout):
                    await channel.push("echo", {"n": "timed out"})
                with trio.move_on_after(0.5):
                    await channel.push("echo", {"n": "cancelled"})
                assert socket.statistics().buffered_pushes == 0
                server.reject_upgrades(None)
                await channel.wait_joined()
                assert await channel.push("echo", {"n": "after"}) == {"n": "after"}
                join_ref = channel.join_ref
            assert wire(server, 1)[:2] == [
                (join_ref, join_ref, "echo:bt", "phx_join", {}),
                (join_ref, str(int(join_ref or 0) + 1), "echo:bt", "echo", {"n": "after"}),
            ]


async def test_a_buffered_push_keeps_its_original_deadline(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:dl") as channel:
            await _disconnect_and_keep_out(server, socket, channel)
            start = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def let_in_later() -> None:
                    await trio.sleep(4)
                    server.reject_upgrades(None)

                nursery.start_soon(let_in_later)
                with pytest.raises(PushTimeout):
                    await channel.push("noreply", {})
            # Sent after the rejoin (about 4-5 s in), but still timed out 10 s after the call.
            assert trio.current_time() - start == pytest.approx(10)
            assert [e for _, _, _, e, _ in wire(server, 1)] == ["phx_join", "noreply"]


async def test_a_dropped_connection_loses_the_reply(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:rl") as channel:
            async with trio.open_nursery() as nursery:

                async def drop_later() -> None:
                    await trio.sleep(1)
                    server.accepted_connections[0].drop()

                nursery.start_soon(drop_later)
                with pytest.raises(ReplyLost) as info:
                    await channel.push("reply_later", {"delay": 5, "payload": {}})
            assert trio.current_time() == pytest.approx(1)
            assert info.value.event == "reply_later"
            assert info.value.reason == {"source": "transport", "reason": "connection_closed"}
            assert channel.statistics().pending_replies == 0
            await channel.wait_joined()


async def test_binary_payloads(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url) as socket,
            socket.channel("echo:bin") as channel,
            channel.subscribe("bin") as messages,
        ):
            assert await channel.push("echo", b"\x00\x01\xff") == b"\x00\x01\xff"
            assert wire(server)[1] == ("1", "2", "echo:bin", "echo", b"\x00\x01\xff")
            await channel.push("push_binary", {"event": "bin", "bytes": [1, 2]})
            await channel.push("broadcast_binary", {"event": "bin", "bytes": [3]})
            assert [await messages.receive() for _ in range(2)] == [
                Message(
                    join_ref="1", ref=None, topic="echo:bin", event="bin", payload=b"\x01\x02"
                ),
                Message(join_ref=None, ref=None, topic="echo:bin", event="bin", payload=b"\x03"),
            ]


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("echo", {"x": object()}),
        ("echo", {"x": float("nan")}),
        ("echo", {"x": {1, 2}}),
        ("e" * 256, b"binary event name too long"),
    ],
    ids=["object", "nan", "set", "long-binary-field"],
)
async def test_an_unencodable_payload_raises_and_sends_nothing(
    server: TestServer, event: str, payload: Any, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:enc") as channel:
            sent = socket.statistics().frames_sent
            with pytest.raises(EncodeError):
                await channel.push(event, payload)
            assert socket.statistics().frames_sent == sent
            assert channel.statistics().pending_replies == 0
            assert await channel.push("echo", {"ok": 1}) == {"ok": 1}
            assert [e for _, _, _, e, _ in wire(server)] == ["phx_join", "echo"]


async def test_push_rules(server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket:
            channel = socket.channel("echo:rules")
            with pytest.raises(LocalProtocolError, match="before joining"):
                await channel.push("echo", {})
            await channel.join()
            for reserved in ("phx_join", "phx_leave", "phx_reply", "phx_error", "phx_close"):
                with pytest.raises(LocalProtocolError, match="reserved"):
                    await channel.push(reserved, {})
            await channel.leave()
            with pytest.raises(ChannelClosed) as info:
                await channel.push("echo", {})
            assert info.value.reason == "left"
            assert [e for _, _, _, e, _ in wire(server)] == ["phx_join", "phx_leave"]
