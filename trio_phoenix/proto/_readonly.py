"""Read-only JSON values: what the presence view hands out instead of deep copies.

A presence view at lobby scale holds tens of thousands of entries. Handing out deep copies on
every read costs time in proportion to the whole view; handing out the entries themselves
costs nothing, provided nobody can change them. ``ReadOnlyDict`` and ``ReadOnlyList`` are
``dict`` and ``list`` subclasses (so they compare equal to plain values, ``json.dumps`` them
and pass ``isinstance`` checks) whose every mutating method raises ``TypeError``.
:func:`freeze` turns a JSON value into one that is read-only all the way down.

To modify a value, copy it: ``copy.deepcopy()`` returns plain dicts and lists all the way
down, ``copy.copy()``, ``dict(value)``, ``list(value)`` and slices return plain shallow
copies. Pickling keeps the values read-only.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["ReadOnlyDict", "ReadOnlyList", "freeze", "thaw"]


def _refuse(value: object) -> NoReturn:
    raise TypeError(
        f"{type(value).__name__} is read-only: presence values are shared, "
        "copy them (copy.deepcopy) to modify"
    )


class ReadOnlyDict(dict[str, Any]):
    """A ``dict`` that refuses every change.

    It is built like a dict (``ReadOnlyDict(mapping)``); only the outer level is read-only,
    so build it from values that are read-only too (:func:`freeze` does).
    """

    __slots__ = ()

    def __setitem__(self, key: str, value: Any) -> NoReturn:
        _refuse(self)

    def __delitem__(self, key: str) -> NoReturn:
        _refuse(self)

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _refuse(self)

    def clear(self) -> NoReturn:
        _refuse(self)

    def pop(self, *args: Any) -> NoReturn:
        _refuse(self)

    def popitem(self) -> NoReturn:
        _refuse(self)

    def setdefault(self, *args: Any) -> NoReturn:
        _refuse(self)

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: thaw(value) for key, value in self.items()}

    def __reduce__(self) -> tuple[type[ReadOnlyDict], tuple[dict[str, Any]]]:
        return ReadOnlyDict, (dict(self),)


class ReadOnlyList(list[Any]):
    """A ``list`` that refuses every change (see :class:`ReadOnlyDict`)."""

    __slots__ = ()

    def __setitem__(self, index: Any, value: Any) -> NoReturn:
        _refuse(self)

    def __delitem__(self, index: Any) -> NoReturn:
        _refuse(self)

    def __iadd__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _refuse(self)

    def __imul__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _refuse(self)

    def append(self, value: Any) -> NoReturn:
        _refuse(self)

    def extend(self, values: Any) -> NoReturn:
        _refuse(self)

    def insert(self, index: Any, value: Any) -> NoReturn:
        _refuse(self)

    def pop(self, index: Any = -1) -> NoReturn:
        _refuse(self)

    def remove(self, value: Any) -> NoReturn:
        _refuse(self)

    def clear(self) -> NoReturn:
        _refuse(self)

    def sort(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self)

    def reverse(self) -> NoReturn:
        _refuse(self)

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [thaw(value) for value in self]

    def __reduce__(self) -> tuple[type[ReadOnlyList], tuple[list[Any]]]:
        return ReadOnlyList, (list(self),)


def freeze(value: Any) -> Any:
    """A read-only deep copy of a JSON value: dicts and lists (and their subclasses) become
    ``ReadOnlyDict`` / ``ReadOnlyList``; anything else is shared (JSON scalars are
    immutable)."""
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, (dict, list)):
                return ReadOnlyDict({key: freeze(item) for key, item in value.items()})
        return ReadOnlyDict(value)  # flat (most metas are): one C-level copy
    if isinstance(value, list):
        return ReadOnlyList([freeze(item) for item in value])
    return value


def thaw(value: Any) -> Any:
    """A plain, modifiable deep copy of a JSON value (the inverse of :func:`freeze`)."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [thaw(item) for item in value]
    return value
