"""Packaging that works from every artifact: the sdist carries its tests, the wheel installs.

Builds the sdist and the wheel with ``python -m build``, checks that the sdist holds what its
tests need, then installs the wheel with its ``pytest`` extra into a new virtual environment
and, from there, runs ``trio-phoenix demo`` and the fixture-based example test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

from tests.helpers import ROOT

LIMIT = 240  # seconds for each step (pip may download trio's dependencies)


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_", "COVERAGE"))}
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from a copy of the tracked files."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


def test_sdist_holds_what_its_tests_need(dist: Path) -> None:
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    for needed in (
        "tests/conftest.py",
        "tests/js/package.json",
        "tests/js/package-lock.json",
        "tests/scenarios/conftest.py",
        "tests/phoenix_app/mix.exs",
        "examples/test_my_app.py",
        "Makefile",
        "trio_phoenix/py.typed",
    ):
        assert needed in names, needed
    assert not [name for name in names if "node_modules" in name or "__pycache__" in name]


def test_wheel_installs_and_runs(dist: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("*.whl")
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[pytest]")
    demo = _run(env_dir / "bin" / "trio-phoenix", "demo", "--pace", "0", cwd=tmp_path)
    assert "# done: that was trio_phoenix on an in-process server" in demo.stdout
    # The fixture-based example, run from the installed wheel (the plugin's entry point).
    shutil.copy(ROOT / "examples" / "test_my_app.py", tmp_path / "test_my_app.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    tests = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert " passed" in tests.stdout
    assert " failed" not in tests.stdout


def test_fixtures_say_what_is_missing_without_pytest_trio(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_it.py").write_text(
        "async def test_it(phoenix_server):\n    pass\n\n"
        "def test_sync(phoenix_server_factory):\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:trio", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    for fixture in ("phoenix_server", "phoenix_server_factory"):
        assert f"{fixture} is an async fixture and needs pytest-trio" in done.stdout
    assert "pip install 'trio-phoenix[pytest]'" in done.stdout
