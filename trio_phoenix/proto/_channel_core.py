"""The data of the sans-IO core's channels, and the typed seam to the I/O layer.

``ChannelCore`` is one channel's protocol state and ``Push`` one request awaiting a reply; the
rules that change them are ``_channel_rules.ChannelRules``. A ``ChannelCore`` knows the core
that owns it, so the I/O layer's channel needs no other handle: ``join``, ``push``, ``leave``
and ``cancel_push`` on it are the core's commands for that channel.

The I/O layer hangs its own objects on the core's: a ``ChannelOwner`` on each channel (the
Trio ``Channel``) and a ``Waiter`` on each push and ping. The core never calls them; they come
back with the events (``event.channel.owner``, ``event.push.waiter``), so the I/O layer finds
whom an event concerns without a lookup table, and the types say what it will find.
"""

from __future__ import annotations

import enum
from typing import Any, Final, Protocol

import attrs

from ._backoff import Backoff
from ._channel_state import ChannelState
from ._message import Message
from ._timers import Timer

__all__ = [
    "DEFAULT_TIMEOUT",
    "UNSET",
    "ChannelCommands",
    "ChannelCore",
    "ChannelOwner",
    "CloseReason",
    "Counters",
    "Push",
    "PushFailure",
    "PushKind",
    "SocketState",
    "Unset",
    "Waiter",
    "check_timeout",
]

#: phoenix.js ``timeout``: default join/push/leave timeout, in seconds.
DEFAULT_TIMEOUT: Final = 10.0


class Waiter(Protocol):
    """What the I/O layer hangs on a push or a ping to hand its caller the outcome."""

    def set_value(self, value: Any) -> None: ...
    def set_error(self, error: BaseException) -> None: ...


class ChannelOwner(Protocol):
    """What the I/O layer hangs on a channel: the object the channel's events are for."""

    def _deliver(self, message: Message, size: int) -> None: ...
    def _joined(self, response: Any, rejoin: bool) -> None: ...
    def _join_failed(self, status: str, response: Any) -> None: ...
    def _errored(self) -> None: ...
    def _ended(self, reason: CloseReason, payload: Any) -> None: ...
    def _params_needed(self, ref: str) -> None: ...
    async def leave(self) -> None: ...


class PushFailure(enum.StrEnum):
    """Why a push ended without a reply (``PushFailed.reason``)."""

    #: The channel was left or closed: the push was not sent, or its reply went with it.
    CHANNEL_CLOSED = "channel_closed"
    #: The connection dropped or the server channel crashed after the push was sent.
    REPLY_LOST = "reply_lost"
    #: The application closed the socket.
    SOCKET_CLOSED = "socket_closed"
    #: A buffered payload was changed after it was accepted and no longer encodes.
    ENCODE_ERROR = "encode_error"


class CloseReason(enum.StrEnum):
    """Why a channel closed for good (``ChannelEnded.reason``, ``ChannelClosed.reason``)."""

    LEFT = "left"
    SERVER_CLOSED = "server_closed"
    JOIN_FAILED = "join_failed"
    JOIN_TIMEOUT = "join_timeout"
    SOCKET_CLOSED = "socket_closed"


class SocketState(enum.Enum):
    """Where a socket's connection stands (``Socket.state``, ``SocketCore.state``)."""

    IDLE = "idle"  # not connected yet, and not trying
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"  # disconnected; a reconnect is scheduled
    # Disconnected and not reconnecting: the application called disconnect() (connect()
    # resumes), or the reconnect policy gave up (a Trio socket then closes).
    DISCONNECTED = "disconnected"
    CLOSED = "closed"  # closed by the application, for good


class PushKind(enum.Enum):
    USER = "push"
    JOIN = "join"
    LEAVE = "leave"


class Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = Unset.UNSET


@attrs.define(eq=False, repr=False)
class Push:
    """One request that expects a reply: a user push, a join or a leave.

    ``ref`` is the ref of the frame currently awaiting a reply (``None`` while buffered);
    a push gets a fresh ref each time it is sent. ``waiter`` belongs to the I/O layer.
    """

    channel: ChannelCore
    kind: PushKind
    event: str
    payload: Any
    timer: Timer
    ref: str | None = None
    done: bool = False
    waiter: Waiter | None = None

    def __repr__(self) -> str:
        kind, topic = self.kind.value, self.channel.topic
        return f"<trio_phoenix.proto.Push {kind} {self.event!r} on {topic!r} ref={self.ref}>"


