"""trio_phoenix.proto: the sans-IO core of the Phoenix Channels protocol.

No Trio, no sockets, no clocks: messages and serializers, URL building, the channel state
machine, the socket core (refs, pending replies, push buffering, stale join refs, heartbeats,
reconnect and rejoin backoff, routing) and presence sync. Time comes in as ``now``.

An I/O layer drives ``SocketCore`` with commands, frames and the time, sends what
``data_to_send()`` returns and acts on the typed events of ``events()``; it may hang its own
objects on the core's (``ChannelCore.owner``, ``Push.waiter``) to find whom an event is for.
"""

from ._backoff import (
    Backoff as Backoff,
    Schedule as Schedule,
    jittered as jittered,
    phoenix_reconnect_after as phoenix_reconnect_after,
    phoenix_rejoin_after as phoenix_rejoin_after,
)
from ._channel_core import (
    DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
    ChannelCore as ChannelCore,
    ChannelOwner as ChannelOwner,
    CloseReason as CloseReason,
    Push as Push,
    PushFailure as PushFailure,
    PushKind as PushKind,
    SocketState as SocketState,
    Waiter as Waiter,
)
from ._channel_state import (
    TRANSITIONS as TRANSITIONS,
    ChannelEvent as ChannelEvent,
    ChannelState as ChannelState,
    next_state as next_state,
)
from ._core import (
    DEFAULT_HEARTBEAT_INTERVAL as DEFAULT_HEARTBEAT_INTERVAL,
    SocketCore as SocketCore,
    SocketStatistics as SocketStatistics,
)
from ._errors import (
    ChannelClosed as ChannelClosed,
    EncodeError as EncodeError,
    InvalidHeader as InvalidHeader,
    InvalidParams as InvalidParams,
    InvalidTransition as InvalidTransition,
    InvalidURL as InvalidURL,
    LocalProtocolError as LocalProtocolError,
    PhoenixError as PhoenixError,
    ProtocolError as ProtocolError,
    RemoteProtocolError as RemoteProtocolError,
    SocketClosed as SocketClosed,
)
from ._events import (
    ChannelEnded as ChannelEnded,
    ChannelErrored as ChannelErrored,
    ChannelJoined as ChannelJoined,
    CloseTransport as CloseTransport,
    DisconnectRequested as DisconnectRequested,
    DropConnection as DropConnection,
    Event as Event,
    FrameDropped as FrameDropped,
    JoinFailed as JoinFailed,
    JoinParamsNeeded as JoinParamsNeeded,
    MessageReceived as MessageReceived,
    PingLost as PingLost,
    PingReplied as PingReplied,
    PushFailed as PushFailed,
    PushReplied as PushReplied,
    PushTimedOut as PushTimedOut,
    ReconnectDue as ReconnectDue,
    ReconnectScheduled as ReconnectScheduled,
    RejoinScheduled as RejoinScheduled,
)
from ._message import (
    HEARTBEAT as HEARTBEAT,
    PHOENIX_TOPIC as PHOENIX_TOPIC,
    PHX_CLOSE as PHX_CLOSE,
    PHX_ERROR as PHX_ERROR,
    PHX_JOIN as PHX_JOIN,
    PHX_LEAVE as PHX_LEAVE,
    PHX_REPLY as PHX_REPLY,
    RESERVED_EVENTS as RESERVED_EVENTS,
    Message as Message,
)
from ._presence import (
    OnJoin as OnJoin,
    OnLeave as OnLeave,
    PresenceChange as PresenceChange,
    PresenceEntry as PresenceEntry,
    PresenceJoin as PresenceJoin,
    PresenceLeave as PresenceLeave,
    PresenceState as PresenceState,
    PresenceSynced as PresenceSynced,
    js_keys as js_keys,
    list_presences as list_presences,
    sync_diff as sync_diff,
    sync_state as sync_state,
)
from ._presence_view import PresenceSync as PresenceSync
from ._public import publish as _publish
from ._readonly import ReadOnlyDict as ReadOnlyDict, ReadOnlyList as ReadOnlyList
from ._serializer import (
    V1_VSN as V1_VSN,
    V2_VSN as V2_VSN,
    Frame as Frame,
    Serializer as Serializer,
    V1JSONSerializer as V1JSONSerializer,
    V2JSONSerializer as V2JSONSerializer,
)
from ._url import (
    AUTH_TOKEN_PREFIX as AUTH_TOKEN_PREFIX,
    auth_token_subprotocols as auth_token_subprotocols,
    build_socket_url as build_socket_url,
    encode_params as encode_params,
    redact_url as redact_url,
)

_publish("trio_phoenix.proto", globals())
