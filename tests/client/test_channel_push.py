"""Channel pushes and replies with every outcome: ok, error, timeout, cancelled, lost,
buffered (during a join or a reconnect), binary, unencodable.

How these tests run: ``tests/client/channel_helpers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.client.channel_helpers import SlowJoin
from tests.helpers import LIMIT, wire
from trio_phoenix import (
    Channel,
    ChannelClosed,
    ChannelState,
    ConnectFailed,
    Disconnected,
    EncodeError,
    LocalProtocolError,
    Message,
    PhoenixTimeout,
    PushError,
    PushTimeout,
    ReplyLost,
    Socket,
    SocketState,
    open_socket,
)
from trio_phoenix.testing import TestServer


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
    """Frames of concurrent pushes, some cancelled on the way, go out whole and in the core's
    order."""
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


async def test_a_push_keeps_its_deadline_while_the_server_reads_nothing(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """A server that stops reading fills the TCP buffers: a push's deadline still holds (its
    frame waits in the writer's queue; the push is never stuck in a write)."""
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:full") as channel:
            server.accepted_connections[0].stall()
            big = "x" * 1_000_000
            for _ in range(40):  # far more than the loopback buffers hold
                start = trio.current_time()
                with trio.move_on_after(1):
                    await channel.push("echo", {"b": big})
                assert trio.current_time() - start == pytest.approx(1.0)


async def test_pushes_behind_a_partly_written_push_arrive_whole_and_after_it(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """A push is written at once by the pushing task, but a big one only in part (what the
    kernel's buffer takes); pushes made before the rest went out wait for it (the writer
    sends it first): every frame arrives whole and in order (the direct write itself:
    ``tests/client/test_transport_direct.py``)."""
    big = "y" * 4_000_000
    with trio.fail_after(LIMIT):
        async with open_socket(server.url) as socket, socket.channel("echo:big") as channel:
            replies: dict[int, Any] = {}

            async def push(index: int, payload: dict[str, Any]) -> None:
                replies[index] = await channel.push("echo", payload)

            async with trio.open_nursery() as nursery:
                sent = socket.statistics().frames_sent
                nursery.start_soon(push, 0, {"b": big})
                while socket.statistics().frames_sent == sent:  # until it is written
                    await trio.lowlevel.checkpoint()
                for index in range(1, 6):
                    nursery.start_soon(push, index, {"i": index})
            assert replies[0] == {"b": big}
            assert all(replies[index] == {"i": index} for index in range(1, 6))
            refs = [int(ref or 0) for _, ref, _, event, _ in wire(server) if event == "echo"]
            assert refs == sorted(refs)
            assert wire(server)[1][4] == {"b": big}
            assert socket.statistics().malformed_frames == 0


async def test_the_unsent_rest_of_a_push_dies_with_its_connection(
    server: TestServer, autojump_clock: trio.abc.Clock
) -> None:
    """A push written in part to a server that stopped reading, then the connection drops:
    the rest is not sent on the next connection, which carries only whole frames."""
    with trio.fail_after(LIMIT):
        async with (
            open_socket(server.url) as socket,
            socket.lifecycle() as events,
            socket.channel("echo:rest") as channel,
        ):
            server.accepted_connections[0].stall()
            outcome: list[BaseException] = []

            async def push() -> None:
                with pytest.raises(ReplyLost) as info:
                    await channel.push("echo", {"b": "z" * 4_000_000})
                outcome.append(info.value)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(push)
                await trio.sleep(1)
                server.accepted_connections[0].drop()
            assert outcome
            while not isinstance(await events.receive(), Disconnected):
                pass
            assert await channel.push("echo", {"next": 1}) == {"next": 1}
            assert [event for *_, event, _ in wire(server, 1)] == ["phx_join", "echo"]
            assert server.accepted_connections[1].close_code is None


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
