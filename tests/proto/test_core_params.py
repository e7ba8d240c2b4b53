"""SocketCore's params on demand: the I/O layer supplies the params of every join (phoenix.js
accepts a function), answering ``JoinParamsNeeded`` before each rejoin."""

from __future__ import annotations

from typing import Any

from tests.proto.core_helpers import TOPIC, connected_core, frame, reply, sent
from trio_phoenix.proto import (
    ChannelCore,
    ChannelEnded,
    ChannelErrored,
    ChannelJoined,
    ChannelState,
    EncodeError,
    JoinParamsNeeded,
    RejoinScheduled,
    SocketCore,
)


def joined_on_demand(core: SocketCore, params: Any = None) -> ChannelCore:
    channel = core.channel(TOPIC, params_on_demand=True)
    core.join(channel, 0, params={"since": 0} if params is None else params)
    [join] = sent(core)
    assert join.payload == ({"since": 0} if params is None else params)
    core.receive(reply(join.ref, join.ref), 0)
    core.events()
    return channel


def crashed(core: SocketCore, channel: ChannelCore, now: float = 1) -> str:
    """Crash the server channel, let the rejoin come due; return its params request ref."""
    core.receive(frame(channel.join_ref, channel.join_ref, TOPIC, "phx_error", {}), now)
    core.handle_timers(now + 1)
    events = core.events()
    assert events[:2] == [
        ChannelErrored(TOPIC, {}, channel=channel),
        RejoinScheduled(TOPIC, 1.0, 1, channel=channel),
    ]
    [request] = events[2:]
    assert isinstance(request, JoinParamsNeeded)
    assert request.channel is channel
    assert core.data_to_send() == []  # nothing is sent before the params come
    assert channel.state is ChannelState.JOINING
    assert channel.join_ref is None
    return request.ref


def test_a_rejoin_waits_for_new_params() -> None:
    core = connected_core()
    channel = joined_on_demand(core)
    ref = crashed(core, channel)
    core.params_ready(channel, ref, {"since": 41}, 2.5)
    [join] = sent(core)
    assert (join.event, join.payload) == ("phx_join", {"since": 41})
    assert channel.params == {"since": 41}
    core.receive(reply(join.ref, join.ref), 3)
    assert core.events() == [ChannelJoined(TOPIC, {}, True, channel=channel)]
    core.params_ready(channel, ref, {"since": 99}, 4)  # answered twice: ignored
    assert core.data_to_send() == []


def test_channel_methods_hand_the_answers_on() -> None:
    core = connected_core()
    channel = joined_on_demand(core)
    ref = crashed(core, channel)
    channel.params_ready(ref, {"since": 7}, 2)
    assert [m.payload for m in sent(core)] == [{"since": 7}]
    core.receive(reply(channel.join_ref, channel.join_ref), 2)
    core.events()
    ref = crashed(core, channel, 3)
    error = RuntimeError("down")
    channel.params_failed(ref, error, 4)
    payload = {"source": "client", "reason": "params_error", "error": error}
    assert core.events()[0] == ChannelErrored(TOPIC, payload, channel=channel)


def test_a_failed_rejoin_params_errors_and_retries_with_backoff() -> None:
    core = connected_core()
    channel = joined_on_demand(core)
    ref = crashed(core, channel)
    error = RuntimeError("database down")
    core.params_failed(channel, ref, error, 2)
    assert core.events() == [
        ChannelErrored(
            TOPIC, {"source": "client", "reason": "params_error", "error": error}, channel=channel
        ),
        RejoinScheduled(TOPIC, 2.0, 2, channel=channel),
    ]
    assert channel.state is ChannelState.ERRORED
    assert core.next_deadline() == 4
    core.handle_timers(4)
    [request] = core.events()
    assert isinstance(request, JoinParamsNeeded)
    core.params_failed(channel, ref, error, 4)  # a stale answer: ignored
    assert core.events() == []
    core.params_ready(channel, request.ref, {"since": 1}, 4)
    assert [m.payload for m in sent(core)] == [{"since": 1}]


def test_params_that_cannot_be_encoded_fail_the_rejoin() -> None:
    core = connected_core()
    channel = joined_on_demand(core)
    ref = crashed(core, channel)
    core.params_ready(channel, ref, {"bad": object()}, 2)
    [errored, scheduled] = core.events()
    assert isinstance(errored, ChannelErrored)
    assert errored.payload["reason"] == "params_error"
    assert isinstance(errored.payload["error"], EncodeError)
    assert isinstance(scheduled, RejoinScheduled)
    assert core.data_to_send() == []


def test_the_rejoin_timeout_runs_while_the_params_are_evaluated() -> None:
    core = connected_core()
    channel = joined_on_demand(core)
    ref = crashed(core, channel)  # the rejoin came due at 2
    core.handle_timers(12)
    assert core.events() == [
        ChannelErrored(TOPIC, {"source": "client", "reason": "join_timeout"}, channel=channel),
        RejoinScheduled(TOPIC, 2.0, 2, channel=channel),
    ]
    assert core.data_to_send() == []  # no leave: no join was sent
    core.params_ready(channel, ref, {"since": 3}, 13)  # too late: ignored
    assert core.data_to_send() == []


def test_a_lost_connection_forgets_the_request_and_asks_again_on_open() -> None:
    core = connected_core()
    channel = joined_on_demand(core)
    ref = crashed(core, channel)
    core.connection_lost(3, 1006)
    core.events()
    core.params_ready(channel, ref, {"since": 5}, 3)
    assert core.data_to_send() == []
    core.connection_started(4)
    core.connection_opened(4)
    [request] = core.events()
    assert isinstance(request, JoinParamsNeeded)
    assert request.ref != ref


def test_the_first_join_uses_the_given_params_and_a_resend_asks_again() -> None:
    core = SocketCore(heartbeat_interval=None)
    channel = core.channel(TOPIC, params_on_demand=True)
    core.join(channel, 0, params={"since": 0})
    core.connection_started(0)
    core.connection_opened(0)
    assert [m.payload for m in sent(core)] == [{"since": 0}]
    core.connection_lost(1, 1006)
    core.events()
    core.connection_started(2)
    core.connection_opened(2)
    [request] = core.events()
    assert isinstance(request, JoinParamsNeeded)
    # Failing now ends the channel: a first join that fails closes it.
    error = RuntimeError("no")
    core.params_failed(channel, request.ref, error, 3)
    payload = {"source": "client", "reason": "params_error", "error": error}
    assert core.events() == [ChannelEnded(TOPIC, "join_failed", payload, channel=channel)]


def test_leaving_while_the_params_are_evaluated_sends_nothing() -> None:
    core = connected_core()
    channel = joined_on_demand(core)
    ref = crashed(core, channel)
    assert core.leave(channel, 3) is None
    assert core.data_to_send() == []
    assert channel.state is ChannelState.CLOSED
    core.params_ready(channel, ref, {"since": 5}, 3)
    assert core.data_to_send() == []
