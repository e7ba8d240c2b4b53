"""The per-channel state machine, as an explicit transition table.

phoenix.js keeps a channel in one of five states. Every change of state in the core goes through
``next_state``, so a transition the table does not list is a bug or a misuse, reported as
``InvalidTransition`` naming both the state and the event. Remote input never reaches
``next_state`` unchecked: the router decides first whether a frame applies to the channel.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from ._errors import InvalidTransition

__all__ = ["TRANSITIONS", "ChannelEvent", "ChannelState", "next_state"]


class ChannelState(enum.Enum):
    """Where a channel is in its life (the names phoenix.js uses)."""

    CLOSED = "closed"
    JOINING = "joining"
    JOINED = "joined"
    ERRORED = "errored"
    LEAVING = "leaving"


class ChannelEvent(enum.Enum):
    """What can happen to a channel."""

    JOIN = "join"  # the application asks to join
    JOIN_OK = "join_ok"  # the server accepted the join
    JOIN_ERROR = "join_error"  # the server refused the join
    JOIN_TIMEOUT = "join_timeout"  # no join reply in time
    ERROR = "error"  # phx_error from the server, or the transport went away
    REJOIN = "rejoin"  # the rejoin timer fired or the socket reopened
    LEAVE = "leave"  # the application asks to leave
    LEAVE_DONE = "leave_done"  # the leave was answered, timed out or needs no answer
    CLOSE = "close"  # phx_close from the server, or the channel is dropped locally


_S = ChannelState
_E = ChannelEvent

TRANSITIONS: Final[Mapping[tuple[ChannelState, ChannelEvent], ChannelState]] = {
    (_S.CLOSED, _E.JOIN): _S.JOINING,
    (_S.JOINING, _E.JOIN_OK): _S.JOINED,
    (_S.JOINING, _E.JOIN_ERROR): _S.ERRORED,
    (_S.JOINING, _E.JOIN_TIMEOUT): _S.ERRORED,
    (_S.JOINING, _E.ERROR): _S.ERRORED,
    (_S.JOINING, _E.LEAVE): _S.LEAVING,
    (_S.JOINING, _E.CLOSE): _S.CLOSED,
    (_S.JOINED, _E.ERROR): _S.ERRORED,
    (_S.JOINED, _E.LEAVE): _S.LEAVING,
    (_S.JOINED, _E.CLOSE): _S.CLOSED,
    (_S.ERRORED, _E.REJOIN): _S.JOINING,
    (_S.ERRORED, _E.LEAVE): _S.LEAVING,
    (_S.ERRORED, _E.CLOSE): _S.CLOSED,
    (_S.LEAVING, _E.LEAVE_DONE): _S.CLOSED,
    (_S.LEAVING, _E.ERROR): _S.CLOSED,
    (_S.LEAVING, _E.CLOSE): _S.CLOSED,
}


def next_state(state: ChannelState, event: ChannelEvent) -> ChannelState:
    """Return the state ``event`` leads to from ``state``.

    Raises:
        InvalidTransition: the table has no such transition.
    """
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise InvalidTransition(state.value, event.value) from None
