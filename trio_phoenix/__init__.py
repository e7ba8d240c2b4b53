"""trio_phoenix: a Trio-native Phoenix Channels client.

``async with open_socket(url) as socket:`` owns the connection, heartbeat and reconnect tasks;
``socket.channel(topic, params)`` gives a ``Channel`` to join, push on and subscribe to. The
protocol itself lives in the sans-IO ``trio_phoenix.proto``; ``trio_phoenix.testing`` holds an
in-process Phoenix-protocol server and pytest fixtures.
"""

import logging as _logging

from .proto import (
    ChannelState as ChannelState,
    CloseReason as CloseReason,
    Message as Message,
    PresenceChange as PresenceChange,
    PresenceJoin as PresenceJoin,
    PresenceLeave as PresenceLeave,
    PresenceSynced as PresenceSynced,
    ReadOnlyDict as ReadOnlyDict,
    ReadOnlyList as ReadOnlyList,
    Serializer as Serializer,
    V1JSONSerializer as V1JSONSerializer,
    V2JSONSerializer as V2JSONSerializer,
    jittered as jittered,
    phoenix_reconnect_after as phoenix_reconnect_after,
    phoenix_rejoin_after as phoenix_rejoin_after,
)

try:
    import trio as _trio  # noqa: F401
except ImportError:  # pragma: no cover -- Trio-free use of trio_phoenix.proto only
    pass
else:
    from ._channel import (
        DEFAULT_MAX_BUFFER as DEFAULT_MAX_BUFFER,
        Channel as Channel,
        ChannelStatistics as ChannelStatistics,
    )
    from ._exceptions import (
        ChannelClosed as ChannelClosed,
        ConnectError as ConnectError,
        ConnectTimeout as ConnectTimeout,
        EncodeError as EncodeError,
        InvalidHeader as InvalidHeader,
        InvalidParams as InvalidParams,
        InvalidTransition as InvalidTransition,
        InvalidURL as InvalidURL,
        JoinError as JoinError,
        JoinTimeout as JoinTimeout,
        LocalProtocolError as LocalProtocolError,
        PhoenixError as PhoenixError,
        PhoenixTimeout as PhoenixTimeout,
        ProtocolError as ProtocolError,
        PushError as PushError,
        PushTimeout as PushTimeout,
        RemoteProtocolError as RemoteProtocolError,
        ReplyLost as ReplyLost,
        SocketClosed as SocketClosed,
        SubscriptionOverflow as SubscriptionOverflow,
    )
    from ._lifecycle import (
        ChannelEnded as ChannelEnded,
        ChannelErrored as ChannelErrored,
        ChannelJoined as ChannelJoined,
        Connected as Connected,
        ConnectFailed as ConnectFailed,
        Disconnected as Disconnected,
        DisconnectRequested as DisconnectRequested,
        HeartbeatTimeout as HeartbeatTimeout,
        LifecycleEvent as LifecycleEvent,
        ReconnectScheduled as ReconnectScheduled,
        RejoinScheduled as RejoinScheduled,
        TransportFallback as TransportFallback,
    )
    from ._open import (
        connect_socket as connect_socket,
        open_socket as open_socket,
    )
    from ._options import SocketOptions as SocketOptions
    from ._presence import Presence as Presence
    from ._socket import (
        DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE,
        Socket as Socket,
        SocketState as SocketState,
        SocketStatistics as SocketStatistics,
    )
    from ._subscription import (
        DEFAULT_MAX_BUFFER_BYTES as DEFAULT_MAX_BUFFER_BYTES,
        OverflowPolicy as OverflowPolicy,
        Subscription as Subscription,
        SubscriptionStatistics as SubscriptionStatistics,
    )

__version__ = "0.1.0.dev0"

from .proto._public import publish as _publish

_publish("trio_phoenix", globals())

# A library logs but leaves output to the application: without this, a program that never
# configured logging would get every connect retry's WARNING on stderr (logging's last resort).
_logging.getLogger("trio_phoenix").addHandler(_logging.NullHandler())
