"""permessage-deflate (``compress=True``): the real app's ``/compressed`` mount
(``websocket: [compress: true]``) negotiates it; the test server has no permessage-deflate, so
there the offer is declined and the socket runs uncompressed, as against any server that
declines. (Hostile compressed frames and a compression bomb: ``tests/client/test_compression.py``.)

Only the ``websocket`` transport has compression: these tests do not run over trio-websocket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from trio_phoenix import open_socket
from trio_phoenix.testing import open_test_server

from . import app
from .conftest import LIMIT, TESTING_OPTIONS, Kind


@pytest.fixture
async def compressed_url(server_kind: tuple[Kind, str | None]) -> AsyncIterator[tuple[str, bool]]:
    """The URL of a mount with compression, and whether the server will accept it."""
    _, url = server_kind
    if url is not None:
        yield url.rsplit("/", 1)[0] + "/compressed", True
        return
    async with open_test_server(app.channels(), **TESTING_OPTIONS) as test:
        yield test.url, False


async def test_large_messages_both_ways_over_a_compressed_socket(
    compressed_url: tuple[str, bool],
) -> None:
    url, accepted = compressed_url
    payload = {"rows": [{"id": n, "name": f"user {n}", "active": n % 2 == 0} for n in range(2000)]}
    with trio.fail_after(LIMIT):
        async with (
            open_socket(url, compress=True) as socket,
            socket.channel("echo:zip") as channel,
            channel.subscribe("big") as messages,
        ):
            transport = socket._transport
            assert transport is not None
            assert getattr(transport, "compressed", None) is accepted
            assert await channel.push("echo", payload) == payload
            await channel.push("push", {"event": "big", "payload": payload})
            assert (await messages.receive()).payload == payload
