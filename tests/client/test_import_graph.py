"""The import graph of ``trio_phoenix`` (outside ``testing/``) has no cycles.

Every import counts, also those under ``if TYPE_CHECKING:``: a cycle there is still two
modules that cannot be read, or changed, one without the other. The Trio layer imports one
way (``_socket`` -> ``_channel`` -> ``_presence`` -> ``_outcomes`` -> ``_exceptions``), and
so does the core (``_core`` -> ``_channel_rules`` -> ``_channel_core`` -> ``_timers``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "trio_phoenix"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts]
    modules = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                if node.level:
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # "from . import _lifecycle" imports a module, "from .proto import X" a name.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle is not None:
            return cycle
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_knows_the_trio_layer() -> None:
    graph = _import_graph()
    assert "trio_phoenix._channel" in graph["trio_phoenix._socket"]
    assert "trio_phoenix.proto" in graph["trio_phoenix._channel"]
    assert "trio_phoenix.proto._channel_core" in graph["trio_phoenix.proto._core"]


def test_trio_phoenix_has_no_import_cycles_outside_testing() -> None:
    cycle = _find_cycle(_import_graph())
    assert cycle is None, " -> ".join(cycle or [])
