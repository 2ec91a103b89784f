"""The server API from Python: ``ApiClient`` (blocking) and ``AsyncApiClient`` (asyncio).

    from staywire.api import ApiClient
    api = ApiClient("http://127.0.0.1:9765", "the api_key")
    api.publish("room:1", {"text": "hi"})          # PublishReply(epoch, offset, duplicate)

Standard library only: neither client needs a dependency of its own (docs/api.md).
The replies are the structs of ``staywire.api.schema``, the same the server
decodes its requests with and its OpenAPI description is generated from.
"""

from __future__ import annotations

from staywire.api.aio import AsyncApiClient
from staywire.api.calls import Batch
from staywire.api.schema import (
    BatchReply,
    BroadcastItem,
    BroadcastReply,
    ChannelCount,
    ChannelsReply,
    DisconnectReply,
    HistoryPublication,
    HistoryReply,
    InfoReply,
    NodeInfo,
    PublishReply,
    RefreshReply,
    SubscribeReply,
    UnsubscribeReply,
)
from staywire.api.sync import ApiClient
from staywire.exceptions import ApiConnectionError, ApiError

__all__ = [
    "ApiClient",
    "ApiConnectionError",
    "ApiError",
    "AsyncApiClient",
    "Batch",
    "BatchReply",
    "BroadcastItem",
    "BroadcastReply",
    "ChannelCount",
    "ChannelsReply",
    "DisconnectReply",
    "HistoryPublication",
    "HistoryReply",
    "InfoReply",
    "NodeInfo",
    "PublishReply",
    "RefreshReply",
    "SubscribeReply",
    "UnsubscribeReply",
]
