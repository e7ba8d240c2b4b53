"""A hostile server: whatever frames it sends, the socket keeps serving (or reconnects cleanly).

``HostileServer`` is a bare Phoenix endpoint on trio-websocket: it answers heartbeats, joins,
leaves and ``echo`` pushes, holds ``hold`` pushes until told to answer, and otherwise sends
whatever frame a test hands it. Hypothesis generates the frames: garbage text, random and
truncated binary, wrong field types and shapes, replies with unknown refs, replies for other
topics or with stale join refs, and junk payloads for the channel's subscriber and presence
view. After each frame a ping (whose reply follows the frame on the wire) tells us the client
has handled it, so each frame is checked on its own: it was counted exactly once, as a
malformed frame, a dropped message or a delivered message (as its kind allows), and logged
accordingly. Through it all the channel stays joined, the held push is answered only by its
own reply, a new push gets its reply and nothing reconnects. Frames over ``max_message_size``
close the connection (1009) and the socket reconnects and rejoins.
"""

from __future__ import annotations

import enum
import gc
import json
import logging
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any, Final

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as st
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from tests.client.raw_hostile import RawServer, frame as raw_frame, open_raw_server
from trio_phoenix import (
    Channel,
    Connected,
    ConnectError,
    Disconnected,
    Message,
    PhoenixError,
    ReplyLost,
    Socket,
    SocketState,
    SocketStatistics,
    open_socket,
)
from trio_phoenix._handshake import MAX_REJECTION_BODY

TOPIC: Final = "hostile:1"
OTHER: Final = "hostile:2"
RESERVED: Final = frozenset({"phx_join", "phx_leave", "phx_reply", "phx_error", "phx_close"})

MALFORMED, DROPPED, DELIVERED = "malformed", "dropped", "delivered"


# -- the hostile server ------------------------------------------------------------------------


@attrs.define(eq=False)
class HostileConnection:
    """One client connection: what it sent, its joins, and the pushes held back."""

    ws: WebSocketConnection
    received: list[list[Any]] = attrs.Factory(list)
    join_refs: dict[str, str] = attrs.Factory(dict)
    held: dict[str, tuple[str, str]] = attrs.Factory(dict)  # topic -> (join_ref, ref)
    changed: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send_message(frame)

    async def reply(
        self, topic: str, join_ref: str | None, ref: str | None, response: Any
    ) -> None:
        reply = {"status": "ok", "response": response}
        await self.send(json.dumps([join_ref, ref, topic, "phx_reply", reply]))

    async def wait_held(self, topic: str) -> tuple[str, str]:
        while topic not in self.held:
            await self.changed.park()
        return self.held[topic]

    async def serve(self) -> None:
        try:
            while True:
                join_ref, ref, topic, event, payload = json.loads(await self.ws.get_message())
                self.received.append([join_ref, ref, topic, event, payload])
                if (topic, event) == ("phoenix", "heartbeat"):
                    await self.reply(topic, None, ref, {})
                elif event == "phx_join":
                    self.join_refs[topic] = join_ref
                    await self.reply(topic, join_ref, ref, {})
                elif event in ("phx_leave", "echo"):
                    await self.reply(topic, join_ref, ref, payload)
                elif event == "hold":
                    self.held[topic] = (join_ref, ref)
                self.changed.unpark_all()
        except ConnectionClosed:
            pass


@attrs.define(eq=False)
class HostileServer:
    """A bare Phoenix endpoint whose connections the test drives (see the module docstring)."""

    port: int = 0
    connections: list[HostileConnection] = attrs.Factory(list)
    changed: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    async def wait_connection(self, count: int) -> HostileConnection:
        while len(self.connections) < count:
            await self.changed.park()
        return self.connections[count - 1]

    async def handle(self, request: WebSocketRequest) -> None:
        connection = HostileConnection(await request.accept())
        self.connections.append(connection)
        self.changed.unpark_all()
        await connection.serve()


@asynccontextmanager
async def open_hostile_server() -> AsyncIterator[HostileServer]:
    server = HostileServer()
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            partial(serve_websocket, server.handle, "127.0.0.1", 0, None)
        )
        server.port = listening.port
        yield server
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def joined_client(
    server: HostileServer, **options: Any
) -> AsyncIterator[tuple[Socket, Channel, HostileConnection]]:
    """A socket on ``server`` with ``TOPIC`` and ``OTHER`` joined."""
    async with open_socket(server.url, timeout=None, **options) as socket:
        channel = socket.channel(TOPIC)
        await channel.join()
        await socket.channel(OTHER).join()
        yield socket, channel, await server.wait_connection(1)


