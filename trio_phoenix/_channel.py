"""Channel: join, push, leave and subscribe on one topic, over the sans-IO ``ChannelCore``.

All protocol decisions are the core's; this module waits for their outcomes and turns them
into return values and exceptions (``_outcomes``). A ``Channel`` holds its own ``ChannelCore``
and gives it its commands directly; from its socket it needs only what ``SocketLink`` names,
so this module never imports ``_socket``. Every waiting call honours the caller's cancel scopes: a
cancelled push is removed from the core (no pending entry survives it), a cancelled join
abandons the join (the channel is left).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, Protocol, final

import attrs
import trio

from ._options import check_trio_token, evaluate
from ._outcomes import closed_error, join_error, refused_error, stream_error
from ._presence import Presence
from ._subscription import DEFAULT_MAX_BUFFER_BYTES, Flow, OverflowPolicy, Subscription
from ._sync import Pulse, Waiter
from .proto import ChannelCore, ChannelState, CloseReason, Message
from .proto._limits import BufferBound
from .proto._presence import MAX_PENDING_BYTES, MAX_PENDING_DIFFS

__all__ = ["DEFAULT_MAX_BUFFER", "Channel", "ChannelStatistics", "SocketLink"]

logger: Final = logging.getLogger("trio_phoenix")

#: Join params as a sync or async callable, evaluated before every join.
ParamsCallable = Callable[[], Any | Awaitable[Any]]

#: Default number of messages a subscription buffers before its overflow policy applies.
DEFAULT_MAX_BUFFER: Final = 1000


_DEFAULT_PRESENCE_EVENTS: Final = frozenset({"presence_state", "presence_diff"})
_DEFAULT_PRESENCE_KEY: Final = ("presence_state", "presence_diff")


def _unclaimed_bound() -> BufferBound:
    """One state and the pending diffs a view would accept after it."""
    return BufferBound(MAX_PENDING_DIFFS + 1, MAX_PENDING_BYTES)


#: Shared, never mutated: a channel gets its own dict with its first presence view.
_DEFAULT_LISTENERS: Final[dict[str, Presence]] = {}


class SocketLink(Protocol):
    """What a channel needs from its socket (the socket module imports this one, never the
    other way round): its Trio token, its close timeout, and a pump to run after every
    command given to the core; its reader's ``Flow``."""

    _trio_token: trio.lowlevel.TrioToken
    _close_timeout: float
    _nursery: trio.Nursery | None
    _flow: Flow

    def _pump(self) -> None: ...


@attrs.frozen(kw_only=True)
class ChannelStatistics:
    """A snapshot of a channel's counters."""

    topic: str
    state: ChannelState
    join_ref: str | None
    pending_replies: int
    buffered_pushes: int
    subscriptions: int
    messages_received: int
    messages_dropped: int


