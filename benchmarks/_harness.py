"""Process plumbing: the server subprocess, per-variant client subprocesses, RSS and CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

_ROOT: Final = Path(__file__).resolve().parent.parent
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_ROOT) if not path else f"{_ROOT}{os.pathsep}{path}"
    return env


@contextmanager
def server_process() -> Iterator[int]:
    """Run ``benchmarks._server`` in its own process for the block; yield its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._server"],
        cwd=_ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start (said {line!r})")
        yield int(line.split()[1])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_json(module: str, *args: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run ``python -m module *args`` in a fresh process; return the JSON of its last line."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=_ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def rss_bytes() -> int:
    """The resident set size of this process now."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def cpu_seconds() -> float:
    """User + system CPU time of this process."""
    return time.process_time()
