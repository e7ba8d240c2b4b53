"""Tiny synchronization helpers that cost nothing until a task waits on them.

A socket with thousands of channels holds many "someone might wait for this" points; a
``trio.Event`` for each one is most of a socket's memory, so the event is only created when a
task actually waits.
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["Pulse", "Waiter"]


class Waiter:
    """One outcome (a value or an exception) that one task can wait for, set at most once.

    The waiting task is rescheduled directly when the outcome is set (no ``trio.Event``)."""

    __slots__ = ("_done", "_error", "_task", "_value")

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def set_value(self, value: Any) -> None:
        if not self._done:
            self._done = True
            self._value = value
            self._wake()

    def set_error(self, error: BaseException) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    @property
    def is_set(self) -> bool:
        return self._done

    def _abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def wait(self) -> Any:
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            assert self._task is None, "a Waiter has one waiting task"
            self._task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        if self._error is not None:
            raise self._error
        return self._value


class Pulse:
    """Wakes the tasks waiting at the moment it fires (they re-check their condition)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: trio.Event | None = None

    def fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()
