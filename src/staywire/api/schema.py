"""The server API's wire contract: one request and one reply struct per method.

The server decodes requests with these structs (unknown fields are refused), the
Python client decodes replies with them, and the OpenAPI description
(``staywire.server.openapi``, docs/openapi.json) is generated from them, so the
three cannot say different things. No I/O here.

Every method is ``POST /api/<method>`` with a JSON body; an error is
``{"error": {"code", "reason"}}`` with an ``ErrorCode`` of the WebSocket protocol.
Methods that ask every node (``channels``, ``info``, ``disconnect``, ``refresh``,
``subscribe``, ``unsubscribe``)
name in ``missing`` the nodes that did not answer within ``api_node_timeout``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from staywire.protocol.envelope import Channel, Key
from staywire.protocol.stream import Epoch, Offset

__all__ = [
    "METHODS",
    "BatchCommand",
    "BatchItem",
    "BatchReply",
    "BatchRequest",
    "BroadcastItem",
    "BroadcastReply",
    "BroadcastRequest",
    "ChannelCount",
    "ChannelsReply",
    "ChannelsRequest",
    "DisconnectReply",
    "DisconnectRequest",
    "Error",
    "ErrorReply",
    "HistoryPublication",
    "HistoryReply",
    "HistoryRequest",
    "InfoReply",
    "InfoRequest",
    "Method",
    "NodeInfo",
    "PublishReply",
    "PublishRequest",
    "RefreshReply",
    "RefreshRequest",
    "StreamPosition",
    "SubscribeNode",
    "SubscribeReply",
    "SubscribeRequest",
    "UnsubscribeNode",
    "UnsubscribeReply",
    "UnsubscribeRequest",
]

MAX_BROADCAST_CHANNELS = 1000
MAX_BATCH_COMMANDS = 100
MAX_CHANNELS_LIMIT = 1000
User = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# Application close codes only (docs/protocol.md): 4000-4499 reconnect, 4500-4999 do not.
AppCloseCode = Annotated[int, msgspec.Meta(ge=4000, le=4999)]


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Reply(msgspec.Struct, kw_only=True):
    pass


class Error(_Reply):
    code: str  # an ErrorCode value
    reason: str


class ErrorReply(_Reply):
    error: Error


# -- publish / broadcast


class PublishRequest(_Request):
    channel: Channel
    data: msgspec.Raw  # any JSON value, passed through as is
    key: Key | None = None  # idempotency key: a repeat within dedupe_window publishes nothing


class PublishReply(_Reply):
    epoch: str
    offset: int
    duplicate: bool = False


class BroadcastRequest(_Request):
    channels: Annotated[list[Channel], msgspec.Meta(min_length=1,
                                                    max_length=MAX_BROADCAST_CHANNELS)]
    data: msgspec.Raw
    key: Key | None = None  # applied per channel: each channel dedupes on its own


class BroadcastItem(_Reply, omit_defaults=True):
    """One channel's outcome: a position, or the error of that channel alone."""

    channel: str
    epoch: str | None = None
    offset: int | None = None
    duplicate: bool = False
    error: Error | None = None


class BroadcastReply(_Reply):
    results: list[BroadcastItem]  # in the order of the request's channels


# -- history


class StreamPosition(_Request):
    """``sub.since``'s bounds (``protocol.stream.Position``); a struct of its own so that
    the OpenAPI description names it in this API's terms."""

    epoch: Epoch
    offset: Offset


class HistoryRequest(_Request):
    channel: Channel
    since: StreamPosition | None = None  # without it: from the oldest (newest, reversed) entry
    limit: Annotated[int, msgspec.Meta(ge=0)] | None = None  # 0: the position only
    reverse: bool = False  # newest first; with since, the entries before it


class PresenceRequest(_Request):
    channel: Channel
    # At most this many members (default and cap: the channel's presence_max_members);
    # over it, the counts only, as a subscriber's presence request answers.
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None


class PresenceMember(_Reply):
    client: str
    user: str  # "" for an anonymous connection
    info: Any = None  # the connect proxy's data for the connection, when small


class PresenceReply(_Reply):
    clients: int
    users: int
    members: list[PresenceMember]
    stats_only: bool  # more clients than the limit: members is empty


class PresenceStatsRequest(_Request):
    channel: Channel


class PresenceStatsReply(_Reply):
    clients: int
    users: int


class HistoryPublication(_Reply, omit_defaults=True):
    offset: int
    data: Any  # JSON as published; binary data: its base64, with ``encoding``
    encoding: Literal["base64"] | None = None  # set on binary publications only
    chunk: Any = None  # a binary publication's chunk header (a piece of a transfer)


class HistoryReply(_Reply):
    epoch: str
    offset: int  # the stream's top
    publications: list[HistoryPublication]


# -- channels / info (every node)


