"""The test server's routing table (protocol reference §3): heartbeats, joins, pushes, replies,
leaves, stale join refs, duplicate joins, the channel limit, V1 frames and binary frames.

How these tests run: ``tests/testing/server_helpers.py``.
"""

from __future__ import annotations

from tests.testing.server_helpers import connect, error, ok
from trio_phoenix.proto._message import Message
from trio_phoenix.testing import TestServer, demo_channels, open_test_server


async def test_heartbeat_reply_is_exact(server: TestServer) -> None:
    async with connect(server) as client:
        await client.send(None, "1", "phoenix", "heartbeat", {})
        assert await client.recv_raw() == (
            '[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]'
        )


async def test_join_of_an_unmatched_topic(server: TestServer) -> None:
    async with connect(server) as client:
        reply = await client.join("nope:1", "3")
        assert reply == [None, "3", "nope:1", "phx_reply", error({"reason": "unmatched topic"})]


async def test_join_ok_push_reply_and_server_push(server: TestServer) -> None:
    async with connect(server) as client:
        assert await client.join("echo:1", "3", {"a": 1}) == [
            "3",
            "3",
            "echo:1",
            "phx_reply",
            ok({"a": 1}),
        ]
        await client.send("3", "4", "echo:1", "echo", {"x": [1, 2]})
        assert await client.recv() == ["3", "4", "echo:1", "phx_reply", ok({"x": [1, 2]})]
        await client.send("3", "5", "echo:1", "error", {"why": "no"})
        assert await client.recv() == ["3", "5", "echo:1", "phx_reply", error({"why": "no"})]
        await client.send("3", "6", "echo:1", "push", {"event": "ping", "payload": {"n": 1}})
        assert await client.recv() == ["3", None, "echo:1", "ping", {"n": 1}]
        assert await client.recv() == ["3", "6", "echo:1", "phx_reply", ok({})]


async def test_noreply_sends_nothing(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "4", "echo:1", "noreply", {})
        await client.recv_nothing_before_heartbeat()


async def test_join_error_keeps_no_channel(server: TestServer) -> None:
    async with connect(server) as client:
        assert await client.join("echo:1", "3", {"reject": "unauthorized"}) == [
            "3",
            "3",
            "echo:1",
            "phx_reply",
            error({"reason": "unauthorized"}),
        ]
        await client.send("3", "4", "echo:1", "echo", {})
        assert await client.recv() == [
            None,
            "4",
            "echo:1",
            "phx_reply",
            error({"reason": "unmatched topic"}),
        ]


async def test_join_crash(server: TestServer) -> None:
    async with connect(server) as client:
        assert await client.join("echo:1", "3", {"crash": True}) == [
            "3",
            "3",
            "echo:1",
            "phx_reply",
            error({"reason": "join crashed"}),
        ]
    assert [str(exc) for exc in server.crashes] == ["join crash requested"]


async def test_crash_sends_phx_error_and_drops_the_channel(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "4", "echo:1", "crash", {})
        assert await client.recv() == [
            "3",
            "3",
            "echo:1",
            "phx_error",
            {"reason": "channel_crash"},
        ]
        await client.send("3", "5", "echo:1", "echo", {})
        assert (await client.recv())[4] == error({"reason": "unmatched topic"})
        # A rejoin after a crash is an ordinary join.
        assert (await client.join("echo:1", "6"))[4] == ok({})
    assert [str(exc) for exc in server.crashes] == ["crash requested"]


async def test_stop_closes_the_channel(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "4", "echo:1", "stop", {})
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]
        await client.join("echo:2", "5")
        await client.send("5", "6", "echo:2", "stop_reply", {})
        assert await client.recv() == ["5", "6", "echo:2", "phx_reply", ok({})]
        assert await client.recv() == ["5", "5", "echo:2", "phx_close", {}]
        await client.send("5", "7", "echo:2", "echo", {})
        assert (await client.recv())[4] == error({"reason": "unmatched topic"})


