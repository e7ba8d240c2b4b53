"""The socket's structure and observability: nursery ownership, closing, exceptions, the
lifecycle stream, state, statistics, ping and logging.

Real client, real in-process server, real loopback WebSockets; anything timed runs on
``autojump_clock`` and every test has an absolute deadline.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from tests.conftest import ClientHygiene, client_tasks
from tests.helpers import LIMIT, next_events, wire
from trio_phoenix import (
    Channel,
    ChannelClosed,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    Connected,
    Disconnected,
    PhoenixError,
    ReconnectScheduled,
    RejoinScheduled,
    ReplyLost,
    Socket,
    SocketClosed,
    SocketState,
    connect_socket,
    open_socket,
)
from trio_phoenix._transports import TransportName
from trio_phoenix.testing import (
    Accept,
    ConnectInfo,
    Reject,
    TestServer,
    demo_channels,
    open_test_server,
)

# -- open_socket owns its tasks ------------------------------------------------------------


async def test_open_socket_returns_once_connected(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            assert socket.state is SocketState.CONNECTED
            assert len(phoenix_server.connections) == 1
            assert socket.statistics().connects == 1
            assert socket.url == phoenix_server.url
            # _run is the supervisor (which also reads); its nursery holds the timers (a
            # writer only runs while frames wait).
            assert sorted(client_tasks()) == IDLE_TASKS
        assert socket.statistics().state is SocketState.CLOSED
        assert client_tasks() == []


IDLE_TASKS = [
    "trio_phoenix._runtime.SocketRuntime._run",
    "trio_phoenix._runtime.SocketRuntime._run_timers",
]


@pytest.mark.parametrize("transport", ["websocket", "trio-websocket"])
async def test_a_writer_task_runs_only_while_frames_wait(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock, transport: TransportName
) -> None:
    """Frames the pump cannot write at once (trio-websocket never can; on the WebSocket
    transport, those that follow a write before the next read) go through a writer task,
    which returns once it sent them all: an idle socket keeps only two tasks."""
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url, transport=transport) as socket,
            socket.channel("echo:a") as channel,
        ):
            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(channel.push, "echo", {"n": n})
                await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            ours = [name for name in client_tasks() if name.startswith("trio_phoenix._runtime")]
            assert ours == IDLE_TASKS
            assert await channel.push("echo", {"n": 20}) == {"n": 20}


async def test_leaving_the_block_leaves_channels_with_the_current_join_ref_and_closes_1000(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            first = socket.channel("echo:a", {"n": 1})
            second = socket.channel("echo:b")
            await first.join()
            await second.join()
            assert (first.join_ref, second.join_ref) == ("1", "2")
            # A crash makes "echo:a" rejoin after 1 s with a new join ref.
            with pytest.raises(ReplyLost):
                await first.push("crash", {})
            await trio.sleep(1.5)
            assert first.state is ChannelState.JOINED
            assert first.join_ref == "4"
        connection = phoenix_server.accepted_connections[0]
        await connection.wait_closed()
        assert connection.close_code == 1000
        sent = wire(phoenix_server)
        assert sent[:4] == [
            ("1", "1", "echo:a", "phx_join", {"n": 1}),
            ("2", "2", "echo:b", "phx_join", {}),
            ("1", "3", "echo:a", "crash", {}),
            ("4", "4", "echo:a", "phx_join", {"n": 1}),
        ]
        # Both leaves go out concurrently; each carries its channel's current join ref.
        leaves = sorted((jr, topic, event, payload) for jr, _, topic, event, payload in sent[4:])
        assert leaves == [
            ("2", "echo:b", "phx_leave", {}),
            ("4", "echo:a", "phx_leave", {}),
        ]
        assert sorted(str(ref) for _, ref, _, _, _ in sent[4:]) == ["5", "6"]
        assert first.statistics().state is ChannelState.CLOSED
        assert second.statistics().state is ChannelState.CLOSED
        assert socket.statistics().state is SocketState.CLOSED
        assert client_tasks() == []
        await trio.sleep(10)  # no reconnect after an explicit close
        assert phoenix_server.statistics().connections_accepted == 1


async def test_closing_on_a_dead_connection_is_bounded_by_close_timeout(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, close_timeout=2) as socket:
            channel = socket.channel("echo:dead")
            await channel.join()
            phoenix_server.accepted_connections[0].stall()
            start = trio.current_time()
        # One close_timeout for everything: the leave reply and the closing handshake.
        assert trio.current_time() - start == pytest.approx(2)
        assert socket.statistics().state is SocketState.CLOSED
        assert channel.statistics().state is ChannelState.CLOSED
        assert client_tasks() == []


async def test_the_caller_sees_their_own_exception(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    sockets: list[Socket] = []

    async def fail_inside() -> None:
        async with open_socket(phoenix_server.url) as socket, socket.channel("echo:x"):
            sockets.append(socket)
            raise ValueError("mine")

    with trio.fail_after(LIMIT):
        with pytest.raises(ValueError, match="mine") as info:
            await fail_inside()
        assert type(info.value) is ValueError
        assert sockets[0].state is SocketState.CLOSED
        connection = phoenix_server.accepted_connections[0]
        await connection.wait_closed()
        assert connection.close_code == 1000
        assert [event for _, _, _, event, _ in wire(phoenix_server)] == ["phx_join", "phx_leave"]


async def test_a_background_failure_surfaces_as_one_exception(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    calls = 0

    def params() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("params provider broke")
        return {"n": calls}

    sockets: list[Socket] = []

    async def run() -> None:
        async with open_socket(phoenix_server.url, params=params) as socket:
            sockets.append(socket)
            phoenix_server.accepted_connections[0].drop()
            await trio.sleep_forever()

    with trio.fail_after(LIMIT):
        with pytest.raises(RuntimeError, match="params provider broke") as info:
            await run()
        assert type(info.value) is RuntimeError
        assert sockets[0].state is SocketState.CLOSED
        assert calls == 2


async def test_pending_and_buffered_pushes_end_when_the_socket_closes(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    outcomes: dict[str, BaseException] = {}

    async def push(name: str, channel: Channel, event: str) -> None:
        try:
            await channel.push(event, {})
        except PhoenixError as exc:
            outcomes[name] = exc

    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            joined = socket.channel("echo:pending")
            await joined.join()
            errored = socket.channel("echo:buffered")
            await errored.join()
            with pytest.raises(ReplyLost):
                await errored.push("crash", {})  # errored: rejoins in 1 s
            async with trio.open_nursery() as nursery:
                nursery.start_soon(push, "sent", joined, "noreply")
                nursery.start_soon(push, "buffered", errored, "echo")
                await trio.sleep(0.5)
                assert socket.statistics().pending_replies == 1
                assert socket.statistics().buffered_pushes == 1
                await socket.aclose()
    # Closing leaves every channel first: their pushes, sent or buffered, end with them.
    assert {name: type(exc) for name, exc in outcomes.items()} == {
        "sent": ChannelClosed,
        "buffered": ChannelClosed,
    }
    assert {name: (exc.args[0], exc.args[1]) for name, exc in outcomes.items()} == {
        "sent": ("echo:pending", "left"),
        "buffered": ("echo:buffered", "left"),
    }


async def test_a_cancelled_block_still_leaves_and_closes(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        with trio.move_on_after(5) as scope:
            async with open_socket(phoenix_server.url) as socket:
                await socket.channel("echo:c").join()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        connection = phoenix_server.accepted_connections[0]
        await connection.wait_closed()
        assert connection.close_code == 1000
        assert wire(phoenix_server)[-1] == ("1", "2", "echo:c", "phx_leave", {})
        assert socket.state is SocketState.CLOSED


async def test_connect_socket_runs_in_the_callers_nursery(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            socket = await connect_socket(nursery, phoenix_server.url)
            assert socket.state is SocketState.CONNECTED
            channel = socket.channel("echo:n")
            await channel.join()
            await socket.aclose()
            assert socket.statistics().state is SocketState.CLOSED
            assert channel.statistics().state is ChannelState.CLOSED
            await socket.aclose()  # idempotent
        assert client_tasks() == []
        connection = phoenix_server.accepted_connections[0]
        await connection.wait_closed()
        assert connection.close_code == 1000
        assert wire(phoenix_server)[-1] == ("1", "2", "echo:n", "phx_leave", {})


async def test_wait_connected_false_starts_at_once(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, wait_connected=False) as socket:
            assert socket.state in (SocketState.IDLE, SocketState.CONNECTING)
            assert phoenix_server.accepted_connections == []
            # A join waits for the connection.
            assert await socket.channel("echo:w", {"k": 1}).join() == {"k": 1}
            assert socket.statistics().state is SocketState.CONNECTED
            await socket.wait_connected()


async def test_hygiene_check_can_fail(
    phoenix_server: TestServer, client_hygiene: ClientHygiene, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            channel = socket.channel("echo:h")
            await channel.join()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(channel.push, "noreply", {})
                await trio.sleep(1)
                problems = client_hygiene.problems()
                nursery.cancel_scope.cancel()
            running = "still running: trio_phoenix._runtime.SocketRuntime._run"
            assert any(running in p for p in problems)
            assert f"{socket!r} is connected, not closed" in problems
            assert any("1 pending replies" in p for p in problems)
            with pytest.raises(AssertionError, match="client hygiene"):
                client_hygiene.check()
        assert client_hygiene.sockets == [socket]
        assert client_hygiene.channels == [channel]
        client_hygiene.check()


# -- the lifecycle stream and the state --------------------------------------------------------


async def test_lifecycle_of_a_drop_and_reconnect(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            async with socket.lifecycle() as events:
                channel = socket.channel("echo:l", {"p": 1})
                await channel.join()
                assert await events.receive() == ChannelJoined(
                    topic="echo:l", response={"p": 1}, rejoin=False
                )
                phoenix_server.accepted_connections[0].drop()
                assert await next_events(events, 5) == [
                    Disconnected(code=1006, reason=None),
                    ChannelErrored(
                        topic="echo:l",
                        payload={"source": "transport", "reason": "connection_closed"},
                    ),
                    ReconnectScheduled(delay=0.01, attempt=1),
                    Connected(connects=2),
                    ChannelJoined(topic="echo:l", response={"p": 1}, rejoin=True),
                ]
                assert socket.state is SocketState.CONNECTED
                assert channel.join_ref == "2"
                # A server-side crash: errored, rejoin scheduled after 1 s.
                with pytest.raises(ReplyLost):
                    await channel.push("crash", {})
                assert await next_events(events, 3) == [
                    ChannelErrored(topic="echo:l", payload={"reason": "channel_crash"}),
                    RejoinScheduled(topic="echo:l", delay=1.0, attempt=1),
                    ChannelJoined(topic="echo:l", response={"p": 1}, rejoin=True),
                ]
                await channel.leave()
                assert await events.receive() == ChannelEnded(topic="echo:l", reason="left")
                with pytest.raises(trio.WouldBlock):
                    events.receive_nowait()
            with pytest.raises(trio.EndOfChannel):
                events.receive_nowait()


async def test_state_transitions(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    seen: list[SocketState] = []
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url, wait_connected=False) as socket:
            seen.append(socket.state)
            await socket.wait_connected()
            seen.append(socket.state)
            async with socket.lifecycle() as events:
                phoenix_server.accepted_connections[0].drop()
                assert await events.receive() == Disconnected(code=1006, reason=None)
                seen.append(socket.state)
                assert await events.receive() == ReconnectScheduled(delay=0.01, attempt=1)
                await socket.wait_connected()
                seen.append(socket.state)
        seen.append(socket.state)
    assert seen[0] in (SocketState.IDLE, SocketState.CONNECTING)
    assert seen[1:] == [
        SocketState.CONNECTED,
        SocketState.WAITING,
        SocketState.CONNECTED,
        SocketState.CLOSED,
    ]


async def test_wait_connected_after_close_raises(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            pass
        with pytest.raises(SocketClosed):
            await socket.wait_connected()
        with pytest.raises(SocketClosed):
            await socket.ping()
        with pytest.raises(SocketClosed):
            await socket.channel("echo:late").join()


# -- ping and statistics --------------------------------------------------------------------


async def test_ping_returns_the_round_trip(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            rtt = await socket.ping()
            assert isinstance(rtt, float)
            assert rtt >= 0
            connection = phoenix_server.accepted_connections[0]
            connection.send_delay = 0.25
            assert await socket.ping() == pytest.approx(0.25)
            assert [
                (m.join_ref, m.ref, m.topic, m.event, m.payload) for m in connection.received
            ] == [
                (None, "1", "phoenix", "heartbeat", {}),
                (None, "2", "phoenix", "heartbeat", {}),
            ]
            assert socket.statistics().pending_replies == 0


async def test_ping_loses_its_reply_when_the_connection_drops(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            connection = phoenix_server.accepted_connections[0]
            connection.stall()
            async with trio.open_nursery() as nursery:

                async def drop_soon() -> None:
                    await trio.sleep(1)
                    assert socket.statistics().pending_replies == 1
                    connection.drop()

                nursery.start_soon(drop_soon)
                with pytest.raises(ReplyLost):
                    await socket.ping()
            assert socket.statistics().pending_replies == 0


async def test_a_cancelled_ping_leaves_nothing_pending(
    phoenix_server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(LIMIT):
        async with open_socket(phoenix_server.url) as socket:
            connection = phoenix_server.accepted_connections[0]
            connection.stall()
            with trio.move_on_after(1) as scope:
                await socket.ping()
            assert scope.cancelled_caught
            pending = socket.statistics().pending_replies
            connection.drop()
            assert pending == 0


async def test_statistics(phoenix_server: TestServer, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_socket(phoenix_server.url) as socket,
            socket.channel("echo:s") as channel,
            channel.subscribe() as messages,
        ):
            await channel.push("push", {"event": "note", "payload": {"i": 1}})
            assert (await messages.receive()).payload == {"i": 1}
            await trio.sleep(31)  # one heartbeat
            stats = socket.statistics()
            assert stats.state is SocketState.CONNECTED
            assert stats.channels == 1
            assert stats.pending_replies == 0
            assert stats.buffered_pushes == 0
            assert stats.frames_sent == 3  # join, push, heartbeat
            assert stats.frames_received == 4  # their replies and the server push
            assert stats.heartbeats_sent == 1
            assert stats.heartbeat_timeouts == 0
            assert stats.connects == 1
            assert stats.disconnects == 0
            assert stats.malformed_frames == 0
            assert stats.dropped_messages == 0
            cstats = channel.statistics()
            assert cstats.topic == "echo:s"
            assert cstats.state is ChannelState.JOINED
            assert cstats.join_ref == "1"
            assert cstats.pending_replies == 0
            assert cstats.buffered_pushes == 0
            assert cstats.subscriptions == 1
            assert cstats.messages_received == 1
            assert cstats.messages_dropped == 0
        stats = socket.statistics()
        assert stats.state is SocketState.CLOSED
        assert stats.channels == 0
        assert stats.disconnects == 1


# -- logging --------------------------------------------------------------------------------


async def test_logs_never_show_tokens(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.DEBUG)
    params = ("SECRET-PARAM-1", "SECRET-PARAM-2", "SECRET-PARAM-3")
    secrets = (*params, "SECRET-BEARER")
    issued = iter(params)

    def connect(params: dict[str, Any], info: ConnectInfo) -> Accept | Reject:
        assert info.auth_token == "SECRET-BEARER"
        if params["token"] == "SECRET-PARAM-2":
            return Reject(403)
        return Accept(id="user:1")

    with trio.fail_after(LIMIT):
        async with open_test_server(demo_channels(), connect=connect, auth_token=True) as server:
            async with open_socket(
                server.url,
                params=lambda: {"token": next(issued), "room": "lobby"},
                auth_token="SECRET-BEARER",
            ) as socket:
                channel = socket.channel("echo:log")
                await channel.join()
                await channel.push("echo", {})
                server.disconnect("user:1")  # then one rejected attempt, then back
                await server.wait_connections(2)
                await channel.wait_joined()
            tokens = [c.params["token"] for c in server.accepted_connections]
            assert tokens == ["SECRET-PARAM-1", "SECRET-PARAM-3"]

    messages = [r.getMessage() for r in caplog.records if r.name == "trio_phoenix"]
    assert messages.count(f"connected to {server.url}") == 2
    assert (
        f"the server refused the WebSocket upgrade to {server.url}/websocket"
        "?token=[REDACTED]&room=[REDACTED]&vsn=2.0.0: HTTP 403"
    ) in messages
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        for secret in secrets:
            assert secret not in text, (secret, record.getMessage())
