"""Give public classes and functions the module path users import them from.

As trio and anyio do: ``trio_phoenix.Socket.__module__`` is ``"trio_phoenix"``, not the
private module that defines it, so reprs, tracebacks, pickles and the docs show the public
name. Each package calls ``publish`` on its namespace once its names are imported; a name
exported by several packages gets the path of the last one, which is the shortest
(``trio_phoenix`` imports ``trio_phoenix.proto`` first).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["publish"]


def publish(module: str, namespace: Mapping[str, object]) -> None:
    """Set ``__module__`` to ``module`` on the public classes and functions of ``namespace``
    (a package's ``globals()``) that trio_phoenix defines under the same name."""
    for name, obj in list(namespace.items()):
        if name.startswith("_"):
            continue
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            current = getattr(obj, "__module__", "")
            if current.startswith("trio_phoenix") and getattr(obj, "__name__", "") == name:
                obj.__module__ = module