class ChannelsRequest(_Request):
    # A glob (``*``, ``?``) with at least one literal character: "every channel" is refused.
    pattern: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHANNELS_LIMIT)] = 100


class ChannelCount(_Reply):
    channel: str
    subscribers: int  # on every node that answered


class ChannelsReply(_Reply):
    channels: list[ChannelCount]  # sorted by name, at most ``limit``
    truncated: bool  # more channels matched than ``limit``
    missing: list[str]


class InfoRequest(_Request):
    pass


class RecentClose(_Reply):
    """A slow-consumer (4008) or rate-limit (4029) close, for the admin page."""

    at: float  # Unix seconds
    code: int
    reason: str
    user: str  # "" for an anonymous connection
    client: str


class NodeInfo(_Reply):
    node: str
    version: str
    uptime: float  # seconds
    connections: int
    subscriptions: int  # connection-channel pairs on the node
    channels: int
    deliveries_per_second: float  # publications written to subscribers, last few seconds
    publications_per_second: float
    connects_per_second: float = 0.0  # connections accepted, last few seconds
    closes: dict[str, int] = {}  # connections closed since the node started, by close code
    recent_closes: list[RecentClose] = []  # the last 20 of 4008 and 4029, oldest first


class InfoReply(_Reply):
    nodes: list[NodeInfo]  # sorted by node id
    missing: list[str]


# -- a user's connections (every node)


class DisconnectRequest(_Request):
    user: User
    # One connection (the welcome's ``client``) instead of all.
    client: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    code: AppCloseCode | None = None  # default: 4010 with reconnect, 4510 without
    reason: Annotated[str, msgspec.Meta(max_length=123)] | None = None
    reconnect: bool | None = None  # must agree with code's range when both are given


class DisconnectReply(_Reply):
    disconnected: int  # connections closed on every node that answered
    code: int
    reconnect: bool  # what the clients do after this code
    missing: list[str]


class RefreshRequest(_Request):
    user: User
    expire_at: float | None = None  # Unix seconds; null: no expiry; past: closes with 4401


class RefreshReply(_Reply):
    refreshed: int
    missing: list[str]


class SubscribeRequest(_Request):
    user: User
    channel: Channel


class SubscribeNode(_Reply):
    node: str
    subscribed: int  # the user's connections that joined (or had the channel already)
    refused: dict[str, int]  # error code -> connections refused with it (channel_full...)


class SubscribeReply(_Reply):
    subscribed: int  # on every node that answered
    nodes: list[SubscribeNode]  # sorted by node id: the nodes that answered
    missing: list[str]


class UnsubscribeRequest(_Request):
    user: User
    channel: Channel


class UnsubscribeNode(_Reply):
    node: str
    unsubscribed: int


class UnsubscribeReply(_Reply):
    unsubscribed: int  # connections that had the channel and left it
    nodes: list[UnsubscribeNode]
    missing: list[str]


# -- batch


class BatchCommand(_Request):
    method: str
    params: dict[str, Any] = {}  # the method's request object


class BatchRequest(_Request):
    commands: Annotated[list[BatchCommand], msgspec.Meta(min_length=1,
                                                         max_length=MAX_BATCH_COMMANDS)]


class BatchItem(_Reply, omit_defaults=True):
    """A command's reply (``result``, the method's reply object) or its ``error``."""

    result: Any = None
    error: Error | None = None


class BatchReply(_Reply):
    replies: list[BatchItem]  # in the order of the commands, each run after the one before


class Method(msgspec.Struct, frozen=True):
    request: type[msgspec.Struct]
    reply: type[msgspec.Struct]
    summary: str


METHODS: dict[str, Method] = {
    "publish": Method(PublishRequest, PublishReply, "Publish one payload to a channel"),
    "broadcast": Method(BroadcastRequest, BroadcastReply,
                        "Publish one payload to many channels"),
    "history": Method(HistoryRequest, HistoryReply, "Read a channel's history"),
    "presence": Method(PresenceRequest, PresenceReply,
                       "The members of a presence channel, on every node"),
    "presence_stats": Method(PresenceStatsRequest, PresenceStatsReply,
                             "The client and user counts of a presence channel"),
    "channels": Method(ChannelsRequest, ChannelsReply,
                       "Active channels matching a pattern, with subscribers, on every node"),
    "info": Method(InfoRequest, InfoReply, "Every node: version, uptime, load"),
    "disconnect": Method(DisconnectRequest, DisconnectReply,
                         "Close a user's connections on every node"),
    "refresh": Method(RefreshRequest, RefreshReply,
                      "Set a user's session expiry on every node"),
    "subscribe": Method(SubscribeRequest, SubscribeReply,
                        "Join a user's connections on every node to a channel, server-side"),
    "unsubscribe": Method(UnsubscribeRequest, UnsubscribeReply,
                          "Take a user's connections on every node out of a channel"),
    "batch": Method(BatchRequest, BatchReply, "Several commands in one request, in order"),
}
