"""What changed between the Phoenix versions the test server can act as (``phoenix_version``).

``"1.7"`` was checked frame by frame against a real Phoenix 1.7.24 (on Bandit 1.11.1); ``"1.8"``
follows Phoenix 1.8's ``socket.ex`` and changelog (1.8 needs Elixir 1.15, which the suite's
machines lack, so it has no real-server check).

========================================  ===========================  ======================
behaviour                                 ``"1.7"``                    ``"1.8"``
========================================  ===========================  ======================
close code of a socket-id ``disconnect``  1000                         1001
``phx_error`` payload of a crash          ``{}``                       ``{"reason":
                                                                       "channel_crash"}``
a message whose join ref is not the       delivered (only a stale      ignored, no reply
channel's                                 ``phx_leave`` is ignored)
a message with a join ref, to a channel   delivered                    ignored, no reply
joined with a null join ref
========================================  ===========================  ======================
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias, final

import attrs

from trio_phoenix.proto._message import PHX_LEAVE

__all__ = ["PHOENIX_VERSIONS", "PhoenixVersion", "VersionRules", "rules_for"]

PhoenixVersion: TypeAlias = Literal["1.7", "1.8"]
PHOENIX_VERSIONS: Final = ("1.7", "1.8")


@final
@attrs.frozen
class VersionRules:
    """The version-dependent behaviour of one `TestServer`."""

    version: PhoenixVersion
    #: Close code for connections closed by ``disconnect(socket_id)``.
    disconnect_code: int
    _error_payload: tuple[tuple[str, Any], ...]

    def error_payload(self) -> dict[str, Any]:
        """A fresh ``phx_error`` payload."""
        return dict(self._error_payload)

    def delivers(self, event: object, join_ref: object, stored: str | None) -> bool:
        """Whether a message with ``join_ref`` reaches a channel joined with ``stored``."""
        if self.version == "1.7":
            # socket.ex 1.7: only phx_leave looks at the join ref (null stored ref: any).
            return event != PHX_LEAVE or stored is None or join_ref == stored
        # 1.8.3 and later ignore stale join refs; 1.8.12 also those on a null-ref channel.
        return join_ref is None or join_ref == stored


def rules_for(version: str) -> VersionRules:
    """The rules of ``version`` (``"1.7"`` or ``"1.8"``).

    Raises:
        ValueError: another version.
    """
    if version == "1.7":
        return VersionRules("1.7", 1000, ())
    if version == "1.8":
        return VersionRules("1.8", 1001, (("reason", "channel_crash"),))
    raise ValueError(f"phoenix_version must be one of {PHOENIX_VERSIONS}, not {version!r}")
