"""Fixtures of the Trio layer's tests: ``server``, a test server with the demo channels and the
channel tests' handlers (``tests/client/channel_helpers.py``), reset for each test."""

from __future__ import annotations

import pytest

from tests.client.channel_helpers import Flaky, Recorder, SlowJoin
from trio_phoenix.testing import PhoenixServerFactory, TestServer, demo_channels


@pytest.fixture
async def server(phoenix_server_factory: PhoenixServerFactory) -> TestServer:
    SlowJoin.delay = 1.0
    Recorder.sockets = []
    Flaky.joins = 0
    channels = {
        **demo_channels(),
        "slow:*": SlowJoin,
        "rec:*": Recorder,
        "flaky:*": Flaky,
    }
    return await phoenix_server_factory(channels)
