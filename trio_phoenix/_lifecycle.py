"""Lifecycle events: what happened to the socket and its channels, as a stream of values.

``socket.lifecycle()`` yields a bounded subscription of these, for dashboards, metrics and
tests: connections opening and closing (with close codes), reconnects being scheduled, channels
erroring and rejoining.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._exceptions import ConnectError

__all__ = [
    "ChannelEnded",
    "ChannelErrored",
    "ChannelJoined",
    "ConnectFailed",
    "Connected",
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


@attrs.frozen(kw_only=True)
class ReconnectScheduled:
    """The socket reconnects in ``delay`` seconds; ``attempt`` counts from 1."""

    delay: float
    attempt: int


@attrs.frozen(kw_only=True)
class ChannelJoined:
    """A channel joined (``rejoin`` is false the first time) with the server's ``response``."""

    topic: str
    response: Any
    rejoin: bool


@attrs.frozen(kw_only=True)
class ChannelErrored:
    """A channel errored and will rejoin. ``payload`` is the server's ``phx_error`` payload, or
    ``{"source": "transport", "reason": ...}`` when the connection was lost."""

    topic: str
    payload: Any


@attrs.frozen(kw_only=True)
class RejoinScheduled:
    """An errored channel rejoins in ``delay`` seconds (attempt ``attempt``)."""

    topic: str
    delay: float
    attempt: int


@attrs.frozen(kw_only=True)
class ChannelEnded:
    """A channel is closed for good: ``reason`` is ``"left"``, ``"server_closed"``,
    ``"join_failed"``, ``"join_timeout"`` or ``"socket_closed"``."""

    topic: str
    reason: str
    payload: Any = None


LifecycleEvent = (
    Connected
    | Disconnected
    | ConnectFailed
    | HeartbeatTimeout
    | TransportFallback
    | ReconnectScheduled
    | ChannelJoined
    | ChannelErrored
    | RejoinScheduled
    | ChannelEnded
)
