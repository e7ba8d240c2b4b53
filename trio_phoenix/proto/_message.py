"""The message model: one Phoenix Channels frame as a frozen value.

Every frame on the wire, in every serializer, is the same five fields. Refs are opaque strings
(phoenix.js allocates decimal strings from one counter); ``None`` stands for JSON ``null`` (and,
in V2 binary frames, for an absent ref).
"""

from __future__ import annotations

from typing import Any, Final

import attrs

__all__ = [
    "HEARTBEAT",
    "PHOENIX_TOPIC",
    "PHX_CLOSE",
    "PHX_ERROR",
    "PHX_JOIN",
    "PHX_LEAVE",
    "PHX_REPLY",
    "RESERVED_EVENTS",
    "Message",
    "Payload",
]

PHX_JOIN: Final = "phx_join"
PHX_LEAVE: Final = "phx_leave"
PHX_REPLY: Final = "phx_reply"
PHX_ERROR: Final = "phx_error"
PHX_CLOSE: Final = "phx_close"
HEARTBEAT: Final = "heartbeat"
PHOENIX_TOPIC: Final = "phoenix"

#: Events with a meaning in the protocol itself; user pushes should not use them.
RESERVED_EVENTS: Final = frozenset({PHX_JOIN, PHX_LEAVE, PHX_REPLY, PHX_ERROR, PHX_CLOSE})

#: A payload is any JSON value, or ``bytes`` for a V2 binary frame.
Payload = Any


@attrs.frozen(kw_only=True)
class Message:
    """One Phoenix Channels message.

    ``payload`` is the decoded JSON value, or ``bytes`` for a binary frame. A reply
    (``event == "phx_reply"``) carries ``{"status": ..., "response": ...}``; for a binary
    reply the response is ``bytes``.
    """

    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Payload