@final
class Channel:
    """A Phoenix channel on one topic. Create it with ``socket.channel(topic, params)``.

    Use it as ``async with channel:`` (join on enter, leave on exit) or call ``join()`` and
    ``leave()`` yourself. A channel is joined at most once; after it is closed, create a new
    one. While the socket reconnects, or after the server-side channel crashed, the channel
    rejoins by itself with a new join ref; pushes made meanwhile wait in a buffer.
    """

    __slots__ = (
        "_changed",
        "_closed_dropped",
        "_core",
        "_join_response",
        "_join_waiter",
        "_listeners",
        "_messages_received",
        "_params_source",
        "_presences",
        "_socket",
        "_subscriptions",
        "_unclaimed",
        "_unclaimed_bound",
        "_unclaimed_refused",
    )

    def __init__(
        self, core: ChannelCore, socket: SocketLink, params: ParamsCallable | None = None
    ) -> None:
        self._core = core  # the protocol state: the core decides, this class waits
        self._socket = socket
        self._params_source = params  # evaluated before every join (core.params_on_demand)
        core.owner = self
        # Replaced, never mutated (a delivery may run while one is added or removed).
        self._subscriptions: tuple[tuple[frozenset[str] | None, Subscription[Message]], ...] = ()
        self._join_waiter: Waiter | None = None
        self._changed = Pulse()  # fired when the channel joins, errors or closes
        self._join_response: Any = None
        self._messages_received = 0
        self._closed_dropped = 0
        # Presence views, created on demand. Until the default one exists, its events are
        # kept unparsed (the last state and the diffs after it, bounded as a view's pending
        # diffs are) and handed to it when it is made: presence costs nothing to a channel
        # that never asks for it, and a view made after the join still starts from the state.
        self._presences: dict[tuple[str, str], Presence] = {}
        self._listeners: dict[str, Presence] = _DEFAULT_LISTENERS
        self._unclaimed: list[tuple[Message, int]] = []
        self._unclaimed_bound = _unclaimed_bound()
        self._unclaimed_refused = 0

    def __repr__(self) -> str:
        return f"<trio_phoenix.Channel {self.topic!r} {self.state.value}>"

    @property
    def topic(self) -> str:
        """The channel's topic, such as ``"room:lobby"``."""
        return self._core.topic

    @property
    def params(self) -> Any:
        """The join params sent with every (re)join: as given to ``socket.channel()``, a
        value or the callable evaluated before each join."""
        if self._params_source is not None:
            return self._params_source
        return self._core.params

    @property
    def state(self) -> ChannelState:
        """Where the channel stands: `ChannelState` (``closed``, ``joining``, ``joined``, ...)."""
        return self._core.state

    @property
    def join_ref(self) -> str | None:
        """The ref of the current join; it changes on every rejoin."""
        return self._core.join_ref

    @property
    def join_response(self) -> Any:
        """The server's reply to the most recent successful join (``None`` before)."""
        return self._join_response

    # -- join / leave ----------------------------------------------------------------------

    async def join(self) -> Any:
        """Join the channel and return the server's join reply.

        Waits for the socket to connect if needed; the channel's timeout (the socket's
        ``timeout`` by default) bounds the whole wait. Params given as a callable are
        evaluated first: what it raises is raised here, and the channel stays unjoined.

        Raises:
            JoinError: the server refused the join; the channel is closed.
            JoinTimeout: no reply in time; the channel is closed.
            ChannelClosed: the channel was closed while joining.
            LocalProtocolError: the channel was joined before, or the topic is taken by
                another live channel.
            SocketClosed: the socket is closed.
        """
        check_trio_token(self._socket._trio_token, "Channel.join()")
        await trio.lowlevel.checkpoint_if_cancelled()
        waiter = Waiter()
        if self._params_source is not None:
            params = await evaluate(self._params_source)
            self._core.join(trio.current_time(), params={} if params is None else params)
        else:
            self._core.join(trio.current_time())
        self._join_waiter = waiter
        self._socket._pump()
        try:
            return await waiter.wait()
        except trio.Cancelled:
            # Leave even if the ok reply came in after the cancellation was delivered: the
            # caller never learns that the join succeeded, so the channel must not stay joined.
            self._release_reader()
            self._core.leave(trio.current_time())
            self._socket._pump()
            raise
        finally:
            self._join_waiter = None

    async def leave(self) -> None:
        """Leave the channel and wait for the server to confirm (bounded by the timeout).

        Subscriptions end (their iteration stops), buffered pushes fail with
        ``ChannelClosed``. Leaving a closed channel does nothing.
        """
        check_trio_token(self._socket._trio_token, "Channel.leave()")
        await trio.lowlevel.checkpoint_if_cancelled()
        core = self._core
        self._release_reader()
        core.leave(trio.current_time())
        self._socket._pump()
        if not core.join_called:
            # Never joined: there is nothing to leave and no end will be reported.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if core.ended:
            await trio.lowlevel.checkpoint()
        while not core.ended:
            await self._changed.wait()

    async def wait_joined(self) -> None:
        """Wait until the channel is joined (returns at once if it is).

        Raises:
            ChannelClosed: the channel is closed (or closes while waiting).
        """
        check_trio_token(self._socket._trio_token, "Channel.wait_joined()")
        await trio.lowlevel.checkpoint()
        while self._core.state is not ChannelState.JOINED:
            if self._core.ended:
                raise closed_error(self.topic, self._core.close_reason)
            await self._changed.wait()

    async def __aenter__(self) -> Channel:
        await self.join()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            # The block failed or is being cancelled: send the leave and let the socket finish
            # it (the reply or the channel's timeout ends it; closing the socket waits for it,
            # within the same close_timeout as the rest of its shutdown).
            self._release_reader()
            self._core.leave(trio.current_time())
            self._socket._pump()
            return
        # Leave within a bounded grace period.
        with trio.move_on_after(self._socket._close_timeout, shield=True):
            await self.leave()

    # -- push ------------------------------------------------------------------------------

    async def push(self, event: str, payload: Any = None) -> Any:
        """Push ``event`` with ``payload`` and return the server's ok response.

        ``payload`` is any JSON value (``{}`` when omitted) or ``bytes`` (sent as a binary
        frame; a binary reply comes back as ``bytes``). If the channel is joining or the
        socket is reconnecting, the push waits in a buffer and is sent after the (re)join.
        The channel's timeout bounds the wait; wrap the call in ``trio.move_on_after`` or
        ``trio.fail_after`` for a shorter one: cancelling a push removes it cleanly.

        Raises:
            PushError: the server replied with a non-ok status.
            PushTimeout: no reply within the timeout (also a ``trio.TooSlowError``).
            ReplyLost: the connection dropped or the server channel crashed before the reply.
            ChannelClosed: the channel was left or closed.
            EncodeError: the payload cannot be encoded (nothing was sent).
            LocalProtocolError: the channel was never joined, or the event is reserved.
            SocketClosed: the socket is closed.
        """
        check_trio_token(self._socket._trio_token, "Channel.push()")
        await trio.lowlevel.checkpoint_if_cancelled()
        core = self._core
        push = core.push(event, {} if payload is None else payload, trio.current_time())
        push.waiter = waiter = Waiter()
        self._socket._pump()
        try:
            return await waiter.wait()
        except trio.Cancelled:
            core.cancel_push(push)
            self._socket._pump()
            raise

    # -- subscriptions ---------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self,
        *events: str,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        overflow: OverflowPolicy = "raise",
    ) -> AsyncIterator[Subscription[Message]]:
        """Receive the channel's messages (broadcasts and server pushes) in a bounded buffer.

        With no ``events`` every message is delivered except replies and the protocol's own
        ``phx_error`` / ``phx_close`` (they show as ``ChannelErrored`` in the socket's lifecycle
        stream and as ``ChannelClosed``). Subscribe before joining to see the messages sent
        right after the join.
        The buffer holds at most ``max_buffer`` messages and ``max_buffer_bytes`` bytes (the
        sizes of the frames they came in; one message always fits in an empty buffer).
        When the buffer is full, ``overflow`` decides: ``"raise"`` (the reader does not wait;
        the gap is reported by ``SubscriptionOverflow`` from ``receive()``), ``"drop_oldest"``
        (the oldest buffered message is dropped) or ``"wait"`` (nothing is dropped: the socket
        stops reading the connection until the consumer has made room, which also holds up
        every other channel, replies and heartbeats of the socket; see
        :doc:`howto/slow-consumers`). ``async for`` takes buffered messages without a task
        switch (see `Subscription`). The stream ends when the channel is left, or raises
        ``ChannelClosed`` when the server closes the channel.

        Example:
            async with channel.subscribe("new_msg") as messages:
                async for message in messages:
                    print(message.payload)
        """
        check_trio_token(self._socket._trio_token, "Channel.subscribe()")
        if self._core.ended:
            raise closed_error(self.topic, self._core.close_reason)
        subscription: Subscription[Message] = Subscription(
            max_buffer, overflow, max_buffer_bytes=max_buffer_bytes, flow=self._socket._flow
        )
        entry = (frozenset(events) if events else None, subscription)
        self._subscriptions = (*self._subscriptions, entry)
        try:
            yield subscription
        finally:
            self._subscriptions = tuple(e for e in self._subscriptions if e is not entry)
            self._closed_dropped += subscription.statistics().dropped
            subscription.close()

    def presence(
        self, *, state_event: str = "presence_state", diff_event: str = "presence_diff"
    ) -> Presence:
        """The channel's live presence view (phoenix.js ``new Presence(channel)``).

        The default view (events ``presence_state`` / ``presence_diff``) tracks the channel from
        its creation. For custom event names, call this before joining so that the first
        state is not missed; later calls with the same names return the same view.
        """
        key = (state_event, diff_event)
        view = self._presences.get(key)
        if view is None:
            view = Presence(self._core, state_event, diff_event)
            self._presences[key] = view
            if self._listeners is _DEFAULT_LISTENERS:
                self._listeners = {}
            self._listeners[state_event] = view
            self._listeners[diff_event] = view
            if key == _DEFAULT_PRESENCE_KEY:
                view.malformed += self._unclaimed_refused
                for message, size in self._unclaimed:
                    view._handle(message, size)
                self._drop_unclaimed()
        return view

    def _keep_unclaimed(self, message: Message, size: int) -> None:
        if message.event == "presence_state":
            self._drop_unclaimed()  # a state replaces everything before it
        elif not self._unclaimed_bound.fits(size):
            self._unclaimed_refused += 1
            return
        self._unclaimed.append((message, size))
        self._unclaimed_bound.add(size)

    def _drop_unclaimed(self) -> None:
        self._unclaimed = []
        self._unclaimed_bound = _unclaimed_bound()

    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel's counters: pending replies, buffered pushes, messages."""
        core = self._core
        return ChannelStatistics(
            topic=core.topic,
            state=core.state,
            join_ref=core.join_ref,
            pending_replies=len(core.pending),
            buffered_pushes=len(core.buffer),
            subscriptions=len(self._subscriptions),
            messages_received=self._messages_received,
            messages_dropped=self._closed_dropped
            + sum(sub.statistics().dropped for _, sub in self._subscriptions),
        )

    def _release_reader(self) -> None:
        """The channel is being left: its full ``"wait"`` subscriptions must not keep the
        socket's reader from reading the reply."""
        for _, subscription in self._subscriptions:
            subscription.release()

    # -- the core's events, dispatched by the socket's pump (proto.ChannelOwner) ------------

    def _deliver(self, message: Message, size: int = 0) -> None:
        self._messages_received += 1
        event = message.event
        listener = self._listeners.get(event)
        if listener is not None:
            listener._handle(message, size)
        elif event in _DEFAULT_PRESENCE_EVENTS and not self._presences:
            self._keep_unclaimed(message, size)
        for events, subscription in self._subscriptions:
            if events is None or event in events:
                subscription.offer(message, size)

    def _joined(self, response: Any, rejoin: bool) -> None:
        self._join_response = response
        self._changed.fire()
        if not rejoin and self._join_waiter is not None:
            self._join_waiter.set_value(response)

    def _errored(self) -> None:
        self._changed.fire()

    def _join_failed(self, status: str, response: Any) -> None:
        if self._join_waiter is not None:
            self._join_waiter.set_error(refused_error(self.topic, status, response))

    def _params_needed(self, ref: str) -> None:
        nursery = self._socket._nursery
        assert nursery is not None  # the socket's tasks run
        nursery.start_soon(self._evaluate_params, ref)

    async def _evaluate_params(self, ref: str) -> None:
        """Evaluate the params callable for a rejoin and hand the outcome to the core: an
        exception errors the rejoin (retried with the rejoin backoff), never the socket."""
        assert self._params_source is not None
        try:
            params = await evaluate(self._params_source)
        except Exception as exc:
            logger.warning(
                "the params of %r raised; the rejoin is retried", self.topic, exc_info=exc
            )
            if self._join_waiter is not None and self._core.params_ref == ref:
                self._join_waiter.set_error(exc)  # a first join, resent after a reconnect
            self._core.params_failed(ref, exc, trio.current_time())
        else:
            self._core.params_ready(ref, {} if params is None else params, trio.current_time())
        self._socket._pump()

    def _ended(self, reason: CloseReason, payload: Any) -> None:
        if self._join_waiter is not None:
            self._join_waiter.set_error(
                join_error(self.topic, reason, payload, self._core.timeout)
            )
        if self._subscriptions:  # (no exception built for nobody)
            end = stream_error(self.topic, reason, payload)
            for _, subscription in self._subscriptions:
                subscription.end(end)
        self._drop_unclaimed()
        for view in self._presences.values():
            view._ended()
        self._changed.fire()
