"""The test server's pytest plugin: the ``phoenix_server`` and ``phoenix_server_factory`` fixtures.

How these tests run: ``tests/testing/server_helpers.py``.
"""

from __future__ import annotations

from tests.testing.server_helpers import Shouter, connect, error, ok
from trio_phoenix.testing import PhoenixServerFactory, TestServer


async def test_phoenix_server_fixture(phoenix_server: TestServer) -> None:
    async with connect(phoenix_server) as client:
        assert (await client.join("room:1", "1"))[4] == ok(
            {"topic": "room:1", "user": "anonymous"}
        )


async def test_phoenix_server_factory_fixture(
    phoenix_server_factory: PhoenixServerFactory,
) -> None:
    server = await phoenix_server_factory({"only:*": Shouter}, max_channels_per_transport=1)
    async with connect(server) as client:
        assert (await client.join("only:1", "1"))[4] == ok({})
        assert (await client.join("echo:1", "2"))[4] == error({"reason": "unmatched topic"})