class ChannelCommands(Protocol):
    """The socket core's commands for one channel (``SocketCore`` has them)."""

    def join(self, channel: ChannelCore, now: float, *, params: Any = UNSET) -> Push: ...
    def leave(self, channel: ChannelCore, now: float) -> Push | None: ...
    def push(
        self,
        channel: ChannelCore,
        event: str,
        payload: Any,
        now: float,
        *,
        timeout: float | Unset | None = UNSET,
    ) -> Push: ...
    def cancel_push(self, push: Push) -> None: ...
    def params_ready(self, channel: ChannelCore, ref: str, params: Any, now: float) -> None: ...
    def params_failed(
        self, channel: ChannelCore, ref: str, error: BaseException, now: float
    ) -> None: ...


@attrs.define(eq=False, repr=False)
class ChannelCore:
    """The protocol state of one channel (one topic, one join at a time).

    Where the channel stands is ``state`` (moved only by the transition table); the one fact
    the table cannot hold is ``joined_once`` (a first join and a rejoin both are
    ``joining``). Whether ``join`` was called and whether the channel ended are derived.

    With ``params_on_demand`` the I/O layer supplies the params of every join: those given to
    ``join`` are used for the first join frame, and each later one waits for a
    ``JoinParamsNeeded`` request (``params_ref``) to be answered.
    """

    topic: str
    params: Any
    timeout: float | None
    rejoin_backoff: Backoff
    rejoin_timer: Timer
    rules: ChannelCommands  # the socket core that owns the channel
    state: ChannelState = ChannelState.CLOSED
    join_ref: str | None = None
    join_push: Push | None = None
    leave_push: Push | None = None
    joined_once: bool = False
    close_reason: CloseReason | None = None
    buffer: list[Push] = attrs.Factory(list)
    pending: dict[str, Push] = attrs.Factory(dict)
    owner: ChannelOwner | None = None
    params_on_demand: bool = False
    params_fresh: bool = False  # the params were supplied for the next join frame
    params_ref: str | None = None  # the JoinParamsNeeded request being answered

    @property
    def join_called(self) -> bool:
        """Whether ``join`` was called (a channel is joined at most once)."""
        return self.join_push is not None

    @property
    def ended(self) -> bool:
        """Whether the channel was joined and is now closed for good."""
        return self.state is ChannelState.CLOSED and self.join_push is not None

    def join(self, now: float, *, params: Any = UNSET) -> Push:
        """``SocketCore.join`` of this channel."""
        return self.rules.join(self, now, params=params)

    def leave(self, now: float) -> Push | None:
        """``SocketCore.leave`` of this channel."""
        return self.rules.leave(self, now)

    def push(
        self, event: str, payload: Any, now: float, *, timeout: float | Unset | None = UNSET
    ) -> Push:
        """``SocketCore.push`` on this channel."""
        return self.rules.push(self, event, payload, now, timeout=timeout)

    def cancel_push(self, push: Push) -> None:
        """``SocketCore.cancel_push`` of a push on this channel."""
        self.rules.cancel_push(push)

    def params_ready(self, ref: str, params: Any, now: float) -> None:
        """``SocketCore.params_ready`` for this channel."""
        self.rules.params_ready(self, ref, params, now)

    def params_failed(self, ref: str, error: BaseException, now: float) -> None:
        """``SocketCore.params_failed`` for this channel."""
        self.rules.params_failed(self, ref, error, now)

    def __repr__(self) -> str:
        state = self.state.value
        return f"<trio_phoenix.proto.ChannelCore {self.topic!r} {state} join_ref={self.join_ref}>"


@attrs.define(eq=False)
class Counters:
    frames_received: int = 0
    frames_sent: int = 0
    malformed_frames: int = 0
    dropped_messages: int = 0
    heartbeats_sent: int = 0
    heartbeat_timeouts: int = 0
    connects: int = 0
    disconnects: int = 0


def check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not timeout >= 0:
        raise ValueError(
            f"timeout must be a non-negative number of seconds or None, got {timeout!r}"
        )
    return timeout
