"""The type of the ``phoenix_server_factory`` fixture, importable without pytest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, Unpack

if TYPE_CHECKING:
    from ._handlers import ChannelFactory
    from ._server import TestServer, TestServerOptions

__all__ = ["PhoenixServerFactory"]


class PhoenixServerFactory(Protocol):
    """The type of the ``phoenix_server_factory`` fixture: annotate your tests with it.

    Example:
        >>> async def test_auth(phoenix_server_factory: PhoenixServerFactory) -> None:
        ...     server = await phoenix_server_factory({"room:*": MyRoom}, connect=my_connect)
    """

    async def __call__(
        self,
        channels: Mapping[str, ChannelFactory] | None = None,
        **options: Unpack[TestServerOptions],
    ) -> TestServer:
        """Start a `TestServer` that lives until the end of the test."""
        ...
