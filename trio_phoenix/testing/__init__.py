"""trio_phoenix.testing: a faithful in-process Phoenix endpoint, fault injection, pytest fixtures.

`TestServer` speaks the Phoenix Channels protocol the way Phoenix 1.8.12 on Bandit 1.11 does
(``phoenix_version="1.7"``: Phoenix 1.7), from WebSocket frames up: handshake and ``vsn``
negotiation, the routing table of ``Phoenix.Socket``, channel crashes and closes, heartbeats,
close codes, presence (diff before state by default; ``presence_order``), with channels
written as Python classes shaped like Phoenix channel modules. Start one with
``async with open_test_server(channels) as server`` or ``await nursery.start(serve_test_server)``,
point a client at ``server.url``, and break things on purpose through ``server.connections`` or
a `FaultProxy`.

The pytest plugin (registered automatically) provides the ``phoenix_server`` and
``phoenix_server_factory`` fixtures; see ``trio_phoenix.testing._pytest_plugin``.
"""

from ..proto._public import publish as _publish
from ._channel import ChannelSocket as ChannelSocket, SocketRef as SocketRef
from ._connection import ServerConnection as ServerConnection
from ._endpoint import (
    DEMO_ROOM as DEMO_ROOM,
    EchoChannel as EchoChannel,
    RoomChannel as RoomChannel,
    demo_channels as demo_channels,
    demo_connect as demo_connect,
    demo_socket_id as demo_socket_id,
)
from ._factory import PhoenixServerFactory as PhoenixServerFactory
from ._handlers import (
    ChannelFactory as ChannelFactory,
    ChannelHandler as ChannelHandler,
    HandleInResult as HandleInResult,
    Reply as Reply,
    Router as Router,
    Stop as Stop,
)
from ._handshake import (
    Accept as Accept,
    ConnectHook as ConnectHook,
    ConnectInfo as ConnectInfo,
    ConnectResult as ConnectResult,
    OriginCheck as OriginCheck,
    Reject as Reject,
)
from ._presence import (
    PresenceOrder as PresenceOrder,
    PresenceTracker as PresenceTracker,
    new_phx_ref as new_phx_ref,
)
from ._proxy import (
    FaultProxy as FaultProxy,
    ProxyConnection as ProxyConnection,
    ProxyStatistics as ProxyStatistics,
    open_fault_proxy as open_fault_proxy,
)
from ._server import (
    ServerStatistics as ServerStatistics,
    TestServer as TestServer,
    TestServerOptions as TestServerOptions,
    open_test_server as open_test_server,
    serve_test_server as serve_test_server,
)
from ._versions import PhoenixVersion as PhoenixVersion

_publish("trio_phoenix.testing", globals())