def leaf(exc: BaseException) -> BaseException:
    """The only exception inside nested ExceptionGroups, for readable failures."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# -- hostile frames --------------------------------------------------------------------------


class Slot(enum.Enum):
    """What a frame refers to; filled in when it is sent."""

    JOIN_REF = "the channel's join_ref"
    STALE_JOIN_REF = "an earlier join_ref"
    HELD_REF = "the ref of the held push"
    TOPIC = TOPIC
    OTHER = OTHER


@attrs.frozen
class Context:
    join_ref: str
    held_ref: str

    def fill(self, value: Any) -> Any:
        if isinstance(value, Slot):
            return {
                Slot.JOIN_REF: self.join_ref,
                Slot.STALE_JOIN_REF: str(int(self.join_ref) - 1),
                Slot.HELD_REF: self.held_ref,
                Slot.TOPIC: TOPIC,
                Slot.OTHER: OTHER,
            }[value]
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        return value


@attrs.frozen
class Binary:
    """A server binary frame (kind 0 push, 1 reply, 2 broadcast), cut after ``cut`` bytes."""

    kind: int
    fields: tuple[Any, ...]
    payload: bytes
    cut: int | None = None

    def build(self, context: Context) -> tuple[bytes, int]:
        fields = [str(context.fill(field)).encode() for field in self.fields]
        header = bytes([self.kind, *(len(field) for field in fields)]) + b"".join(fields)
        frame = header + self.payload
        return (frame if self.cut is None else frame[: self.cut % (len(frame) + 1)]), len(header)


@attrs.frozen
class Hostile:
    """A frame the server sends, and how the client may count it."""

    frame: str | bytes | list[Any] | Binary
    outcomes: frozenset[str]

    def build(self, context: Context) -> tuple[str | bytes, frozenset[str]]:
        if isinstance(self.frame, list):
            return json.dumps(context.fill(self.frame)), self.outcomes
        if isinstance(self.frame, Binary):
            frame, header = self.frame.build(context)
            return frame, self.outcomes if len(frame) >= header else frozenset({MALFORMED})
        return self.frame, self.outcomes


def well_formed(text: str) -> bool:
    """Whether ``text`` is a well-typed V2 frame (so not garbage)."""
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return (
        isinstance(data, list)
        and len(data) >= 5
        and all(v is None or isinstance(v, str) for v in data[:2])
        and all(isinstance(v, str) for v in data[2:4])
    )


def mistyped(fields: tuple[Any, ...]) -> bool:
    """Whether a refs/topic/event field has a type the protocol does not allow."""
    refs = all(value is None or isinstance(value, str | Slot) for value in fields[:2])
    names = all(isinstance(value, str | Slot) for value in fields[2:4])
    return not (refs and names)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
not_strings = json_values.filter(lambda v: v is not None and not isinstance(v, str))
events = st.text(min_size=1, max_size=12).filter(lambda e: e not in RESERVED)
unknown_refs = st.none() | st.from_regex(r"\Au[0-9]{1,4}\Z")  # refs are decimal: never ours
replies = st.fixed_dictionaries(
    {"status": st.sampled_from(["ok", "error"]), "response": json_values}
)
bad_replies = json_values.filter(
    lambda p: not (isinstance(p, dict) and isinstance(p.get("status"), str))
)
presence_junk = st.sampled_from(["presence_state", "presence_diff"])
NASTY_TEXT: Final = (
    "",
    "[" * 100_000,  # nesting deeper than any recursion limit
    "[null, null, ",
    "NaN",
    '[null,null,"hostile:1","x",NaN]',
    '{"topic":"hostile:1","event":"x","payload":{},"ref":null}',  # V1 on a V2 socket
    "\x00\x01\x02",
)


def _frame(frame: Any, *outcomes: str) -> Hostile:
    return Hostile(frame, frozenset(outcomes))


#: Numbers JSON.parse turns into Infinity: delivered as such, or refused (both are fine).
HUGE_NUMBERS: Final = (
    '[null,null,"hostile:1","x",{"n":1e999}]',
    '[null,null,"hostile:1","x",{"n":' + "9" * 5000 + "}]",  # over Python's digit limit
)
garbage_text = st.one_of(
    st.sampled_from(NASTY_TEXT).map(lambda text: _frame(text, MALFORMED)),
    st.text(max_size=300).filter(lambda t: not well_formed(t)).map(lambda t: _frame(t, MALFORMED)),
    st.sampled_from(HUGE_NUMBERS).map(lambda text: _frame(text, MALFORMED, DELIVERED)),
)
random_binary = st.binary(max_size=300).map(lambda data: _frame(data, MALFORMED, DROPPED))
truncated_binary = st.one_of(
    # A push or broadcast for the channel (delivered if only the payload is cut) ...
    st.builds(
        Binary,
        kind=st.just(0),
        fields=st.tuples(st.sampled_from([Slot.JOIN_REF, ""]), st.just(Slot.TOPIC), events),
        payload=st.binary(max_size=50),
        cut=st.none() | st.integers(0, 80),
    ).map(lambda binary: _frame(binary, DELIVERED)),
    st.builds(
        Binary,
        kind=st.just(2),
        fields=st.tuples(st.just(Slot.TOPIC), events | presence_junk),
        payload=st.binary(max_size=50),
        cut=st.none() | st.integers(0, 80),
    ).map(lambda binary: _frame(binary, DELIVERED)),
    # ... and replies nobody waits for (dropped if only the payload is cut).
    st.builds(
        Binary,
        kind=st.just(1),
        fields=st.tuples(
            st.just(Slot.JOIN_REF),
            st.sampled_from(["u1", "u999", "x"]),
            st.sampled_from([Slot.TOPIC, Slot.OTHER, "nope"]),
            st.sampled_from(["ok", "error"]),
        ),
        payload=st.binary(max_size=50),
        cut=st.none() | st.integers(0, 80),
    ).map(lambda binary: _frame(binary, DROPPED)),
)
wrong_types = st.one_of(
    st.tuples(
        st.none() | st.just(Slot.JOIN_REF) | not_strings,
        st.none() | st.just(Slot.HELD_REF) | not_strings,
        st.sampled_from([Slot.TOPIC, Slot.OTHER, "phoenix"]) | not_strings,
        st.sampled_from(["phx_reply", "phx_error", "phx_close", "msg"]) | not_strings,
        json_values,
    )
    .filter(mistyped)
    .map(lambda f: _frame(list(f), MALFORMED)),
    st.lists(json_values, max_size=4).map(lambda f: _frame(f, MALFORMED)),  # too short
    json_values.filter(lambda v: not isinstance(v, list)).map(
        lambda v: _frame(json.dumps(v), MALFORMED)
    ),
)
unknown_ref_replies = st.tuples(
    st.sampled_from([Slot.JOIN_REF, None]), unknown_refs, replies | bad_replies
).map(lambda f: _frame([f[0], f[1], Slot.TOPIC, "phx_reply", f[2]], DROPPED))
bad_replies_to_the_held_push = st.tuples(st.sampled_from([Slot.JOIN_REF, None]), bad_replies).map(
    lambda f: _frame([f[0], Slot.HELD_REF, Slot.TOPIC, "phx_reply", f[1]], DROPPED)
)
replies_for_other_topics = st.tuples(
    st.sampled_from([Slot.JOIN_REF, Slot.STALE_JOIN_REF, None]),
    st.sampled_from([Slot.OTHER, "phoenix", "nope:1", ""]),
    replies,
).map(lambda f: _frame([f[0], Slot.HELD_REF, f[1], "phx_reply", f[2]], DROPPED))
stale_join_refs = st.tuples(
    st.sampled_from([Slot.HELD_REF, None]),
    st.sampled_from(["phx_reply", "phx_error", "phx_close", "msg", "presence_diff"]),
    replies,
).map(lambda f: _frame([Slot.STALE_JOIN_REF, f[0], Slot.TOPIC, f[1], f[2]], DROPPED))
junk_for_subscribers = st.tuples(
    st.sampled_from([Slot.JOIN_REF, None]), events | presence_junk, json_values
).map(lambda f: _frame([f[0], None, Slot.TOPIC, f[1], f[2]], DELIVERED))

hostile_frames = st.one_of(
    garbage_text,
    random_binary,
    truncated_binary,
    wrong_types,
    unknown_ref_replies,
    bad_replies_to_the_held_push,
    replies_for_other_topics,
    stale_join_refs,
    junk_for_subscribers,
)


# -- the properties ----------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def count(self, level: int, start: str) -> int:
        return sum(r.levelno == level and r.getMessage().startswith(start) for r in self.records)


@contextmanager
def recording_logs() -> Iterator[Records]:
    logger = logging.getLogger("trio_phoenix")
    records, level = Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)


def check_message(message: Message) -> None:
    """What a subscriber is promised about every message, whatever the server sent."""
    assert isinstance(message.topic, str)
    assert isinstance(message.event, str)
    assert message.event not in RESERVED
    assert message.join_ref is None or isinstance(message.join_ref, str)
    assert message.ref is None or isinstance(message.ref, str)


async def subscriber(channel: Channel, seen: list[Message], *, task_status: Any) -> None:
    async with channel.subscribe() as messages:
        task_status.started()
        async for message in messages:
            check_message(message)
            seen.append(message)


def counters(socket: Socket, channel: Channel) -> dict[str, int]:
    stats = socket.statistics()
    return {
        MALFORMED: stats.malformed_frames,
        DROPPED: stats.dropped_messages,
        DELIVERED: channel.statistics().messages_received,
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(frames=st.lists(hostile_frames, min_size=1, max_size=20))
async def test_hostile_frames_are_counted_logged_and_survived(frames: list[Hostile]) -> None:
    try:
        await _survive(frames)
    except BaseExceptionGroup as group:
        raise leaf(group) from None


async def _survive(frames: list[Hostile]) -> None:
    with trio.fail_after(20), recording_logs() as logs:
        async with (
            open_hostile_server() as server,
            joined_client(server) as (socket, channel, connection),
            trio.open_nursery() as nursery,
        ):
            seen: list[Message] = []
            await nursery.start(subscriber, channel, seen)
            held: list[Any] = []

            async def hold() -> None:
                held.append(await channel.push("hold", {}))

            nursery.start_soon(hold)
            join_ref, held_ref = await connection.wait_held(TOPIC)
            assert join_ref == channel.join_ref
            context = Context(join_ref, held_ref)
            presence = channel.presence()
            before = counters(socket, channel)
            first = before
            for hostile in frames:
                frame, outcomes = hostile.build(context)
                await connection.send(frame)
                await socket.ping()  # its reply follows the frame: the frame was handled
                after = counters(socket, channel)
                changed = {key for key in after if after[key] != before[key]}
                assert len(changed) == 1, f"{frame!r} counted as {changed or 'nothing'}"
                assert changed <= outcomes, f"{frame!r} counted as {changed}, not {outcomes}"
                assert sum(after.values()) == sum(before.values()) + 1
                before = after
            # The held push is still waiting; only its own reply answers it.
            assert not held
            await connection.reply(TOPIC, join_ref, held_ref, {"held": "released"})
            assert await channel.push("echo", {"still": "serving"}) == {"still": "serving"}
            assert held == [{"held": "released"}]
            # Everything was logged as counted, and delivered as counted.
            malformed = after[MALFORMED] - first[MALFORMED]
            assert logs.count(logging.WARNING, "ignored a malformed frame") == malformed
            assert (
                logs.count(logging.DEBUG, "dropped a message") == after[DROPPED] - first[DROPPED]
            )
            assert (
                logs.count(logging.WARNING, "ignored a malformed presence") == presence.malformed
            )
            assert not [r for r in logs.records if r.levelno >= logging.ERROR]
            await socket.ping()
            assert len(seen) == after[DELIVERED] - first[DELIVERED]
            assert socket.state is SocketState.CONNECTED
            assert socket.statistics().connects == 1
            assert channel.join_ref == join_ref
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize(
    ("size", "fits"),
    [(9_000, True), (10_000, True), (10_001, False), (1_000_000, False)],
)
async def test_frames_over_max_message_size_reconnect_cleanly(
    size: int, fits: bool, binary: bool
) -> None:
    """A frame within ``max_message_size`` is delivered; one over it closes the connection
    with 1009 before it is buffered, and the socket reconnects and rejoins."""
    limit = 10_000
    with trio.fail_after(10):
        async with (
            open_hostile_server() as server,
            joined_client(server, max_message_size=limit) as (socket, channel, connection),
            socket.lifecycle() as events,
            channel.subscribe("big") as messages,
            trio.open_nursery() as nursery,
        ):
            frame = big_frame(size, binary)
            nursery.start_soon(send_ignoring_close, connection, frame)
            if fits:
                message = await messages.receive()
                assert len(message.payload if binary else message.payload["x"]) > size - 100
                await socket.ping()
                assert socket.statistics().connects == 1
            else:
                disconnected = await _next(events, Disconnected)
                assert disconnected.code == 1009
                await _next(events, Connected)
                await channel.wait_joined()
                assert len(server.connections) == 2
                assert channel.join_ref == server.connections[1].join_refs[TOPIC]
            assert await channel.push("echo", {"after": size}) == {"after": size}


def big_frame(size: int, binary: bool) -> str | bytes:
    """A ``big`` broadcast to ``TOPIC`` of exactly ``size`` bytes (ASCII: characters too)."""
    if binary:
        header = b"\x02" + bytes([len(TOPIC), 3]) + TOPIC.encode() + b"big"
        return header + b"x" * (size - len(header))
    empty = json.dumps([None, None, TOPIC, "big", {"x": ""}])
    return empty.replace('""', '"' + "x" * (size - len(empty)) + '"')


async def send_ignoring_close(connection: HostileConnection, frame: str | bytes) -> None:
    try:
        await connection.send(frame)
    except ConnectionClosed:
        pass  # the client closed the connection (1009) while we were still sending


async def _next(events: Any, kind: type) -> Any:
    while not isinstance(event := await events.receive(), kind):
        pass
    return event


# -- a server we did not shape: raw frames, a hand-made upgrade ------------------------------
#
# ``tests/client/raw_hostile.py`` speaks HTTP and WebSocket itself. Each Hypothesis example is a
# list of attacks on one channel, a channel whose application never asked for presence; after them
# the socket must still be connected on its first connection, both channels must answer
# pushes, and the memory the client holds must not have grown by more than a bound.


def deep(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@attrs.frozen
class Attack:
    kind: str
    size: int

    def frames(self, join_ref: str) -> list[str]:
        def on_topic(event: str, payload: str) -> str:
            return f'["{join_ref}",null,"{TOPIC}","{event}",{payload}]'

        meta = '{"phx_ref":"r1"}'
        if self.kind == "long_decimal_key":  # int() refuses over 4,300 digits
            key = "9" * self.size
            return [on_topic("presence_state", f'{{"{key}":{{"metas":[{meta}]}}}}')]
        if self.kind == "long_key":
            key = "k" * self.size
            return [on_topic("presence_state", f'{{"{key}":{{"metas":[{meta}]}}}}')]
        if self.kind == "deep_meta":
            deep_meta = f'{{"phx_ref":"r2","deep":{deep(self.size)}}}'
            state = on_topic("presence_state", f'{{"u":{{"metas":[{deep_meta}]}}}}')
            diff = on_topic(
                "presence_diff", f'{{"joins":{{"u":{{"metas":[{deep_meta}]}}}},"leaves":{{}}}}'
            )
            return [state, diff]
        if self.kind == "deep_payload":
            return [on_topic("news", f'{{"deep":{deep(self.size)}}}')]
        if self.kind == "huge_number":
            return [on_topic("news", '{"n":' + "7" * self.size + "}")]
        if self.kind == "huge_float":
            return [on_topic("news", '{"n":1' + "0" * self.size + ".5e999}")]
        assert self.kind == "diff_flood"  # diffs and never a presence_state
        diff = '{"joins":{"u":{"metas":[{"phx_ref":"r%d"}]}},"leaves":{}}'
        return [on_topic("presence_diff", diff % n) for n in range(self.size)]


attacks = st.one_of(
    st.builds(Attack, st.just("long_decimal_key"), st.integers(4000, 20_000)),
    st.builds(Attack, st.just("long_key"), st.integers(1000, 200_000)),
    st.builds(Attack, st.just("deep_meta"), st.integers(50, 5000)),
    st.builds(Attack, st.just("deep_payload"), st.integers(100, 20_000)),
    st.builds(Attack, st.just("huge_number"), st.integers(1000, 50_000)),
    st.builds(Attack, st.just("huge_float"), st.integers(1, 1000)),
    st.builds(Attack, st.just("diff_flood"), st.integers(1, 1200)),
)


@asynccontextmanager
async def raw_client(server: RawServer) -> AsyncIterator[tuple[Socket, Channel, Channel]]:
    async with (
        open_socket(server.url) as socket,
        socket.channel(TOPIC) as channel,
        socket.channel(OTHER) as other,
    ):
        yield socket, channel, other


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
)
@given(attack_lists=st.lists(attacks, min_size=1, max_size=4))
async def test_a_raw_hostile_server_cannot_crash_the_socket(attack_lists: list[Attack]) -> None:
    try:
        await _withstand(attack_lists)
    except BaseExceptionGroup as group:
        raise leaf(group) from None


async def _withstand(attack_list: list[Attack]) -> None:
    with trio.fail_after(60):
        async with open_raw_server() as server, raw_client(server) as (socket, channel, other):
            connection = server.connections[0]
            await connection.joined.wait()
            join_ref = connection.join_refs[TOPIC]
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for attack in attack_list:
                    await connection.send_texts(attack.frames(join_ref))
                    await socket.ping()  # its reply follows the frames: all were handled
                gc.collect()
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            # Pending diffs are bounded by 1,000 diffs and 10 MB of frames; the rest are
            # small. What the client holds is well under that.
            assert grown < 12_000_000, grown
            assert socket.state is SocketState.CONNECTED
            assert socket.statistics().connects == 1
            assert await channel.push("echo", {"still": "serving"}) == {"still": "serving"}
            assert await other.push("echo", {"other": 1}) == {"other": 1}


async def test_a_pending_diff_flood_is_bounded_and_counted() -> None:
    """3,000 presence diffs and never a presence_state: 1,000 wait, the rest are refused
    (counted as malformed by the presence view)."""
    with trio.fail_after(30):
        async with open_raw_server() as server, raw_client(server) as (socket, channel, _):
            connection = server.connections[0]
            await connection.joined.wait()
            join_ref = connection.join_refs[TOPIC]
            await connection.send_texts(Attack("diff_flood", 3000).frames(join_ref))
            await socket.ping()
            presence = channel.presence()
            assert len(presence._sync.pending_diffs) == 1000
            assert presence.malformed == 2000
            assert not presence.synced


async def test_invalid_utf8_early_in_a_text_frame_closes_with_1007_without_waiting() -> None:
    """A text frame whose payload turns invalid early, with the rest of it held back: the
    client closes with 1007 at once (it does not wait for the rest, which never comes), and
    reports it exactly as it reports the whole invalid frame: the same close code and reason,
    the same error for the push in flight, the same counters; then it reconnects."""
    whole = await _invalid_text(held=False)
    held = await _invalid_text(held=True)
    assert held == whole
    code, reason, error, statistics = held
    assert (code, reason) == (1007, "invalid UTF-8: invalid start byte")
    assert error is ReplyLost  # the connection was lost with the push in flight
    assert (statistics.disconnects, statistics.connects) == (1, 2)


async def _invalid_text(
    *, held: bool
) -> tuple[int | None, str | None, type[PhoenixError], SocketStatistics]:
    start = f'[null,null,"{TOPIC}","news",{{"x":"ok '.encode()
    data = raw_frame(0x1, start + b"\xff" + b"x" * 5000 + b'"}]')
    with trio.fail_after(10):
        async with (
            open_raw_server(topics_to_join=1) as server,
            open_socket(server.url) as socket,
            socket.lifecycle() as events,
            socket.channel(TOPIC) as channel,
        ):
            connection = server.connections[0]
            await connection.joined.wait()
            failed: list[type[PhoenixError]] = []

            async def push_in_flight() -> None:
                try:
                    await channel.push("unanswered", {})
                except PhoenixError as error:
                    failed.append(type(error))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(push_in_flight)
                await socket.ping()  # the server has the push: it answers in order
                await connection.send_raw(data[:100] if held else data)
                disconnected = await _next(events, Disconnected)
            await _next(events, Connected)
            await channel.wait_joined()
            await socket.ping()
            return disconnected.code, disconnected.reason, failed[0], socket.statistics()


@pytest.mark.parametrize("status", [403, 503])
async def test_an_endless_rejection_body_is_read_to_a_bound_then_reported(status: int) -> None:
    async with open_raw_server() as server:
        server.reject_with_endless_body(status)
        gc.collect()
        tracemalloc.start()
        try:
            with trio.fail_after(10), pytest.raises(ConnectError) as raised:
                async with open_socket(server.url):
                    pytest.fail("connected")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        error = raised.value
        assert error.status == status
        assert f"HTTP {status}" in str(error)
        assert error.body is not None
        assert 0 < len(error.body) <= MAX_REJECTION_BODY
        assert error.body.startswith(b"no no")
        assert peak < 4_000_000, peak
        with trio.fail_after(10):
            await server.rejection_ended.wait()  # the client hung up: the server stops
