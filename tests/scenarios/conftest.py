"""One scenario suite, two servers: every test here runs against both.

``server`` is parametrized: ``testing`` is `trio_phoenix.testing` with the scenario app
(`scenarios.app`), fresh for each test; ``phoenix`` is the real Phoenix app of
``tests/phoenix_app``, built and started once per session (`scenarios.real_phoenix`). The
client scenarios (every module but the raw-frame ``test_wire`` and ``test_fidelity``) run over
both transports too: ``transport`` is ``websocket`` or ``longpoll``, and the scenarios pass
``server.options`` to ``open_socket``. Without
Elixir and outside CI the ``phoenix`` runs are skipped with one line saying how to enable them;
with ``CI`` set they must run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, Literal, TypedDict

import attrs
import pytest

from trio_phoenix import Channel, ReplyLost
from trio_phoenix.testing import TestServerOptions, open_test_server

from . import app, real_phoenix

Kind = Literal["testing", "phoenix"]
TransportName = Literal["websocket", "longpoll"]

#: The modules that write raw WebSocket frames: they run over WebSocket only.
RAW_MODULES: Final = frozenset({"test_wire", "test_fidelity"})

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
#: 1002), the join's own presence_diff before presence_state, a 1-second LongPoll window.
TESTING_OPTIONS: Final[TestServerOptions] = {
    "connect": app.connect,
    "auth_token": True,
    "phoenix_version": "1.7",
    "idle_close_code": 1002,
    "presence_order": "diff_first",
    "longpoll": True,
    "longpoll_window": 1.0,
}


class TransportOption(TypedDict):
    """The one ``open_socket`` option a scenario run chooses."""

    transport: TransportName


@attrs.frozen
class ScenarioServer:
    """A server running the scenario app: which one, its socket URL, and the transport the
    client scenarios use (``options``: give them to ``open_socket``)."""

    kind: Kind
    url: str
    transport: TransportName = "websocket"

    @property
    def options(self) -> TransportOption:
        """The ``open_socket`` options of this run's transport."""
        return {"transport": self.transport}

    @property
    def longpoll(self) -> bool:
        """Whether the client scenarios run over LongPoll."""
        return self.transport == "longpoll"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the client scenarios over both transports (the raw-frame ones over WebSocket)."""
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "server" in metafunc.fixturenames and module not in RAW_MODULES:
        metafunc.parametrize("transport", ["websocket", "longpoll"])


@pytest.fixture
def transport() -> TransportName:
    """WebSocket, unless ``pytest_generate_tests`` parametrized it."""
    return "websocket"


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
    server_kind: tuple[Kind, str | None], transport: TransportName
) -> AsyncIterator[ScenarioServer]:
    """The scenario app on the server of this parametrization."""
    kind, url = server_kind
    if url is not None:
        yield ScenarioServer(kind, url, transport)
        return
    async with open_test_server(app.channels(), **TESTING_OPTIONS) as test:
        yield ScenarioServer(kind, test.url, transport)


@pytest.fixture
async def short_idle_url(server: ScenarioServer) -> AsyncIterator[str]:
    """The same app with a 1-second idle timeout (``/short_idle`` on the real app)."""
    if server.kind == "phoenix":
        yield server.url.rsplit("/", 1)[0] + "/short_idle"
        return
    options: TestServerOptions = {**TESTING_OPTIONS, "path": "/short_idle", "idle_timeout": 1.0}
    async with open_test_server(app.channels(), **options) as test:
        yield test.url
