"""The WebSocket upgrade as Phoenix decides it: params, serializer, auth token, origin, connect.

Phoenix (``Phoenix.Transports.WebSocket.call/2`` and ``Phoenix.Socket.__connect__``) checks, in
this order: the path, the origin (only when an ``Origin`` header is present), the auth token
carried in ``Sec-WebSocket-Protocol`` (``auth_token: true``), the offered subprotocols, the
``vsn`` query parameter (``Version.match?`` against ``"~> 1.0.0"`` and ``"~> 2.0.0"``; missing
means 1.0.0), and finally the application's ``connect/3``. Every function here is pure, so the
``_upgrade`` module only wires them to the upgrade request (``_websocket.Upgrade``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import attrs

from trio_phoenix.proto._serializer import Serializer, V1JSONSerializer, V2JSONSerializer

__all__ = [
    "AUTH_TOKEN_PREFIX",
    "Accept",
    "ConnectHook",
    "ConnectInfo",
    "ConnectResult",
    "OriginCheck",
    "Reject",
    "origin_allowed",
    "parse_params",
    "serializer_for_vsn",
    "split_auth_token",
]

#: The ``Sec-WebSocket-Protocol`` entry prefix that carries the auth token (Phoenix 1.8+).
AUTH_TOKEN_PREFIX: Final = "base64url.bearer.phx."

# Elixir's Version grammar: no leading zeros, optional pre-release and build parts.
_SEMVER: Final = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


@attrs.frozen(kw_only=True)
class ConnectInfo:
    """What the connect hook learns about the upgrade request besides its query params.

    Phoenix only exposes the keys configured in ``connect_info``; a test server has nothing to
    hide, so every header is here (names lower-cased, in request order), except ``host``,
    ``sec-websocket-protocol`` and ``sec-websocket-extensions``, which the WebSocket handshake
    consumes (the offered subprotocols are in ``subprotocols``).
    """

    path: str
    query_string: str
    headers: tuple[tuple[str, str], ...]
    peer: tuple[str, int]
    subprotocols: tuple[str, ...]
    #: The decoded token of a ``base64url.bearer.phx.`` subprotocol entry (``auth_token=True``).
    auth_token: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    @property
    def x_headers(self) -> tuple[tuple[str, str], ...]:
        """The ``x-*`` headers, as Phoenix's ``connect_info: [:x_headers]`` gives them."""
        return tuple((key, value) for key, value in self.headers if key.startswith("x-"))

    @property
    def user_agent(self) -> str | None:
        """The ``user-agent`` header, as Phoenix's ``connect_info: [:user_agent]``."""
        return self.header("user-agent")


class Reject(Exception):
    """Refuse the upgrade with an HTTP status (403 unless told otherwise).

    A connect hook may raise it or return it; Phoenix's ``:error`` is a 403 and a custom
    ``error_handler`` can choose another status, such as 429.
    """

    def __init__(self, status_code: int = 403, body: bytes = b"") -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body

    def __repr__(self) -> str:
        return f"trio_phoenix.testing.Reject(status_code={self.status_code!r})"


@attrs.frozen(kw_only=True)
class Accept:
    """Accept the upgrade with a socket id and initial assigns (``{:ok, assign(socket, ...)}``)."""

    id: str | None = None
    assigns: Mapping[str, Any] = attrs.field(factory=dict)


#: What a connect hook may return: a socket id, ``None`` (anonymous), `Accept` or `Reject`.
ConnectResult: TypeAlias = str | Accept | Reject | None
#: ``connect(params, connect_info)``, sync or async, like ``UserSocket.connect/3``.
ConnectHook: TypeAlias = Callable[
    [dict[str, Any], ConnectInfo], ConnectResult | Awaitable[ConnectResult]
]
#: ``check_origin``: ``False`` (allow all), ``True`` (the endpoint's host), an allow-list
#: such as ``["https://example.com", "//*.other.com"]``, or a predicate on the origin.
OriginCheck: TypeAlias = bool | Sequence[str] | Callable[[str], bool]


