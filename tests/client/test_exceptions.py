"""The public exceptions: they copy and pickle, and two at once do not hide each other.

Every exception class that ``trio_phoenix`` exports is listed in ``SAMPLES`` (a new one fails
``test_every_public_exception_has_a_sample`` until it is added), built with arguments of every
kind it takes, and must survive ``copy.copy``, ``copy.deepcopy`` and a pickle round trip with
its type, message, arguments and attributes intact.

When a user's block raises while one of our background tasks fails, the user's exception is
what propagates (it is what their ``except`` clauses expect) and ours is kept as its
``__context__``, never lost.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import trio

import trio_phoenix
from trio_phoenix import (
    ChannelClosed,
    ConnectError,
    ConnectTimeout,
    EncodeError,
    InvalidHeader,
    InvalidParams,
    InvalidTransition,
    InvalidURL,
    JoinError,
    JoinTimeout,
    LocalProtocolError,
    PhoenixError,
    PhoenixTimeout,
    ProtocolError,
    PushError,
    PushTimeout,
    RemoteProtocolError,
    ReplyLost,
    SocketClosed,
    SubscriptionOverflow,
)
from trio_phoenix._groups import owning_nursery, raise_preferred
from trio_phoenix.proto import CloseReason

SAMPLES: list[BaseException] = [
    PhoenixError("base"),
    ProtocolError("protocol"),
    LocalProtocolError("tried to push 'x' before joining"),
    RemoteProtocolError("malformed frame"),
    EncodeError("not JSON-serializable"),
    InvalidURL("bad scheme"),
    InvalidHeader("bad header 'x-a'"),
    InvalidParams("params must be a mapping"),
    InvalidTransition("closed", "leave_done"),
    ChannelClosed("room:1", CloseReason.SERVER_CLOSED, {"reason": "bye"}),
    ChannelClosed("room:1", "left"),
    SocketClosed("the socket is closed"),
    ConnectError("rejected", 403, b"forbidden"),
    ConnectError("refused"),
    ConnectTimeout("no connection", ConnectError("refused")),
    JoinError("room:1", {"reason": "unauthorized"}, "error"),
    PushError("new_msg", "error", {"reason": "nope"}),
    ReplyLost("new_msg", {"source": "transport"}),
    PhoenixTimeout("slow"),
    JoinTimeout("no reply to the join"),
    PushTimeout("no reply to 'x'"),
    SubscriptionOverflow(3),
]


def _public_exceptions() -> set[type[BaseException]]:
    return {
        obj
        for name in dir(trio_phoenix)
        if isinstance(obj := getattr(trio_phoenix, name), type) and issubclass(obj, BaseException)
    }


def _state(exc: BaseException) -> tuple[Any, ...]:
    attributes = {k: v for k, v in vars(exc).items() if not k.startswith("__")}
    return (type(exc), str(exc), repr(exc), _comparable(exc.args), _comparable(attributes))


def _comparable(value: Any) -> Any:
    if isinstance(value, BaseException):
        return _state(value)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_comparable(v) for v in value)
    return value


def test_every_public_exception_has_a_sample() -> None:
    assert _public_exceptions() == {type(sample) for sample in SAMPLES}


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda exc: type(exc).__name__)
def test_public_exceptions_copy_and_pickle(exc: BaseException) -> None:
    for clone in (copy.copy(exc), copy.deepcopy(exc), pickle.loads(pickle.dumps(exc))):
        assert clone is not exc
        assert _state(clone) == _state(exc)


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda exc: type(exc).__name__)
def test_public_exceptions_pickle_by_their_public_path(exc: BaseException) -> None:
    cls = type(exc)
    assert cls.__module__ == "trio_phoenix"
    assert getattr(trio_phoenix, cls.__qualname__) is cls
    assert b"trio_phoenix._" not in pickle.dumps(exc, protocol=0)


# -- a user exception and an internal error at once -------------------------------------------


def test_the_users_exception_wins_and_keeps_the_internal_one() -> None:
    user = ValueError("the user's")
    internal = RuntimeError("ours")
    group = BaseExceptionGroup("nursery", [user, BaseExceptionGroup("inner", [internal])])
    with pytest.raises(ValueError, match="the user's") as raised:
        raise_preferred(group, user)
    assert raised.value is user
    context = raised.value.__context__
    assert isinstance(context, BaseExceptionGroup)
    assert context.exceptions == (internal,)
    assert "internal errors of trio_phoenix" in str(context)


def test_the_users_exception_alone_comes_out_as_itself() -> None:
    user = ValueError("the user's")
    group = BaseExceptionGroup("nursery", [user, trio.Cancelled._create()])
    with pytest.raises(ValueError, match="the user's") as raised:
        raise_preferred(group, user)
    assert raised.value.__context__ is None


async def test_owning_nursery_raises_the_users_exception_over_a_failing_task() -> None:
    started = trio.Event()

    async def failing_task() -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            raise RuntimeError("a background task broke while being cancelled")

    async def users_block() -> None:
        async with owning_nursery() as nursery:
            nursery.start_soon(failing_task)
            await started.wait()
            raise KeyError("the user's")

    with pytest.raises(KeyError) as raised:
        await users_block()
    context = raised.value.__context__
    assert isinstance(context, BaseExceptionGroup)
    assert [str(exc) for exc in context.exceptions] == [
        "a background task broke while being cancelled"
    ]
