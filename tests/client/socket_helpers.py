"""Helpers shared by the socket tests (``test_socket.py``, ``test_socket_heartbeat.py``)."""

from __future__ import annotations

from typing import Any

from trio_phoenix import Message
from trio_phoenix.testing import Accept, ConnectInfo, TestServer

PHOENIX_BACKOFF = [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 5.0]


def heartbeats(server: TestServer, index: int = 0) -> list[Message]:
    return [
        m
        for m in server.accepted_connections[index].received
        if (m.topic, m.event) == ("phoenix", "heartbeat")
    ]


def joins(server: TestServer, index: int, topic: str) -> list[tuple[str | None, str | None]]:
    return [
        (m.join_ref, m.ref)
        for m in server.accepted_connections[index].received
        if (m.topic, m.event) == (topic, "phx_join")
    ]


def by_id(params: dict[str, Any], info: ConnectInfo) -> Accept:
    return Accept(id="user:1")
