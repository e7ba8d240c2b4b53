"""Through a proxy: the scenario app reached via HTTP CONNECT and SOCKS5 (pproxy, on loopback)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import trio

from tests.proxies import run_proxy
from trio_phoenix import open_socket

from .conftest import LIMIT, ScenarioServer


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
async def test_push_and_reply_through_a_proxy(server: ScenarioServer, scheme: str) -> None:
    port = urlsplit(server.url).port
    assert port is not None
    async with run_proxy("http" if scheme == "http" else "socks5", auth=True) as proxy:
        url = proxy.url().replace("socks5://", "socks5h://")
        with trio.fail_after(LIMIT):
            async with (
                open_socket(server.url, auth_token="secret", proxy=url) as socket,
                socket.channel("echo:proxy") as channel,
            ):
                assert await channel.push("echo", {"via": scheme}) == {"via": scheme}
        assert len(proxy.connections_to(port)) == 1
