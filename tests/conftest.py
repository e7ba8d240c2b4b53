"""Shared fixtures for the Trio client's tests, and the client hygiene check.

Every test in the client's test modules (``CLIENT_TEST_MODULES``) is checked, after its body
returns and while its Trio run is still going, for what the design promises never happens:

* no task of the client (``trio_phoenix._*`` and the trio-websocket tasks beneath them) is
  still running anywhere in the run;
* every ``Socket`` the test created is ``CLOSED``, with no pending reply and no buffered push;
* every ``Channel`` the test created has no pending reply and no buffered push.

Why not an async autouse fixture: pytest-trio 0.8 only runs the async fixtures a test names in
its signature; an async ``autouse`` fixture is silently never run. So a *sync* autouse fixture
records every socket and channel (wrapping their ``__init__``, which still runs unchanged) and
wraps the test function itself, so that the check runs inside the test's Trio run, after the
test body. ``client_hygiene`` gives tests the same check, to prove that it can fail.
"""

from __future__ import annotations

import functools
import inspect
import socket as stdlib_socket
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, settings

from trio_phoenix import Channel, Socket, SocketState

# One Hypothesis profile for the suite: nothing may depend on the machine's speed (a busy
# 2-core CI machine runs examples several times slower), so no deadline and no too_slow check.
settings.register_profile(
    "trio_phoenix", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("trio_phoenix")

#: The modules whose tests get the hygiene check (and every module of ``tests/scenarios``).
CLIENT_TEST_MODULES = frozenset(
    {
        "tests.client.test_socket",
        "tests.client.test_channel_join",
        "tests.client.test_channel_rejoin",
        "tests.client.test_channel_push",
        "tests.client.test_subscription",
        "tests.client.test_presence_view",
        "tests.client.test_transport",
        "tests.client.test_lifecycle",
        "tests.client.test_checkpoints",
        "tests.client.test_longpoll",
        "tests.client.test_presence_unclaimed",
        "tests.client.test_connection_control",
        "tests.client.test_channel_params",
        "tests.client.test_url_callable",
        "tests.client.test_backpressure",
    }
)

_CLIENT_PREFIX = "trio_phoenix."
_NOT_CLIENT_PREFIX = "trio_phoenix.testing"


def _is_client_task(task: trio.lowlevel.Task) -> bool:
    return task.name.startswith(_CLIENT_PREFIX) and not task.name.startswith(_NOT_CLIENT_PREFIX)


def client_tasks() -> list[str]:
    """The names of every running client task, and of the tasks beneath them."""
    found: list[str] = []
    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack: list[tuple[trio.lowlevel.Task, bool]] = [(root, False)]
    while stack:
        task, under_client = stack.pop()
        ours = under_client or _is_client_task(task)
        if ours:
            found.append(task.name)
        for nursery in task.child_nurseries:
            stack.extend((child, ours) for child in nursery.child_tasks)
    return sorted(found)


@attrs.define(eq=False)
class ClientHygiene:
    """Records the sockets and channels created during a test and checks they are clean."""

    sockets: list[Socket] = attrs.Factory(list)
    channels: list[Channel] = attrs.Factory(list)

    def problems(self) -> list[str]:
        found = [f"client task still running: {name}" for name in client_tasks()]
        for socket in self.sockets:
            stats = socket.statistics()
            if socket.state is not SocketState.CLOSED:
                found.append(f"{socket!r} is {socket.state.value}, not closed")
            if stats.pending_replies or stats.buffered_pushes:
                found.append(
                    f"{socket!r}: {stats.pending_replies} pending replies, "
                    f"{stats.buffered_pushes} buffered pushes"
                )
        for channel in self.channels:
            cstats = channel.statistics()
            if cstats.pending_replies or cstats.buffered_pushes:
                found.append(
                    f"{channel!r}: {cstats.pending_replies} pending replies, "
                    f"{cstats.buffered_pushes} buffered pushes"
                )
        return found

    def check(self) -> None:
        """Raise ``AssertionError`` listing every leak (call it inside the Trio run)."""
        found = self.problems()
        assert not found, "client hygiene: " + "; ".join(found)


@pytest.fixture(autouse=True)
def _client_hygiene_check(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ClientHygiene]:
    hygiene = ClientHygiene()
    module = request.module.__name__
    if module not in CLIENT_TEST_MODULES and not module.startswith("tests.scenarios."):
        yield hygiene
        return
    socket_init = Socket.__init__
    channel_init = Channel.__init__

    @functools.wraps(socket_init)
    def record_socket(self: Socket, *args: Any, **kwargs: Any) -> None:
        socket_init(self, *args, **kwargs)
        hygiene.sockets.append(self)

    @functools.wraps(channel_init)
    def record_channel(self: Channel, *args: Any, **kwargs: Any) -> None:
        channel_init(self, *args, **kwargs)
        hygiene.channels.append(self)

    monkeypatch.setattr(Socket, "__init__", record_socket)
    monkeypatch.setattr(Channel, "__init__", record_channel)
    item = request.node
    assert isinstance(item, pytest.Function)
    test: Callable[..., Any] = item.obj
    if inspect.iscoroutinefunction(test):

        @functools.wraps(test)
        async def checked(**kwargs: Any) -> None:
            await test(**kwargs)
            # Let tasks that are already finishing (cancelled, returning) get there first.
            for _ in range(3):
                await trio.lowlevel.cancel_shielded_checkpoint()
            hygiene.check()

        item.obj = checked
    yield hygiene


@pytest.fixture
def client_hygiene(_client_hygiene_check: ClientHygiene) -> ClientHygiene:
    """The hygiene record of the running test (its ``check()`` can be called at any time)."""
    return _client_hygiene_check


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with stdlib_socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
