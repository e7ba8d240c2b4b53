"""What the core's outcomes mean to a caller: the one map from core reasons to exceptions.

The sans-IO core reports how a push, a join or a channel ended as typed events
(``PushReplied``, ``PushTimedOut``, ``PushFailed`` with a ``PushFailure``, ``ChannelEnded``
with a ``CloseReason``). This module is the only place that turns them into return values
and the public exceptions, so a reason means the same thing wherever it surfaces: a push, a
join, a subscription or a presence view.
"""

from __future__ import annotations

import math
from typing import Any, assert_never

from ._exceptions import (
    ChannelClosed,
    JoinError,
    JoinTimeout,
    PushError,
    PushTimeout,
    ReplyLost,
    SocketClosed,
)
from .proto import CloseReason, PushFailed, PushFailure, PushReplied, PushTimedOut

__all__ = ["closed_error", "join_error", "refused_error", "settle_push", "stream_error"]


def settle_push(event: PushReplied | PushTimedOut | PushFailed) -> None:
    """Hand the outcome of a user push to the task waiting for it (if it still waits)."""
    push = event.push
    waiter = push.waiter
    if waiter is None:
        return
    match event:
        case PushReplied(status="ok"):
            waiter.set_value(event.response)
        case PushReplied():
            waiter.set_error(PushError(push.event, event.status, event.response))
        case PushTimedOut():
            timeout = push.channel.timeout
            within = "" if timeout is None or math.isinf(timeout) else f" within {timeout} s"
            topic = push.channel.topic
            waiter.set_error(PushTimeout(f"no reply to {push.event!r} on {topic!r}{within}"))
        case PushFailed():
            waiter.set_error(_failure_error(event))


def _failure_error(event: PushFailed) -> BaseException:
    detail = event.detail
    match event.reason:
        case PushFailure.CHANNEL_CLOSED:
            return ChannelClosed(event.push.channel.topic, str(detail or "closed"))
        case PushFailure.REPLY_LOST:
            return ReplyLost(event.push.event, detail)
        case PushFailure.SOCKET_CLOSED:
            return SocketClosed("the socket was closed before the reply arrived")
        case PushFailure.ENCODE_ERROR:
            assert isinstance(detail, BaseException)
            return detail
        case _ as unreachable:  # pragma: no cover
            assert_never(unreachable)


def join_error(
    topic: str, reason: CloseReason, payload: Any, timeout: float | None
) -> BaseException:
    """Why a join did not succeed, when its channel ended while joining."""
    if reason is CloseReason.JOIN_TIMEOUT:
        return JoinTimeout(f"no reply to the join of {topic!r} within {timeout} s")
    if reason is CloseReason.SOCKET_CLOSED:
        return SocketClosed("the socket was closed while joining")
    return ChannelClosed(topic, reason, payload)


def refused_error(topic: str, status: str, response: Any) -> JoinError:
    """The server refused a join."""
    return JoinError(topic, response, status)


def stream_error(topic: str, reason: CloseReason, payload: Any) -> ChannelClosed | None:
    """How a subscription ends with its channel: quietly when the application left or closed
    the socket, with ``ChannelClosed`` when the server (or a failed join) closed it."""
    if reason is CloseReason.LEFT or reason is CloseReason.SOCKET_CLOSED:
        return None
    return ChannelClosed(topic, reason, payload)


def closed_error(topic: str, reason: CloseReason | None) -> ChannelClosed:
    """``ChannelClosed`` for a call made on (or waiting on) a channel that has ended."""
    return ChannelClosed(topic, reason or "closed")
