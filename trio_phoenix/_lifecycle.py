"""Lifecycle events: what happened to the socket and its channels, as a stream of values.

``socket.lifecycle()`` yields a bounded subscription of these, for dashboards, metrics and
tests: connections opening and closing (with close codes), reconnects being scheduled, channels
erroring and rejoining.

The channel events, ``ReconnectScheduled`` and ``DisconnectRequested`` are the sans-IO core's
own event values (``trio_phoenix.proto``), handed on as they are; the four connection events
below come from the Trio layer, which owns the transport.
"""

from __future__ import annotations

import attrs

from ._exceptions import ConnectError
from .proto._events import (
    ChannelEnded as ChannelEnded,
    ChannelErrored as ChannelErrored,
    ChannelJoined as ChannelJoined,
    DisconnectRequested as DisconnectRequested,
    ReconnectScheduled as ReconnectScheduled,
    RejoinScheduled as RejoinScheduled,
)

__all__ = [
    "ChannelEnded",
    "ChannelErrored",
    "ChannelJoined",
    "ConnectFailed",
    "Connected",
    "DisconnectRequested",
    "Disconnected",
    "HeartbeatTimeout",
    "LifecycleEvent",
    "ReconnectScheduled",
    "RejoinScheduled",
    "TransportFallback",
]


@attrs.frozen(kw_only=True)
class Connected:
    """A connection opened; ``connects`` counts them, the first is 1."""

    connects: int


@attrs.frozen(kw_only=True)
class Disconnected:
    """The connection closed; ``code`` is the WebSocket close code (1006: dropped)."""

    code: int | None
    reason: str | None


@attrs.frozen(kw_only=True)
class ConnectFailed:
    """A connection attempt failed (refused, rejected with ``error.status``, timed out)."""

    error: ConnectError


@attrs.frozen(kw_only=True)
class HeartbeatTimeout:
    """A heartbeat went unanswered: the connection is considered dead and is closed."""


@attrs.frozen(kw_only=True)
class TransportFallback:
    """The socket switched to LongPoll for the rest of its life (``longpoll_fallback``): the
    WebSocket could not be established in time. ``error`` says why (``None`` when a WebSocket
    opened but did not answer a heartbeat in time)."""

    transport: str
    error: ConnectError | None


LifecycleEvent = (
    Connected
    | Disconnected
    | ConnectFailed
    | HeartbeatTimeout
    | TransportFallback
    | DisconnectRequested
    | ReconnectScheduled
    | ChannelJoined
    | ChannelErrored
    | RejoinScheduled
    | ChannelEnded
)
