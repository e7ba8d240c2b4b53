"""The root of trio_phoenix's exception hierarchy, and the errors the sans-IO core raises.

They live here, not in the Trio layer, so that ``trio_phoenix.proto`` stays importable without
Trio. Who is at fault decides the class: ``LocalProtocolError`` when our own caller asked for
something the protocol forbids (an illegal state transition, a payload that cannot be encoded),
``RemoteProtocolError`` when the peer sent something malformed. Every exception passes all its
arguments to ``super().__init__`` so it survives ``copy.copy`` and pickling.
"""

from __future__ import annotations

__all__ = [
    "ChannelClosed",
    "EncodeError",
    "InvalidHeader",
    "InvalidParams",
    "InvalidTransition",
    "InvalidURL",
    "LocalProtocolError",
    "PhoenixError",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketClosed",
]


class PhoenixError(Exception):
    """Base class of every exception trio_phoenix raises on purpose."""


class ProtocolError(PhoenixError):
    """A violation of the Phoenix Channels protocol, by either side."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol (or the current state) does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a frame that cannot be decoded or makes no sense in the protocol."""


class EncodeError(LocalProtocolError, ValueError):
    """A message cannot be encoded: a payload that is not JSON, a binary field over 255 bytes."""


class InvalidURL(LocalProtocolError, ValueError):
    """A socket URL that cannot be used: wrong scheme, no host."""


class InvalidHeader(LocalProtocolError, ValueError):
    """A request header that cannot be sent: a bad name, or a value with CR, LF, NUL or
    characters outside Latin-1. The message names the header, never its value."""


class InvalidParams(LocalProtocolError, TypeError):
    """Socket ``params`` that are not a mapping (or a callable returning one)."""


class InvalidTransition(LocalProtocolError):
    """An event that the channel state machine does not accept in its current state."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(state, event)
        self.state = state
        self.event = event

    def __str__(self) -> str:
        return f"channel in state {self.state!r} cannot handle {self.event!r}"


class ChannelClosed(PhoenixError):
    """The channel is closed: left by the application, closed by the server, or never joined.

    ``reason`` is a short tag (``"left"``, ``"server_closed"``, ``"join_failed"``,
    ``"join_timeout"``, ``"socket_closed"``); ``payload`` is what the server sent, if anything.
    """

    def __init__(self, topic: str, reason: str, payload: object = None) -> None:
        super().__init__(topic, reason, payload)
        self.topic = topic
        self.reason = reason
        self.payload = payload

    def __str__(self) -> str:
        return f"channel {self.topic!r} is closed ({self.reason})"


class SocketClosed(PhoenixError):
    """The socket is closed (or was never opened), so nothing can be sent on it."""
