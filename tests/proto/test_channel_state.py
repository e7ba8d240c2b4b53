"""The channel transition table: every (state, event) pair, listed or not."""

from __future__ import annotations

import copy
import itertools
import pickle

import pytest

from trio_phoenix.proto import (
    TRANSITIONS,
    ChannelEvent,
    ChannelState,
    InvalidTransition,
    LocalProtocolError,
    ProtocolError,
    next_state,
)

S = ChannelState
E = ChannelEvent

# The table as phoenix.js's channel behaves (protocol reference §5.4), written out again here
# so that a change to TRANSITIONS has to be made twice, on purpose.
EXPECTED: dict[tuple[ChannelState, ChannelEvent], ChannelState] = {
    (S.CLOSED, E.JOIN): S.JOINING,
    (S.JOINING, E.JOIN_OK): S.JOINED,
    (S.JOINING, E.JOIN_ERROR): S.ERRORED,
    (S.JOINING, E.JOIN_TIMEOUT): S.ERRORED,
    (S.JOINING, E.ERROR): S.ERRORED,
    (S.JOINING, E.LEAVE): S.LEAVING,
    (S.JOINING, E.CLOSE): S.CLOSED,
    (S.JOINED, E.ERROR): S.ERRORED,
    (S.JOINED, E.LEAVE): S.LEAVING,
    (S.JOINED, E.CLOSE): S.CLOSED,
    (S.ERRORED, E.REJOIN): S.JOINING,
    (S.ERRORED, E.LEAVE): S.LEAVING,
    (S.ERRORED, E.CLOSE): S.CLOSED,
    (S.LEAVING, E.LEAVE_DONE): S.CLOSED,
    (S.LEAVING, E.ERROR): S.CLOSED,
    (S.LEAVING, E.CLOSE): S.CLOSED,
}

ALL_PAIRS = list(itertools.product(ChannelState, ChannelEvent))
LISTED = [pair for pair in ALL_PAIRS if pair in EXPECTED]
UNLISTED = [pair for pair in ALL_PAIRS if pair not in EXPECTED]


def test_table_is_exactly_the_expected_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED
    assert len(ALL_PAIRS) == 45
    assert len(LISTED) == 16
    assert len(UNLISTED) == 29


@pytest.mark.parametrize(("state", "event"), LISTED, ids=lambda v: v.value)
def test_listed_transition(state: ChannelState, event: ChannelEvent) -> None:
    assert next_state(state, event) is EXPECTED[state, event]


@pytest.mark.parametrize(("state", "event"), UNLISTED, ids=lambda v: v.value)
def test_unlisted_transition_raises(state: ChannelState, event: ChannelEvent) -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(state, event)
    exc = info.value
    assert exc.state == state.value
    assert exc.event == event.value
    assert str(exc) == f"channel in state {state.value!r} cannot handle {event.value!r}"
    assert repr(state.value) in str(exc)
    assert repr(event.value) in str(exc)
    # InvalidTransition is raised with "from None": no KeyError leaks into the traceback.
    assert exc.__cause__ is None
    assert exc.__suppress_context__


def test_invalid_transition_is_a_local_protocol_error() -> None:
    exc = InvalidTransition("closed", "join_ok")
    assert isinstance(exc, LocalProtocolError)
    assert isinstance(exc, ProtocolError)
    assert not isinstance(exc, ValueError)


@pytest.mark.parametrize(
    "clone", [copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))]
)
def test_invalid_transition_survives_copy_and_pickle(
    clone: object,
) -> None:
    exc = InvalidTransition("leaving", "join")
    assert callable(clone)
    other = clone(exc)
    assert isinstance(other, InvalidTransition)
    assert (other.state, other.event) == ("leaving", "join")
    assert str(other) == str(exc)


def test_closed_is_the_only_state_a_join_leaves() -> None:
    # Only a closed channel can start a join; a closed channel accepts nothing else.
    assert [e for (s, e) in TRANSITIONS if s is S.CLOSED] == [E.JOIN]
    # Every live state can be closed (phx_close or a local drop) in one step.
    for state in (S.JOINING, S.JOINED, S.ERRORED, S.LEAVING):
        assert TRANSITIONS[state, E.CLOSE] is S.CLOSED


def test_enum_values_are_phoenix_names() -> None:
    assert [s.value for s in ChannelState] == ["closed", "joining", "joined", "errored", "leaving"]
