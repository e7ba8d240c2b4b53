"""The documentation site: every public name documented, every code sample executed.

The site itself is built with warnings as errors by ``make docs`` (part of ``make check``).
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import trio_phoenix
import trio_phoenix.testing
from tests.helpers import ROOT

DOCS = ROOT / "docs"
SNIPPETS = sorted((DOCS / "snippets").glob("*.py"))
LIMIT = 60


def public_names(module: types.ModuleType) -> list[str]:
    return sorted(
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    )


def documented_names() -> set[str]:
    """``module.Name`` for every object directive of the reference page."""
    names: set[str] = set()
    module = ""
    for line in (DOCS / "reference.rst").read_text().splitlines():
        if match := re.match(r"\.\. (?:py:)?module:: (\S+)", line):
            module = match.group(1)
        elif match := re.match(r"\.\. (?:auto)?(?:class|function|exception|data):: (\w+)", line):
            names.add(f"{module}.{match.group(1)}")
    return names


@pytest.mark.parametrize("module", [trio_phoenix, trio_phoenix.testing], ids=lambda m: m.__name__)
def test_every_public_name_is_in_the_reference(module: types.ModuleType) -> None:
    missing = [
        n for n in public_names(module) if f"{module.__name__}.{n}" not in documented_names()
    ]
    assert missing == []


@pytest.mark.parametrize("module", [trio_phoenix, trio_phoenix.testing], ids=lambda m: m.__name__)
def test_every_public_class_function_and_member_has_a_docstring(module: types.ModuleType) -> None:
    undocumented: list[str] = []
    for name in public_names(module):
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue  # constants and type aliases are described in the reference page
        if not inspect.getdoc(value):
            undocumented.append(name)
        if not inspect.isclass(value):
            continue
        for member, attribute in vars(value).items():
            if member.startswith("_") or not (
                inspect.isfunction(attribute) or isinstance(attribute, property)
            ):
                continue
            if not inspect.getdoc(getattr(value, member, attribute)) and not attribute.__doc__:
                undocumented.append(f"{name}.{member}")
    assert undocumented == []


def test_python_samples_are_included_files() -> None:
    """Python in the docs comes from ``docs/snippets`` (which the tests run), never inline."""
    for page in DOCS.rglob("*.rst"):
        assert ".. code-block:: python" not in page.read_text(), page


@pytest.mark.parametrize(
    "snippet", [s for s in SNIPPETS if not s.name.startswith("test_")], ids=lambda p: p.name
)
def test_snippet_runs(snippet: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(snippet)], capture_output=True, text=True, timeout=LIMIT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout


def test_testing_howto_passes() -> None:
    snippet = DOCS / "snippets" / "test_howto_testing.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(snippet)],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    assert "3 passed" in done.stdout
