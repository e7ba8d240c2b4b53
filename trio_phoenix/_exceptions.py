"""The public exception hierarchy, rooted at ``PhoenixError``.

The classes that need no Trio live in ``trio_phoenix.proto`` and are re-exported here; the
timeouts subclass ``trio.TooSlowError`` too, so code that already handles Trio timeouts keeps
working. Every exception passes all its arguments to ``super().__init__``: they copy and pickle.

Which exception, by the trio convention:

- A bad argument *value* or *type* is a ``ValueError`` or ``TypeError`` whose message names
  the argument and says what to pass (``timeout=-1``, a topic that is not a string). Where the
  library has a finer class it derives from both: ``EncodeError``, ``InvalidURL`` and
  ``InvalidHeader`` are value errors, ``InvalidParams`` a type error.
- Misuse of *state* is ``LocalProtocolError``: pushing on a channel never joined, joining
  twice, a topic another live channel holds, an event name the protocol reserves.
- A closed channel or socket is ``ChannelClosed`` / ``SocketClosed``; what the server or the
  network did is the rest of the ``PhoenixError`` tree (``JoinError``, ``PushTimeout``, ...).
"""

from __future__ import annotations

from typing import Any

import trio

from .proto._errors import (
    ChannelClosed as ChannelClosed,
    EncodeError as EncodeError,
    InvalidHeader as InvalidHeader,
    InvalidParams as InvalidParams,
    InvalidTransition as InvalidTransition,
    InvalidURL as InvalidURL,
    LocalProtocolError as LocalProtocolError,
    PhoenixError as PhoenixError,
    ProtocolError as ProtocolError,
    RemoteProtocolError as RemoteProtocolError,
    SocketClosed as SocketClosed,
)

__all__ = [
    "ChannelClosed",
    "ConnectError",
    "ConnectTimeout",
    "EncodeError",
    "InvalidHeader",
    "InvalidParams",
    "InvalidTransition",
    "InvalidURL",
    "JoinError",
    "JoinTimeout",
    "LocalProtocolError",
    "PhoenixError",
    "PhoenixTimeout",
    "ProtocolError",
    "PushError",
    "PushTimeout",
    "RemoteProtocolError",
    "ReplyLost",
    "SocketClosed",
    "SubscriptionOverflow",
]


class ConnectError(PhoenixError):
    """The WebSocket connection could not be opened.

    ``status`` is the HTTP status of a rejected upgrade (403 for a refused token or an
    unsupported ``vsn``, 429, ...) or ``None`` for network, proxy and TLS failures (a proxy's
    refusal, such as a 407, is in the message, which names the proxy).
    """

    def __init__(self, message: str, status: int | None = None, body: bytes | None = None) -> None:
        super().__init__(message, status, body)
        self.message = message
        self.status = status
        self.body = body

    def __str__(self) -> str:
        return self.message


class JoinError(PhoenixError):
    """The server refused to join the channel; ``response`` is what its ``join/3`` replied."""

    def __init__(self, topic: str, response: Any, status: str = "error") -> None:
        super().__init__(topic, response, status)
        self.topic = topic
        self.response = response
        self.status = status

    def __str__(self) -> str:
        return f"joining {self.topic!r} failed: {self.response!r}"


class PushError(PhoenixError):
    """The server answered a push with a non-ok status (usually ``"error"``)."""

    def __init__(self, event: str, status: str, response: Any) -> None:
        super().__init__(event, status, response)
        self.event = event
        self.status = status
        self.response = response

    def __str__(self) -> str:
        return f"push {self.event!r} replied {self.status!r}: {self.response!r}"


class ReplyLost(PhoenixError):
    """A push was sent but its reply can no longer arrive: the connection dropped or the
    server-side channel crashed. The server may or may not have processed it."""

    def __init__(self, event: str, reason: Any = None) -> None:
        super().__init__(event, reason)
        self.event = event
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"the reply to {self.event!r} was lost ({self.reason!r}); it may have been processed"
        )


class PhoenixTimeout(PhoenixError, trio.TooSlowError):
    """No reply within the timeout. Also a ``trio.TooSlowError``."""


class ConnectTimeout(ConnectError, PhoenixTimeout):
    """Your deadline expired while the socket was still trying to open its first connection.

    ``__cause__`` (and ``last_error``) is the ``ConnectError`` of the last failed attempt.
    Also a ``trio.TooSlowError``.
    """

    def __init__(self, message: str, last_error: ConnectError | None = None) -> None:
        PhoenixError.__init__(self, message, last_error)
        self.message = message
        self.status = None
        self.body = None
        self.last_error = last_error


class JoinTimeout(PhoenixTimeout):
    """The server did not answer the join in time; the channel is closed."""


class PushTimeout(PhoenixTimeout):
    """The server did not answer the push in time (``{:noreply}``, or too slow)."""


class SubscriptionOverflow(PhoenixError):
    """A subscriber fell behind: ``dropped`` messages did not fit its buffer and were dropped.

    Raised by the subscription's ``receive()`` at the place in the stream where the messages
    went missing; receiving again continues with the messages that arrived after the gap.
    """

    def __init__(self, dropped: int) -> None:
        super().__init__(dropped)
        self.dropped = dropped

    def __str__(self) -> str:
        return f"{self.dropped} message(s) dropped: the subscriber fell behind its buffer"