def parse_params(query: str) -> dict[str, Any]:
    """Decode a query string the way Plug does: ``a[b]=1`` nests, ``a[]=1&a[]=2`` makes a list.

    Example:
        >>> parse_params("user%5Bname%5D=ann&tags[]=x&tags[]=y&vsn=2.0.0")
        {'user': {'name': 'ann'}, 'tags': ['x', 'y'], 'vsn': '2.0.0'}
    """
    params: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        _assign(params, _key_path(key), value)
    return params


def _key_path(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not bracket or not head or not rest.endswith("]"):
        return [key]
    return [head, *rest[:-1].split("][")]


def _assign(container: dict[str, Any], path: list[str], value: str) -> None:
    key, *rest = path
    if not rest:
        container[key] = value
        return
    if rest[0] == "":
        items = container.get(key)
        if not isinstance(items, list):
            items = container[key] = []
        if len(rest) == 1:
            items.append(value)
        else:
            nested: dict[str, Any] = {}
            _assign(nested, rest[1:], value)
            items.append(nested)
        return
    child = container.get(key)
    if not isinstance(child, dict):
        child = container[key] = {}
    _assign(child, rest, value)


def serializer_for_vsn(vsn: object) -> Serializer | None:
    """The server-side serializer Phoenix picks for ``vsn``, or ``None`` (HTTP 403).

    A missing ``vsn`` means ``"1.0.0"``. ``"~> 1.0.0"`` selects V1 and ``"~> 2.0.0"`` V2, so
    ``2.0.5`` is V2 while ``2.1.0``, ``3.0.0`` and anything that is not a version are refused.
    """
    if vsn is None:
        vsn = "1.0.0"
    if not isinstance(vsn, str):
        return None
    match = _SEMVER.fullmatch(vsn)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.group(1, 2, 3))
    # "~> M.0.0" is ">= M.0.0 and < M.1.0-0": a pre-release of M.0.0 itself is too old.
    if minor != 0 or (patch == 0 and match.group(4) is not None):
        return None
    if major == 1:
        return V1JSONSerializer(role="server")
    if major == 2:
        return V2JSONSerializer(role="server")
    return None


def split_auth_token(subprotocols: Sequence[str]) -> tuple[str | None, list[str]]:
    """Take the auth token out of the offered subprotocols, as Phoenix does for ``auth_token``.

    The entry is ``base64url.bearer.phx.`` + standard base64 without padding (what phoenix.js's
    ``btoa`` produces). Exactly one such entry must be present, otherwise there is no token.

    Returns:
        The decoded token (or ``None``) and the remaining subprotocols.

    Raises:
        ValueError: the token is not valid base64 (Phoenix crashes the request: HTTP 500).
    """
    tokens = [entry for entry in subprotocols if entry.startswith(AUTH_TOKEN_PREFIX)]
    if len(tokens) != 1:
        return None, list(subprotocols)
    encoded = tokens[0][len(AUTH_TOKEN_PREFIX) :]
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"malformed auth token: {exc}") from exc
    try:
        token = raw.decode("utf-8")
    except UnicodeDecodeError:
        token = raw.decode("latin-1")  # btoa() only takes Latin-1 strings
    return token, [entry for entry in subprotocols if entry != tokens[0]]


def origin_allowed(origin: str, check: OriginCheck, endpoint_host: str) -> bool:
    """Whether ``origin`` passes ``check`` (see `OriginCheck`).

    ``True`` compares the origin's host with ``endpoint_host`` (the endpoint's ``url[:host]``
    in Phoenix). Allow-list entries are URLs whose missing parts are wildcards, and ``*.domain``
    matches the domain and any subdomain. An origin without a host is refused.
    """
    if check is False:
        return True
    if callable(check):
        return bool(check(origin))
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        return False
    if not parts.hostname:
        return False
    if check is True:
        return parts.hostname == endpoint_host.lower()
    for allowed in check:
        want = urlsplit(allowed if "//" in allowed else f"//{allowed}")
        if want.scheme and want.scheme != parts.scheme:
            continue
        if want.port is not None and want.port != port:
            continue
        host = want.hostname or ""
        if host.startswith("*."):
            if parts.hostname == host[2:] or parts.hostname.endswith(host[1:]):
                return True
        elif host == parts.hostname:
            return True
    return False
