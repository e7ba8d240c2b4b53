"""Build, start and stop the real Phoenix app of ``tests/phoenix_app`` (Phoenix 1.7.24, Bandit).

As a script (``python tests/scenarios/real_phoenix.py COMMAND``):

``prepare``  make the app runnable here: with ``CI`` set, install Debian's Elixir and Erlang
             packages if ``mix`` is missing (as root); unpack the dependency sources from
             ``../shared/phoenix/`` when Hex cannot be used; compile. Without Elixir and
             outside CI it prints one line saying how to enable the suite, and exits 0.
``run``      start the app on a free loopback port, print its socket URL, serve until Ctrl-C.

The pytest fixture ``phoenix_app`` (``tests/scenarios/conftest.py``) uses `start_app`.

Dependencies: ``PHOENIX_DEPS`` names an unpacked copy of the dependency sources (one folder per
application); else ``tests/phoenix_app/_deps-src`` if a previous ``prepare`` unpacked it there;
else the tarball in ``../shared/phoenix/`` is unpacked there; else Mix fetches from Hex.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

ROOT: Final = Path(__file__).resolve().parents[2]
APP_DIR: Final = ROOT / "tests" / "phoenix_app"
UNPACKED: Final = APP_DIR / "_deps-src"
TARBALL_PATH: Final = Path("shared", "phoenix", "deps-src.tar.gz")
READY: Final = "PHOENIX_APP_READY port="
#: Debian's packages for Elixir 1.14 on Erlang/OTP 25 (what Phoenix 1.7.24 builds on).
PACKAGES: Final = (
    *("elixir", "erlang-dev", "erlang-src", "erlang-crypto", "erlang-ssl", "erlang-public-key"),
    *("erlang-asn1", "erlang-inets", "erlang-os-mon", "erlang-runtime-tools"),
    *("erlang-syntax-tools", "erlang-parsetools", "erlang-tools", "erlang-xmerl", "erlang-eunit"),
)
#: Printed when the suite cannot run here.
HOW_TO_ENABLE: Final = (
    "real-Phoenix scenarios skipped: Elixir is not installed "
    f"(apt-get install {' '.join(PACKAGES[:2])} ..., or run `make check` with CI=true as root)"
)
#: Printed when Hex cannot be reached and no dependency sources are at hand.
NO_SOURCES: Final = (
    "real-Phoenix scenarios skipped: no dependency sources (set PHOENIX_DEPS, or keep "
    "shared/phoenix/ beside the clone) and Hex failed"
)
BUILD_TIMEOUT: Final = 600.0
START_TIMEOUT: Final = 60.0


class PhoenixAppError(RuntimeError):
    """The app could not be built or started; the message holds Mix's output."""


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def have_elixir() -> bool:
    """Whether ``mix`` and ``elixir`` are on the PATH."""
    return shutil.which("mix") is not None and shutil.which("elixir") is not None


def _tarball() -> Path | None:
    """The shared dependency tarball: beside this clone, or beside the local repository it was
    cloned from (a fresh clone in a scratch folder, as the README's set-up check makes)."""
    places = [ROOT.parent]
    origin = subprocess.run(
        ["git", "-C", str(ROOT), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        places.append(Path(origin).resolve().parent)
    return next((p / TARBALL_PATH for p in places if (p / TARBALL_PATH).is_file()), None)


def deps_dir() -> Path | None:
    """Where the dependency sources are, unpacking the shared tarball if needed; ``None``: Hex."""
    given = os.environ.get("PHOENIX_DEPS")
    if given:
        return Path(given).resolve()
    if (UNPACKED / "phoenix" / "mix.exs").is_file():
        return UNPACKED
    tarball = _tarball()
    if tarball is not None:
        scratch = UNPACKED.with_name(UNPACKED.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        with tarfile.open(tarball) as archive:
            archive.extractall(scratch, filter="data")
        shutil.rmtree(UNPACKED, ignore_errors=True)
        scratch.rename(UNPACKED)
        return UNPACKED
    return None


def _env() -> dict[str, str]:
    env = dict(os.environ, MIX_ENV="prod", PORT="0")
    deps = deps_dir()
    if deps is not None:
        env["PHOENIX_DEPS"] = str(deps)
    return env


def _mix(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["mix", *args],
        cwd=APP_DIR,
        env=env,
        stdin=subprocess.DEVNULL,  # never wait at Mix's "Shall I install Hex?" prompt
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise PhoenixAppError(f"mix {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def build() -> None:
    """Compile the app (fetching from Hex first when no dependency sources are at hand)."""
    env = _env()
    if "PHOENIX_DEPS" not in env:
        _mix("deps.get", env=env)
    _mix("compile", env=env)


def install_toolchain() -> None:
    """Install Debian's Elixir and Erlang packages (needs root and the Debian mirror)."""
    apt = ["apt-get", "-q", "-y", "--no-install-recommends"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "-q", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*apt, "install", *PACKAGES], check=True, env=env, stdout=subprocess.DEVNULL)


def prepare() -> str | None:
    """Make the app runnable; outside CI, return why it cannot run here instead of raising.

    Raises:
        PhoenixAppError: the build failed (outside CI: only when Mix had the sources).
    """
    if not have_elixir():
        if not in_ci():
            return HOW_TO_ENABLE
        print("installing Elixir and Erlang from Debian for the real-Phoenix scenarios")
        install_toolchain()
    if deps_dir() is None and not in_ci():
        try:
            build()
        except PhoenixAppError as exc:
            return f"{NO_SOURCES} ({str(exc).splitlines()[1]})"
        return None
    build()
    return None


@contextmanager
def start_app() -> Iterator[str]:
    """Run the (built) app on a free loopback port; yields the socket URL ``ws://.../socket``.

    The server stops when the block ends.
    """
    process = subprocess.Popen(
        ["mix", "run", "--no-compile", "--no-halt"],
        cwd=APP_DIR,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def watch(stream: IO[str]) -> None:
        for line in stream:
            output.append(line)
            if line.startswith(READY) and not port:
                port.append(int(line[len(READY) :]))
                found.set()
        found.set()

    reader = threading.Thread(target=watch, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        if not found.wait(START_TIMEOUT) or not port:
            raise PhoenixAppError("the Phoenix app did not start:\n" + "".join(output))
        yield f"ws://127.0.0.1:{port[0]}/socket"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
        process.stdout.close()


def main(argv: list[str]) -> int:
    """The script's entry point."""
    command = argv[1] if len(argv) > 1 else "prepare"
    if command == "prepare":
        why_not = prepare()
        if why_not:
            print(why_not)
        return 0
    if command == "run":
        why_not = prepare()
        if why_not:
            print(why_not, file=sys.stderr)
            return 1
        with start_app() as url:
            print(url, flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
        return 0
    print(f"usage: {argv[0]} prepare|run", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
