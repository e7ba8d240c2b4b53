"""Unwrapping ExceptionGroups at the edge of our context managers.

Trio's nurseries wrap every exception in an ExceptionGroup. Our ``open_*`` context managers
own a nursery only to host background tasks, so a user who raises inside the block should get
that very exception back, as from trio-websocket's ``open_websocket``: they all open that
nursery with ``owning_nursery``. One exception outranks
the user's: a ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
``SystemExit``) from any task is raised as itself, never hidden behind the ``SocketClosed`` it
caused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import NoReturn

import trio

from ._exceptions import SocketClosed

__all__ = ["owning_nursery", "raise_preferred"]


@asynccontextmanager
async def owning_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for the background tasks of an ``open_*`` block.

    When the block ends its tasks are cancelled; an exception from the block comes out as
    itself, an internal one as itself too when it is the only one (see ``raise_preferred``).
    """
    user_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                user_error = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_preferred(group, user_error)


def raise_preferred(
    group: BaseExceptionGroup[BaseException], user_error: BaseException | None
) -> NoReturn:
    """Re-raise the user's exception (or the only real one) instead of ``group``."""
    leaves = list(_leaves(group))
    real = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    interrupts = [exc for exc in real if not isinstance(exc, Exception)]
    if interrupts and interrupts != [user_error]:
        # KeyboardInterrupt, SystemExit, ...: never demoted to the context of an ordinary
        # error (which ``except Exception`` would swallow); what it interrupted goes there.
        interrupt = interrupts[0]
        others = [exc for exc in real if exc is not interrupt]
        if others and interrupt.__context__ is None:
            interrupt.__context__ = BaseExceptionGroup("interrupted", others)
        _reraise(interrupt)
    if isinstance(user_error, SocketClosed) and any(e is user_error.__cause__ for e in real):
        # The caller's call failed because the socket failed: the failure is the news.
        user_error = user_error.__cause__
    if user_error is not None and (not real or real == [user_error]):
        _reraise(user_error)
    if len(real) == 1:
        _reraise(real[0])
    if not real:
        _reraise(leaves[0])
    if user_error is not None and any(exc is user_error for exc in real):
        internal = [exc for exc in real if exc is not user_error]
        user_error.__context__ = BaseExceptionGroup("internal errors of trio_phoenix", internal)
        _reraise(user_error)
    raise group


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _reraise(exc: BaseException) -> NoReturn:
    # Raise without chaining the ExceptionGroup as __context__ (as trio-websocket does).
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context
