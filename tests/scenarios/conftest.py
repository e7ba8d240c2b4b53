"""One scenario suite, two servers: every test here runs against both.

``server`` is parametrized: ``testing`` is `trio_phoenix.testing` with the scenario app
(`scenarios.app`), fresh for each test; ``phoenix`` is the real Phoenix app of
``tests/phoenix_app``, built and started once per session (`scenarios.real_phoenix`). Without
Elixir and outside CI the ``phoenix`` runs are skipped with one line saying how to enable them;
with ``CI`` set they must run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Literal

import attrs
import pytest

from trio_phoenix import Channel, ReplyLost
from trio_phoenix.testing import open_test_server

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


@attrs.frozen
class ScenarioServer:
    """A server running the scenario app: which one, and its socket URL."""

    kind: Kind
    url: str


@pytest.fixture(scope="session")
def phoenix_app() -> Iterator[str]:
    """The socket URL of the real Phoenix app, started once for the session."""
    if not real_phoenix.have_elixir() and not real_phoenix.in_ci():
        pytest.skip(real_phoenix.HOW_TO_ENABLE)
    real_phoenix.prepare()
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
async def server(server_kind: tuple[Kind, str | None]) -> AsyncIterator[ScenarioServer]:
    """The scenario app on the server of this parametrization."""
    kind, url = server_kind
    if url is not None:
        yield ScenarioServer(kind, url)
        return
    async with open_test_server(app.channels(), connect=app.connect, auth_token=True) as test:
        yield ScenarioServer(kind, test.url)