async def test_leave_of_a_joined_topic(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("3", "7", "echo:1", "phx_leave", {})
        assert await client.recv() == ["3", "7", "echo:1", "phx_reply", ok({})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]
        await client.send("3", "8", "echo:1", "echo", {})
        assert (await client.recv())[:2] == [None, "8"]


async def test_leave_of_an_unknown_topic_echoes_the_refs(server: TestServer) -> None:
    async with connect(server) as client:
        await client.send("9", "10", "echo:1", "phx_leave", {})
        assert await client.recv() == ["9", "10", "echo:1", "phx_reply", ok({})]


async def test_stale_join_refs_are_ignored_and_nil_is_accepted(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("99", "4", "echo:1", "echo", {})
        await client.send("99", "5", "echo:1", "phx_leave", {})
        await client.recv_nothing_before_heartbeat()
        await client.send(None, "6", "echo:1", "echo", {"nil": True})
        assert await client.recv() == ["3", "6", "echo:1", "phx_reply", ok({"nil": True})]
        await client.send(None, "7", "echo:1", "phx_leave", {})
        assert await client.recv() == ["3", "7", "echo:1", "phx_reply", ok({})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]


async def test_event_for_an_unjoined_topic(server: TestServer) -> None:
    async with connect(server) as client:
        await client.send("3", "4", "room:1", "new_msg", {})
        assert await client.recv() == [
            None,
            "4",
            "room:1",
            "phx_reply",
            error({"reason": "unmatched topic"}),
        ]


async def test_duplicate_join_replies_then_closes_the_old_join(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        await client.send("9", "9", "echo:1", "phx_join", {"second": True})
        assert await client.recv() == ["9", "9", "echo:1", "phx_reply", ok({"second": True})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]
        await client.send("3", "10", "echo:1", "echo", {})  # the old join_ref is stale now
        await client.send("9", "11", "echo:1", "echo", {})
        assert await client.recv() == ["9", "11", "echo:1", "phx_reply", ok({})]
        connection = await server.wait_connections(1)
        assert connection.topics == {"echo:1": "9"}


async def test_duplicate_join_that_fails_still_closes_the_old_join(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "3")
        reply = await client.join("echo:1", "9", {"reject": "no"})
        assert reply == ["9", "9", "echo:1", "phx_reply", error({"reason": "no"})]
        assert await client.recv() == ["3", "3", "echo:1", "phx_close", {}]


async def test_the_101st_channel_is_refused(server: TestServer) -> None:
    async with connect(server) as client:
        for n in range(1, 101):
            await client.send(str(n), str(n), f"echo:{n}", "phx_join", {})
        for _ in range(100):
            assert (await client.recv())[4] == ok({})
        assert await client.join("echo:101", "101") == [
            "101",
            "101",
            "echo:101",
            "phx_reply",
            error({"reason": "too many channels joined"}),
        ]
        assert server.statistics().channels_joined == 100


async def test_max_channels_per_transport_is_configurable() -> None:
    async with (
        open_test_server(demo_channels(), max_channels_per_transport=1) as server,
        connect(server) as client,
    ):
        assert (await client.join("echo:1", "1"))[4] == ok({})
        assert (await client.join("echo:2", "2"))[4] == error(
            {"reason": "too many channels joined"}
        )
        assert (await client.join("echo:1", "3"))[4] == ok({})  # a rejoin replaces


async def test_v1_frames_have_no_join_ref(server: TestServer) -> None:
    async with connect(server, "vsn=1.0.0") as client:
        await client.send("3", "3", "echo:1", "phx_join", {})
        assert await client.recv() == {
            "event": "phx_reply",
            "payload": ok({}),
            "ref": "3",
            "topic": "echo:1",
        }
        await client.send("3", "4", "echo:1", "push", {"event": "e", "payload": {}})
        assert await client.recv() == {"event": "e", "payload": {}, "ref": None, "topic": "echo:1"}
        assert (await client.recv())["ref"] == "4"
        await client.send("3", "5", "echo:1", "crash", {})
        assert await client.recv() == {
            "event": "phx_error",
            "payload": {"reason": "channel_crash"},
            "ref": "3",
            "topic": "echo:1",
        }


async def test_v1_client_without_join_ref(server: TestServer) -> None:
    async with connect(server, "") as client:
        await client.ws.send_message(
            '{"topic":"echo:1","event":"phx_join","payload":{},"ref":"1"}'
        )
        assert (await client.recv())["payload"] == ok({})
        await client.ws.send_message('{"topic":"echo:1","event":"echo","payload":{},"ref":"2"}')
        assert (await client.recv())["ref"] == "2"
        # A V1 reply with bytes cannot be encoded: the channel crashes, as in Phoenix.
        await client.ws.send_message(
            '{"topic":"echo:1","event":"push_binary","payload":{"event":"b","bytes":[1]},"ref":"3"}'
        )
        assert await client.recv() == {
            "event": "phx_error",
            "payload": {"reason": "channel_crash"},
            "ref": None,
            "topic": "echo:1",
        }


# -- binary frames ----------------------------------------------------------------------------


async def test_binary_push_reply_and_broadcast(server: TestServer) -> None:
    async with connect(server) as client:
        await client.join("echo:1", "12")
        await client.send("12", "123", "echo:1", "echo", b"efg")
        assert await client.recv_raw() == b"\x01\x02\x03\x06\x02" + b"12123echo:1ok" + b"efg"
        await client.send("12", "124", "echo:1", "push_binary", {"event": "bin", "bytes": [0, 1]})
        assert await client.recv() == Message(
            join_ref="12", ref=None, topic="echo:1", event="bin", payload=b"\x00\x01"
        )
        assert (await client.recv())[1] == "124"
        await client.send("12", "125", "echo:1", "broadcast_binary", {"event": "b", "bytes": [7]})
        assert await client.recv_raw() == b"\x02\x06\x01echo:1b\x07"
        assert (await client.recv())[1] == "125"
        await client.send("12", "126", "echo:1", "error", b"\xff")
        assert await client.recv() == Message(
            join_ref="12",
            ref="126",
            topic="echo:1",
            event="phx_reply",
            payload={"status": "error", "response": b"\xff"},
        )
