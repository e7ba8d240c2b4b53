"""What the tests of ``SocketCore`` (``tests/proto/test_core_*.py``) share.

``SocketCore`` is driven through its public calls only, with explicit ``now`` values. The
server side of every exchange is written out as the exact V2 frames Phoenix sends (protocol.md
§2, §3, §13); what the core writes is decoded with the server-role serializer (``sent``) and
compared field by field (or compared as exact text where phoenix.js's tests do).
"""

from __future__ import annotations

import json
from typing import Any, overload

from tests.helpers import msg
from trio_phoenix.proto import (
    ChannelCore,
    ChannelJoined,
    ChannelState,
    Message,
    Push,
    SocketCore,
    SocketState,
    SocketStatistics,
    V2JSONSerializer,
)

SERVER = V2JSONSerializer("server")
TOPIC = "room:1"
TRANSPORT_CLOSED = {"source": "transport", "reason": "connection_closed"}
TRANSPORT_HEARTBEAT = {"source": "transport", "reason": "heartbeat_timeout"}
CLIENT_JOIN_TIMEOUT = {"source": "client", "reason": "join_timeout"}


def frame(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    """A V2 text frame exactly as Phoenix (Jason) writes it."""
    return json.dumps([join_ref, ref, topic, event, payload], separators=(",", ":"))


def reply(
    join_ref: str | None,
    ref: str | None,
    topic: str = TOPIC,
    status: str = "ok",
    response: Any = None,
) -> str:
    payload = {"response": {} if response is None else response, "status": status}
    return frame(join_ref, ref, topic, "phx_reply", payload)


def ok_reply(join_ref: str | None, ref: str | None, topic: str = TOPIC) -> Message:
    """The decoded form of ``reply(join_ref, ref, topic)``."""
    return msg(join_ref, ref, topic, "phx_reply", {"response": {}, "status": "ok"})


def sent(core: SocketCore) -> list[Message]:
    """Take what the core wrote, decoded as the server would."""
    return [SERVER.decode(f) for f in core.data_to_send()]


def new_core(**kwargs: Any) -> SocketCore:
    kwargs.setdefault("heartbeat_interval", None)
    return SocketCore(**kwargs)


def connect(core: SocketCore, now: float = 0.0) -> None:
    core.connection_started(now)
    core.connection_opened(now)


def connected_core(now: float = 0.0, **kwargs: Any) -> SocketCore:
    core = new_core(**kwargs)
    connect(core, now)
    return core


def join_ok(
    core: SocketCore, topic: str = TOPIC, now: float = 0.0, params: Any = None, **kwargs: Any
) -> ChannelCore:
    """Create and join a channel, answer its join with ok, and drain frames and events."""
    channel = core.channel(topic, params, **kwargs)
    core.join(channel, now)
    (join,) = sent(core)
    assert join.event == "phx_join"
    core.receive(reply(join.ref, join.ref, topic), now)
    assert core.events() == [ChannelJoined(channel.topic, {}, False, channel=channel)]
    assert state(channel) is ChannelState.JOINED
    return channel


def stats(core: SocketCore) -> SocketStatistics:
    return core.statistics()


# Read state through calls, so that mypy does not narrow it across the calls that change it.
@overload
def state(obj: SocketCore) -> SocketState: ...
@overload
def state(obj: ChannelCore) -> ChannelState: ...
def state(obj: SocketCore | ChannelCore) -> SocketState | ChannelState:
    return obj.state


def done(push: Push) -> bool:
    return push.done


def connected(core: SocketCore) -> bool:
    return core.connected


def has_data(core: SocketCore) -> bool:
    return core.has_data_to_send


__all__ = [
    "CLIENT_JOIN_TIMEOUT",
    "SERVER",
    "TOPIC",
    "TRANSPORT_CLOSED",
    "TRANSPORT_HEARTBEAT",
    "connect",
    "connected",
    "connected_core",
    "done",
    "frame",
    "has_data",
    "join_ok",
    "msg",
    "new_core",
    "ok_reply",
    "reply",
    "sent",
    "state",
    "stats",
]
