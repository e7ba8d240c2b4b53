"""The sans-IO boundary: ``trio_phoenix.proto`` imports without Trio, sockets or clocks."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

PACKAGE = ROOT / "trio_phoenix"
PROTO = PACKAGE / "proto"

# Run in a fresh interpreter: block the I/O libraries, import the core, use it a little, and
# report which modules the import brought in. With ``stub_parent``, ``trio_phoenix`` is a bare
# namespace for its directory, so only ``trio_phoenix/proto`` itself is executed.
_SCRIPT = r"""
import json, sys, types
before = set(sys.modules)
for name in ("trio", "trio_websocket", "wsproto", "h11", "anyio", "asyncio"):
    sys.modules[name] = None  # "import trio" now raises ImportError
if STUB_PARENT:
    parent = types.ModuleType("trio_phoenix")
    parent.__path__ = [PACKAGE]
    sys.modules["trio_phoenix"] = parent

import trio_phoenix.proto as proto

core = proto.SocketCore()
core.connection_started(0.0)
core.connection_opened(0.0)
channel = core.channel("room:1")
core.join(channel, 0.0)
print(json.dumps({
    "frames": core.data_to_send(),
    "new_modules": sorted(n for n in set(sys.modules) - before if sys.modules[n] is not None),
}))
"""


def _run(*, stub_parent: bool) -> dict[str, list[str]]:
    script = _SCRIPT.replace("STUB_PARENT", repr(stub_parent)).replace(
        "PACKAGE", repr(str(PACKAGE))
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout)
    return result


def test_proto_is_self_contained_without_trio() -> None:
    result = _run(stub_parent=True)
    assert result["frames"] == ['["1","1","room:1","phx_join",{}]']
    ours = {n for n in result["new_modules"] if n.startswith("trio_phoenix")}
    # Nothing of the package outside proto/ was executed.
    assert ours
    assert all(n == "trio_phoenix" or n.startswith("trio_phoenix.proto") for n in ours), ours


def test_proto_does_not_import_clocks_randomness_or_sockets() -> None:
    # Only modules the import itself brought in count (not what the interpreter had loaded).
    new = set(_run(stub_parent=True)["new_modules"])
    # (``threading`` is not listed: attrs imports it for its own bookkeeping.)
    forbidden = {"time", "random", "socket", "select", "selectors", "ssl"}
    assert new & forbidden == set()
    assert not any(n.split(".")[0] in {"trio", "trio_websocket", "wsproto"} for n in new)


def test_proto_sources_have_no_io_imports() -> None:
    forbidden = ("import trio", "from trio ", "import time", "import random", "import socket")
    for path in sorted(PROTO.glob("*.py")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            stripped = line.strip()
            assert not stripped.startswith(forbidden), f"{path.name}:{number}: {stripped}"


def test_import_trio_phoenix_proto_with_trio_blocked() -> None:
    result = _run(stub_parent=False)
    assert result["frames"] == ['["1","1","room:1","phx_join",{}]']


def test_publish_renames_only_our_own_public_definitions() -> None:
    from trio_phoenix.proto._public import publish

    class Ours: ...

    class Foreign: ...

    Ours.__module__ = "trio_phoenix.proto._somewhere"
    Foreign.__module__ = "elsewhere"
    namespace = {"Ours": Ours, "Foreign": Foreign, "Alias": Ours, "_Private": Ours, "n": 1}
    publish("trio_phoenix.proto", namespace)
    assert Ours.__module__ == "trio_phoenix.proto"
    assert Foreign.__module__ == "elsewhere"


def test_the_core_classes_report_their_public_module() -> None:
    import trio_phoenix.proto as proto

    assert proto.SocketCore.__module__ == "trio_phoenix.proto"
    assert repr(proto.SocketState.CONNECTED) == "<SocketState.CONNECTED: 'connected'>"
