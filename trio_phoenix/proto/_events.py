"""Events the sans-IO core hands to the I/O layer.

The core never calls out: every consequence of a frame, a timer or a command that the I/O
layer must act on (wake a waiting push, feed subscribers, open or close the transport) comes
back as one of these values, in order, from ``SocketCore.events()``.

Six of them are also public lifecycle events (``ChannelJoined``, ``ChannelErrored``,
``ChannelEnded``, ``RejoinScheduled``, ``ReconnectScheduled``, ``DisconnectRequested``): the
Trio layer hands them to ``socket.lifecycle()`` subscribers as they are, with their
``channel`` (the core's, which only the I/O layer needs) set to ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._channel_core import CloseReason, PushFailure
from ._message import Message

if TYPE_CHECKING:
    from ._channel_core import ChannelCore, Push, Waiter

__all__ = [
    "ChannelEnded",
    "ChannelErrored",
    "ChannelJoined",
    "CloseTransport",
    "DisconnectRequested",
    "DropConnection",
    "Event",
    "FrameDropped",
    "JoinFailed",
    "JoinParamsNeeded",
    "MessageReceived",
    "PingLost",
    "PingReplied",
    "PushFailed",
    "PushReplied",
    "PushTimedOut",
    "ReconnectDue",
    "ReconnectScheduled",
    "RejoinScheduled",
]


@attrs.frozen
class MessageReceived:
    """A message for a channel: a broadcast or a server push (not a reply)."""

    channel: ChannelCore
    message: Message
    #: The size of the frame it came in (characters of a text frame, bytes of a binary one).
    size: int = attrs.field(default=0, eq=False)


@attrs.frozen
class PushReplied:
    """The server replied to a push (a user push, never a join or leave)."""

    push: Push
    status: str
    response: Any


@attrs.frozen
class PushTimedOut:
    """No reply within the push's timeout; if it was still buffered, it was never sent."""

    push: Push


@attrs.frozen
class PushFailed:
    """A push ended without a reply: its channel closed, or its reply can no longer arrive.

    ``reason`` says which (see ``PushFailure``); ``detail`` is the channel's close reason
    (``CHANNEL_CLOSED``), what the server or the transport said (``REPLY_LOST``) or the
    ``EncodeError`` (``ENCODE_ERROR``).
    """

    push: Push
    reason: PushFailure = attrs.field(converter=PushFailure)
    detail: Any = None


@attrs.frozen
class ChannelJoined:
    """A channel joined (``rejoin`` is false the first time) with the server's ``response``."""

    topic: str
    response: Any
    rejoin: bool
    #: The core's channel, for the I/O layer (``None`` in the values a socket's lifecycle
    #: stream hands out).
    channel: ChannelCore | None = attrs.field(default=None, kw_only=True, repr=False)


@attrs.frozen
class JoinFailed:
    """The server refused a join. ``first`` joins are not retried: the channel is closed."""

    channel: ChannelCore
    status: str
    response: Any
    first: bool


@attrs.frozen
class JoinParamsNeeded:
    """A channel whose params are evaluated per join (``params_on_demand``) is about to
    rejoin: the I/O layer evaluates them and answers ``ChannelCore.params_ready(ref, ...)`` (or
    ``params_failed``); the join is sent then. The rejoin's timeout is already running."""

    channel: ChannelCore
    ref: str


@attrs.frozen
class ChannelErrored:
    """A channel errored and will rejoin. ``payload`` is the server's ``phx_error`` payload, or
    ``{"source": "transport", "reason": ...}`` when the connection was lost (``"client"``
    and ``"join_timeout"`` when a rejoin timed out)."""

    topic: str
    payload: Any
    #: The core's channel, for the I/O layer (``None`` in the lifecycle stream).
    channel: ChannelCore | None = attrs.field(default=None, kw_only=True, repr=False)


@attrs.frozen
class ChannelEnded:
    """A channel is closed for good: ``reason`` is ``"left"``, ``"server_closed"``,
    ``"join_failed"``, ``"join_timeout"`` or ``"socket_closed"``; ``payload`` is what the
    server sent, if anything."""

    topic: str
    reason: CloseReason = attrs.field(converter=CloseReason)
    payload: Any = None
    #: The core's channel, for the I/O layer (``None`` in the lifecycle stream).
    channel: ChannelCore | None = attrs.field(default=None, kw_only=True, repr=False)


@attrs.frozen
class RejoinScheduled:
    """An errored channel rejoins in ``delay`` seconds (attempt ``attempt``, from 1)."""

    topic: str
    delay: float
    attempt: int
    #: The core's channel, for the I/O layer (``None`` in the lifecycle stream).
    channel: ChannelCore | None = attrs.field(default=None, kw_only=True, repr=False)


@attrs.frozen
class ReconnectScheduled:
    """The socket reconnects in ``delay`` seconds; ``attempt`` counts from 1."""

    delay: float
    attempt: int


@attrs.frozen
class ReconnectDue:
    """The reconnect timer fired: the I/O layer should open a new connection now."""


@attrs.frozen
class CloseTransport:
    """The core gave up on the current connection (heartbeat timeout): close it."""

    code: int
    reason: str


@attrs.frozen
class DropConnection:
    """The application asked to drop the connection (``disconnect()``, ``reconnect()``): close
    the open transport with ``code`` and ``reason``, or abandon the attempt in flight."""

    code: int
    reason: str
    #: Whether to wait for the server's close (within the close timeout); false when a new
    #: connection is wanted at once (the old one may be dead after a network change).
    graceful: bool


@attrs.frozen
class DisconnectRequested:
    """The application called ``disconnect()``: the connection (if any) closes with 1000 and
    the socket stays disconnected, its channels waiting to rejoin, until ``connect()``."""


@attrs.frozen
class PingReplied:
    """The server answered ``socket.ping()``: ``rtt`` seconds after it was sent."""

    ref: str
    rtt: float
    #: What ``SocketCore.ping`` was given, to hand the round trip to.
    waiter: Waiter | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)


@attrs.frozen
class PingLost:
    """The connection went away before the ping was answered."""

    ref: str
    waiter: Waiter | None = attrs.field(default=None, kw_only=True, eq=False, repr=False)


@attrs.frozen
class FrameDropped:
    """An incoming frame or message was ignored; ``reason`` is a short machine-readable tag.

    Reasons: ``"malformed"`` (undecodable; ``error`` says why), ``"stale_join_ref"``,
    ``"unknown_ref"`` (a reply nobody waits for), ``"unknown_topic"``,
    ``"bad_reply"`` (a reply without a string status), ``"already_errored"`` (a ``phx_error``
    for a channel that is already errored).
    """

    reason: str
    message: Message | None = None
    error: Exception | None = None


Event = (
    MessageReceived
    | PushReplied
    | PushTimedOut
    | PushFailed
    | ChannelJoined
    | JoinFailed
    | JoinParamsNeeded
    | ChannelErrored
    | ChannelEnded
    | RejoinScheduled
    | ReconnectScheduled
    | ReconnectDue
    | CloseTransport
    | DropConnection
    | DisconnectRequested
    | PingReplied
    | PingLost
    | FrameDropped
)
