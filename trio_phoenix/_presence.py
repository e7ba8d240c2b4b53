"""Presence: a live, phoenix.js-exact view of who is on a channel, plus a change stream.

The sync rules are ``trio_phoenix.proto.PresenceSync``'s; this module feeds it the channel's
``presence_state`` / ``presence_diff`` messages as the reader receives them (synchronously, so
the view is current even when nobody consumes the change stream) and fans the resulting
join / leave / sync changes out to bounded subscriptions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar, final, overload

import trio

from ._outcomes import closed_error
from ._subscription import OverflowPolicy, Subscription
from ._sync import Pulse
from .proto import ChannelCore, Message, RemoteProtocolError
from .proto._presence import PresenceChange, PresenceEntry, PresenceSynced
from .proto._presence_view import PresenceSync

__all__ = ["Presence"]

logger = logging.getLogger("trio_phoenix")
_T = TypeVar("_T")


@final
class Presence:
    """Who is present on a channel, kept in sync with the server's presence events.

    Get it from ``channel.presence()``. ``state``, ``list()``, ``get(key)``, ``key in
    presence`` and ``len(presence)`` are always current; ``wait_synced()`` waits for the
    first ``presence_state`` of the current join; ``changes()`` streams typed
    ``PresenceJoin`` / ``PresenceLeave`` / ``PresenceSynced`` values in phoenix.js's callback
    order. After a rejoin, diffs are held until the new ``presence_state`` arrives, exactly as
    phoenix.js does.

    Reads hand out the view's own presences, not copies, so they are read-only
    (``ReadOnlyDict`` with ``ReadOnlyList`` metas, equal to plain dicts and lists; a
    ``copy.deepcopy()`` is modifiable). ``get``, ``in`` and ``len`` are O(1); ``list()`` is a
    new list, O(number of keys); ``state`` is a snapshot built once per change.
    """

    def __init__(self, channel: ChannelCore, state_event: str, diff_event: str) -> None:
        self._channel = channel  # the core's channel: its join ref and whether it ended
        self.state_event = state_event
        self.diff_event = diff_event
        self._sync = PresenceSync()
        self._subscriptions: list[Subscription[PresenceChange]] = []
        self._synced = Pulse()
        self.malformed = 0

    def __repr__(self) -> str:
        return f"<trio_phoenix.Presence {self._channel.topic!r} {len(self._sync)} keys>"

    @property
    def state(self) -> Mapping[str, PresenceEntry]:
        """The current state, ``{key: {"metas": [...], ...}}`` in phoenix.js key order.

        A read-only snapshot: later changes do not alter it. Built once per change (a shallow
        O(number of keys) copy); reading it again before the next change returns the same
        object.
        """
        return self._sync.state

    def get(self, key: str) -> PresenceEntry | None:
        """The read-only presence of ``key``, or ``None`` if absent. O(1), no copy."""
        return self._sync.get(key)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is present. O(1)."""
        return key in self._sync

    def __len__(self) -> int:
        """The number of keys present. O(1)."""
        return len(self._sync)

    @property
    def synced(self) -> bool:
        """Whether the view has the current join's ``presence_state``."""
        return not self._sync.in_pending_sync_state(self._channel.join_ref)

    @overload
    def list(self, chooser: None = None) -> list[PresenceEntry]: ...
    @overload
    def list(self, chooser: Callable[[str, PresenceEntry], _T]) -> list[_T]: ...
    def list(self, chooser: Callable[[str, PresenceEntry], Any] | None = None) -> list[Any]:
        """The presences in phoenix.js key order, or ``chooser(key, presence)`` for each.

        A new list (O(number of keys)) of the view's read-only presences, not copies.
        """
        return self._sync.list(chooser)

    async def wait_synced(self) -> None:
        """Wait until the view holds the ``presence_state`` of the channel's current join.

        Raises:
            ChannelClosed: the channel is closed and the view is not synced.
        """
        while not self.synced:
            if self._channel.ended:
                raise closed_error(self._channel.topic, self._channel.close_reason)
            await self._synced.wait()
        await trio.lowlevel.checkpoint()

    @asynccontextmanager
    async def changes(
        self, *, max_buffer: int = 1000, overflow: OverflowPolicy = "raise"
    ) -> AsyncIterator[Subscription[PresenceChange]]:
        """Stream the changes (joins, leaves, then a ``PresenceSynced`` per applied event).

        The stream ends when the channel closes.

        Raises:
            ChannelClosed: the channel is already closed (no change can come any more).
        """
        if self._channel.ended:
            raise closed_error(self._channel.topic, self._channel.close_reason)
        subscription: Subscription[PresenceChange] = Subscription(max_buffer, overflow)
        self._subscriptions.append(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.remove(subscription)
            subscription.close()

    # -- fed by the channel ------------------------------------------------------------------

    def _handle(self, message: Message, size: int = 0) -> None:
        join_ref = self._channel.join_ref
        try:
            if message.event == self.state_event:
                changes = self._sync.handle_state(message.payload, join_ref)
            else:
                changes = self._sync.handle_diff(message.payload, join_ref, size=size)
        except RemoteProtocolError as exc:
            self.malformed += 1
            logger.warning("ignored a malformed %s on %r: %s", message.event, message.topic, exc)
            return
        if changes and isinstance(changes[-1], PresenceSynced):
            self._synced.fire()
        for change in changes:
            for subscription in self._subscriptions:
                subscription.offer(change)

    def _ended(self) -> None:
        self._synced.fire()  # wake wait_synced(): it can no longer succeed
        for subscription in self._subscriptions:
            subscription.end()
