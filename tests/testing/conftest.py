"""Fixtures of the test server's tests: ``server``, a fresh server with the demo channels."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trio_phoenix.testing import TestServer, demo_channels, open_test_server


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with open_test_server(demo_channels()) as running:
        yield running
