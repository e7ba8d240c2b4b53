"""Channel handlers: the Python shape of a Phoenix channel module, and topic routing.

A handler class plays the part of a module that ``use Phoenix.Channel``; the server creates one
instance per joined channel (Phoenix starts one process per channel), so instance attributes
are that channel's state. The callbacks map one to one:

==============================  ============================================================
Phoenix                          `ChannelHandler`
==============================  ============================================================
``join/3`` → ``{:ok, socket}``   ``join()`` returns ``None`` or ``Reply.ok(payload)``
``{:error, reply}``              ``join()`` returns ``Reply.error(payload)``
raise in ``join/3``              raise in ``join()`` → error reply ``{"reason": "join crashed"}``
``send(self(), :after_join)``    ``after_join()`` runs right after the join reply is queued
``handle_in/3`` → ``{:reply..}``  ``handle_in()`` returns a `Reply`
``{:noreply, socket}``           ``handle_in()`` returns ``None``
``{:stop, reason, reply, s}``    ``handle_in()`` returns ``Stop(reply=..., reason=...)``
raise anywhere                   channel crash → ``phx_error`` ``{"reason": "channel_crash"}``
==============================  ============================================================

``push``, ``broadcast``, ``broadcast_from``, ``socket_ref`` and background tasks live on the
`~trio_phoenix.testing.ChannelSocket` passed to every callback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, final

import attrs
import trio

if TYPE_CHECKING:
    from ._channel import ChannelSocket

__all__ = [
    "ChannelFactory",
    "ChannelHandler",
    "HandleInResult",
    "Reply",
    "Router",
    "Stop",
    "check_payload",
]


def check_payload(payload: object, what: str) -> None:
    """Raise ``ValueError`` unless ``payload`` is a dict or bytes, as Phoenix requires.

    Phoenix raises ``ArgumentError`` for a push, broadcast or reply whose payload is not a map
    (or ``{:binary, data}``).
    """
    if not isinstance(payload, dict | bytes | bytearray):
        raise ValueError(f"{what} payload must be a dict or bytes, got {type(payload).__name__}")


@attrs.frozen(kw_only=True)
class Reply:
    """A reply to a join or a client push: ``{"status": status, "response": payload}``.

    A ``bytes`` payload is sent as a V2 binary reply frame. Phoenix documents the payload as a
    map but sends whatever its serializer can encode, and so do we.
    """

    status: str = "ok"
    payload: Any = attrs.field(factory=dict)

    @classmethod
    def ok(cls, payload: Any = None) -> Reply:
        """An ``ok`` reply (empty payload by default)."""
        return cls(status="ok", payload={} if payload is None else payload)

    @classmethod
    def error(cls, payload: Any = None) -> Reply:
        """An ``error`` reply (empty payload by default)."""
        return cls(status="error", payload={} if payload is None else payload)


@attrs.frozen(kw_only=True)
class Stop:
    """Stop the channel after an optional reply, like ``{:stop, reason, reply, socket}``.

    ``reason`` ``"normal"``, ``"shutdown"`` or ``"shutdown:<anything>"`` closes the channel with
    ``phx_close``; any other reason is an abnormal exit and sends ``phx_error``.
    """

    reply: Reply | None = None
    reason: str = "normal"

    @property
    def normal(self) -> bool:
        """Whether the reason is a normal exit (``phx_close``) rather than an error."""
        return self.reason in ("normal", "shutdown") or self.reason.startswith("shutdown:")


#: What ``handle_in`` may return: a `Reply`, ``None`` (no reply at all) or a `Stop`.
HandleInResult: TypeAlias = Reply | Stop | None


class ChannelHandler:
    """Base class for channel handlers; override the callbacks you need.

    Example:
        >>> class Room(ChannelHandler):
        ...     async def handle_in(self, event, payload, socket):
        ...         socket.broadcast(event, payload)
        ...         return Reply.ok()
    """

    async def join(self, topic: str, payload: Any, socket: ChannelSocket) -> Reply | None:
        """Authorize a join; ``None`` or ``Reply.ok(...)`` accepts, ``Reply.error(...)`` refuses.

        Pushing or broadcasting is not allowed yet (Phoenix raises); use `after_join`.
        """
        await trio.lowlevel.checkpoint()
        return None

    async def after_join(self, socket: ChannelSocket) -> None:
        """Run right after a successful join reply, in the channel's own task.

        The conventional place to track presence and push ``presence_state``.
        """
        await trio.lowlevel.checkpoint()

    async def handle_in(self, event: str, payload: Any, socket: ChannelSocket) -> HandleInResult:
        """Handle a client push. The default crashes the channel, as a missing clause does."""
        await trio.lowlevel.checkpoint()
        raise NotImplementedError(f"{type(self).__name__} does not handle event {event!r}")


#: Builds a fresh handler for each joined channel; a `ChannelHandler` subclass will do.
ChannelFactory: TypeAlias = Callable[[], ChannelHandler]


@final
class Router:
    """Topic patterns to handler factories, like ``channel "room:*", RoomChannel`` lines.

    A pattern ending in ``*`` matches every topic with that prefix; any other pattern matches
    exactly. The first matching pattern wins, in insertion order.
    """

    def __init__(self, routes: Mapping[str, ChannelFactory] | None = None) -> None:
        self._routes: list[tuple[str, bool, ChannelFactory]] = []
        for pattern, factory in (routes or {}).items():
            self.add(pattern, factory)

    def add(self, pattern: str, factory: ChannelFactory) -> None:
        """Route ``pattern`` to ``factory`` (after the existing routes)."""
        if "*" in pattern[:-1]:
            raise ValueError(f"a wildcard is only allowed at the end of a pattern: {pattern!r}")
        wildcard = pattern.endswith("*")
        self._routes.append((pattern[:-1] if wildcard else pattern, wildcard, factory))

    def match(self, topic: object) -> ChannelFactory | None:
        """The factory for ``topic``, or ``None`` (which Phoenix answers "unmatched topic")."""
        if not isinstance(topic, str):
            return None
        for prefix, wildcard, factory in self._routes:
            if topic == prefix or (wildcard and topic.startswith(prefix)):
                return factory
        return None
