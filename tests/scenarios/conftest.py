"""One scenario suite, two servers: every test here runs against both.

The client scenarios (the tests that open a client socket) also run over every transport:
``client_transport`` is parametrized with ``"websocket"`` (our engine, the default),
``"trio-websocket"`` and ``"longpoll"``; each opens its sockets with ``open_socket(server.url,
**server.options)``.

``server`` is parametrized: ``testing`` is `trio_phoenix.testing` with the scenario app
(`scenarios.app`), fresh for each test; ``phoenix`` is the real Phoenix app of
``tests/phoenix_app``, built and started once per session (`scenarios.real_phoenix`). Without
Elixir and outside CI the ``phoenix`` runs are skipped with one line saying how to enable them;
with ``CI`` set they must run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, Literal, TypedDict

import attrs
import pytest

from trio_phoenix import Channel, ReplyLost
from trio_phoenix._transports import TRANSPORTS, TransportName
from trio_phoenix.testing import TestServerOptions, open_test_server

from . import app, real_phoenix

Kind = Literal["testing", "phoenix"]

#: Seconds any one scenario may take before it fails (real time: both servers are real).
LIMIT = 15.0


async def disconnect_me(channel: Channel) -> None:
    """Make the server disconnect this channel's socket by its id (the socket needs a user).

    The ``disconnect`` event has no reply: the connection closes first, so the push ends in
    `ReplyLost`.
    """
    with pytest.raises(ReplyLost):
        await channel.push("disconnect", {})


def fast_rejoin(attempt: int) -> float:
    """A rejoin schedule for scenarios: 50 ms, so a crash is rejoined quickly."""
    return 0.05


#: The test server as the real app is: Phoenix 1.7 on Bandit (whose idle timeout closes with
#: 1002), the join's own presence_diff before presence_state.
TESTING_OPTIONS: Final[TestServerOptions] = {
    "connect": app.connect,
    "auth_token": True,
    "phoenix_version": "1.7",
    "idle_close_code": 1002,
    "presence_order": "diff_first",
    "longpoll": True,
    "longpoll_window": 1.0,
}


class ClientOptions(TypedDict):
    """The socket options a client scenario varies."""

    transport: TransportName


@attrs.frozen
class ScenarioServer:
    """A server running the scenario app: which one, and its socket URL."""

    kind: Kind
    url: str
    #: The client options of this parametrization (the transport).
    options: ClientOptions = attrs.field(factory=lambda: ClientOptions(transport="websocket"))

    @property
    def longpoll(self) -> bool:
        """Whether the client scenarios run over LongPoll."""
        return self.options["transport"] == "longpoll"


_NOT_HERE = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Elixir and outside CI, deselect the real-Phoenix runs (reported in one line)."""
    if real_phoenix.have_elixir() or real_phoenix.in_ci():
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_phoenix = callspec is not None and callspec.params.get("server_kind") == "phoenix"
        (dropped if on_phoenix else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        config.stash[_NOT_HERE] = len(dropped)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say once why the real-Phoenix runs did not happen, and how to enable them."""
    if _NOT_HERE in config.stash:
        count = config.stash[_NOT_HERE]
        terminalreporter.write_line(f"{real_phoenix.HOW_TO_ENABLE}: {count} runs deselected")


@pytest.fixture(scope="session")
def phoenix_app() -> Iterator[str]:
    """The socket URL of the real Phoenix app, started once for the session."""
    why_not = real_phoenix.prepare()
    if why_not:
        pytest.skip(why_not)
    with real_phoenix.start_app() as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every client scenario (a test that calls ``open_socket``) over each transport, or
    over those its ``transports`` marker names."""
    if "client_transport" in metafunc.fixturenames and "open_socket" in (
        metafunc.function.__code__.co_names
    ):
        marker = metafunc.definition.get_closest_marker("transports")
        chosen = marker.args if marker is not None else TRANSPORTS
        metafunc.parametrize("client_transport", chosen, indirect=True)


@pytest.fixture
def client_transport(request: pytest.FixtureRequest) -> TransportName:
    """The client's transport (``"websocket"`` where the test opens no client socket)."""
    transport: TransportName = getattr(request, "param", "websocket")
    return transport


@pytest.fixture(params=["testing", "phoenix"])
def server_kind(request: pytest.FixtureRequest) -> tuple[Kind, str | None]:
    """Which server; for ``phoenix``, the URL of the session's app."""
    kind: Kind = request.param
    if kind == "phoenix":
        url: str = request.getfixturevalue("phoenix_app")
        return kind, url
    return kind, None


@pytest.fixture
async def server(
    server_kind: tuple[Kind, str | None], client_transport: TransportName
) -> AsyncIterator[ScenarioServer]:
    """The scenario app on the server of this parametrization."""
    kind, url = server_kind
    options = ClientOptions(transport=client_transport)
    if url is not None:
        yield ScenarioServer(kind, url, options)
        return
    async with open_test_server(app.channels(), **TESTING_OPTIONS) as test:
        yield ScenarioServer(kind, test.url, options)


@pytest.fixture
async def short_idle_url(server: ScenarioServer) -> AsyncIterator[str]:
    """The same app with a 1-second idle timeout (``/short_idle`` on the real app)."""
    if server.kind == "phoenix":
        yield server.url.rsplit("/", 1)[0] + "/short_idle"
        return
    options: TestServerOptions = {**TESTING_OPTIONS, "path": "/short_idle", "idle_timeout": 1.0}
    async with open_test_server(app.channels(), **options) as test:
        yield test.url
