"""Fixtures of the core's tests: ``json_backend``, for the serializer tests (``usefixtures``)."""

from __future__ import annotations

import pytest

from trio_phoenix.proto import _serializer

BACKENDS = ["json", "orjson"]


@pytest.fixture(params=BACKENDS)
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with each JSON decoder (orjson: the ``fast`` extra)."""
    backend: str = request.param
    if backend == "orjson":
        pytest.importorskip("orjson")
        monkeypatch.setattr(_serializer, "_load", _serializer._load_orjson)
    else:
        monkeypatch.setattr(_serializer, "_load", _serializer._load_stdlib)
    return backend
