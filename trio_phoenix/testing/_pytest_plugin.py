"""pytest fixtures for testing Trio code against trio_phoenix's in-process Phoenix server.

The plugin is registered through the ``pytest11`` entry point, so installing trio_phoenix is
enough. The fixtures are async: use them from Trio tests run by pytest-trio (``trio_mode =
true``, or ``@pytest.mark.trio``). Nothing is imported until a fixture is used, so projects
that do not use Trio are unaffected.

Fixtures:

``phoenix_server``
    A running `~trio_phoenix.testing.TestServer` with the demo channels (``room:*`` and
    ``echo:*``, see `~trio_phoenix.testing.demo_channels`), fresh for each test and shut down
    after it::

        async def test_echo(phoenix_server):
            async with open_socket(phoenix_server.url) as socket:
                ...

``phoenix_server_factory``
    An async callable that starts a server with your own channels and options (the keyword
    arguments of `~trio_phoenix.testing.TestServer`); every server it started is shut down
    after the test::

        async def test_auth(phoenix_server_factory):
            server = await phoenix_server_factory({"room:*": MyRoom}, connect=my_connect)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Final, Unpack

import pytest

from ._factory import PhoenixServerFactory

if TYPE_CHECKING:
    from ._handlers import ChannelFactory
    from ._server import TestServer, TestServerOptions

__all__ = ["PhoenixServerFactory", "phoenix_server", "phoenix_server_factory"]

_FIXTURES: Final = frozenset({"phoenix_server", "phoenix_server_factory"})
_NEEDS_TRIO: Final = (
    "{fixture} is an async fixture and needs pytest-trio to run the test in Trio: "
    "pip install 'trio-phoenix[pytest]', then set trio_mode = true in your pytest "
    "configuration or mark the test with @pytest.mark.trio"
)


def _runs_in_trio(item: pytest.Item) -> bool:
    """Whether pytest-trio will run ``item`` (installed, and trio mode or the trio mark)."""
    if not item.config.pluginmanager.hasplugin("trio"):
        return False
    return bool(item.config.getini("trio_mode")) or item.get_closest_marker("trio") is not None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a test that uses our fixtures without pytest-trio, saying what to install."""
    used = _FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if used and not _runs_in_trio(item):
        pytest.fail(_NEEDS_TRIO.format(fixture=" and ".join(sorted(used))), pytrace=False)


@pytest.fixture
async def phoenix_server() -> AsyncIterator[TestServer]:
    """A running test server with the demo channels, for one test."""
    from . import demo_channels, open_test_server

    async with open_test_server(demo_channels()) as server:
        yield server


@pytest.fixture
async def phoenix_server_factory() -> AsyncIterator[PhoenixServerFactory]:
    """Start test servers with custom channels and options; all stop after the test."""
    import trio

    from ._server import TestServer

    async with trio.open_nursery() as nursery:

        async def start(
            channels: Mapping[str, ChannelFactory] | None = None,
            **options: Unpack[TestServerOptions],
        ) -> TestServer:
            server = TestServer(channels, **options)
            started: TestServer = await nursery.start(server.run)
            return started

        yield start
        nursery.cancel_scope.cancel()
