"""What each server API method does, on bytes in and bytes out (the HTTP layer is api.py).

Requests are decoded with the structs of ``staywire.api.schema`` (unknown fields are
``bad_request``); every failure is an ``ApiFailure`` carrying an ``ErrorCode`` of the
WebSocket protocol and an HTTP status. Methods about the whole cluster go through the
control plane, which waits at most ``api_node_timeout`` for the other nodes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from staywire.api import schema as s
from staywire.brokers.base import Broker, PublishResult
from staywire.brokers.control import ControlPlane, FanOut
from staywire.brokers.presence import PresenceSnapshot, PresenceStore
from staywire.channel_options import ChannelOptions
from staywire.exceptions import BrokerUnavailable
from staywire.protocol.envelope import Channel, Key
from staywire.protocol.codes import CloseCode, ErrorCode, Reconnect, reconnect_policy
from staywire.protocol.patterns import Glob
from staywire.protocol.stream import Position, Publication
from staywire.server.control import (
    ChannelsArgs,
    ChannelsResult,
    DisconnectArgs,
    RefreshArgs,
    SubscribeResult,
    UserChannelArgs,
    UserResult,
)

__all__ = ["ApiFailure", "ApiMethods"]


class _BytesArgs(msgspec.Struct, forbid_unknown_fields=True):
    """The channel and key of a binary publish, checked as ``PublishRequest`` checks them."""

    channel: Channel
    key: Key | None = None


_bytes_args = msgspec.json.Decoder(_BytesArgs)


def _history_item(p: Publication) -> s.HistoryPublication:
    if not p.binary:
        return s.HistoryPublication(offset=p.offset, data=msgspec.Raw(p.data))
    return s.HistoryPublication(offset=p.offset, data=base64.b64encode(p.data).decode(),
                                encoding="base64",
                                chunk=None if p.chunk is None else msgspec.Raw(p.chunk))

_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNKNOWN_METHOD: 404,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
}


class ApiFailure(Exception):
    def __init__(self, code: ErrorCode, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status or _STATUS.get(code, 400)

    def body(self) -> bytes:
        return msgspec.json.encode(s.ErrorReply(s.Error(self.code.value, self.reason)))

    def error(self) -> s.Error:
        return s.Error(self.code.value, self.reason)


class Publish(Protocol):
    async def __call__(self, channel: str, data: bytes, *, key: str | None = None,
                       binary: bool = False) -> PublishResult: ...


class ApiMethods:
    def __init__(self, *, publish: Publish, broker: Broker, control: ControlPlane,
                 max_data_size: int, node_timeout: float,
                 presence: PresenceStore | None = None,
                 channel_options: Callable[[str], ChannelOptions] | None = None) -> None:
        self._publish = publish
        self._broker = broker
        self._presence = presence
        self._options = channel_options
        self._control = control
        self._max_data_size = max_data_size
        self._timeout = node_timeout
        self._handlers: dict[str, Callable[[Any], Awaitable[msgspec.Struct]]] = {
            "publish": self.publish, "broadcast": self.broadcast, "history": self.history,
            "presence": self.presence, "presence_stats": self.presence_stats,
            "channels": self.channels, "info": self.info, "disconnect": self.disconnect,
            "refresh": self.refresh, "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe, "batch": self.batch,
        }
        assert self._handlers.keys() == s.METHODS.keys(), "a method without a handler"
        self._decoders = {name: msgspec.json.Decoder(m.request) for name, m in s.METHODS.items()}
        self._encode = msgspec.json.Encoder().encode

    @property
    def names(self) -> list[str]:
        return list(self._handlers)

    async def call(self, method: str, body: bytes) -> bytes:
        """The method's reply as JSON; raises ``ApiFailure``."""
        return self._encode(await self._run(method, body))

    async def _run(self, method: str, body: bytes) -> msgspec.Struct:
        handler = self._handlers.get(method)
        if handler is None:
            raise ApiFailure(ErrorCode.UNKNOWN_METHOD, f"no method {method[:64]!r}; methods: "
                             + ", ".join(self._handlers))
        try:
            request = self._decoders[method].decode(body.strip() or b"{}")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiFailure(ErrorCode.BAD_REQUEST, f"{method}: {exc}") from None
        return await handler(request)

    # -- publishing ---------------------------------------------------------------------

    async def _publish_one(self, channel: str, data: msgspec.Raw | bytes, key: str | None,
                           binary: bool = False) -> PublishResult:
        if len(data) > self._max_data_size:
            raise ApiFailure(ErrorCode.BAD_REQUEST,
                             f"data is {len(data)} bytes, over max_data_size", 413)
        try:
            return await self._publish(channel, bytes(data), key=key, binary=binary)
        except BrokerUnavailable:
            raise ApiFailure(ErrorCode.UNAVAILABLE,
                             "broker unavailable; nothing was published") from None
        except ValueError as exc:
            raise ApiFailure(ErrorCode.BAD_REQUEST, str(exc)) from None

    async def publish(self, req: s.PublishRequest) -> s.PublishReply:
        r = await self._publish_one(req.channel, req.data, req.key)
        return s.PublishReply(epoch=r.epoch, offset=r.offset, duplicate=r.duplicate)

    async def publish_bytes(self, channel: str | None, data: bytes, key: str | None) -> bytes:
        """``POST /api/publish`` with ``application/octet-stream``: the body is the data,
        the channel and key come from the query or headers (api.py). The reply is the
        JSON one of ``publish``; raises ``ApiFailure``."""
        if channel is None:
            raise ApiFailure(ErrorCode.BAD_REQUEST, "publish: binary data needs the channel in "
                             "the query (?channel=) or the Staywire-Channel header")
        try:
            req = _bytes_args.decode(msgspec.json.encode({"channel": channel, "key": key}))
        except msgspec.ValidationError as exc:
            raise ApiFailure(ErrorCode.BAD_REQUEST, f"publish: {exc}") from None
        r = await self._publish_one(req.channel, data, req.key, binary=True)
        return self._encode(s.PublishReply(epoch=r.epoch, offset=r.offset,
                                           duplicate=r.duplicate))

    async def broadcast(self, req: s.BroadcastRequest) -> s.BroadcastReply:
        if len(req.data) > self._max_data_size:  # one answer, not one per channel
            raise ApiFailure(ErrorCode.BAD_REQUEST,
                             f"data is {len(req.data)} bytes, over max_data_size", 413)

        async def one(channel: str) -> s.BroadcastItem:
            try:
                r = await self._publish_one(channel, req.data, req.key)
            except ApiFailure as exc:
                return s.BroadcastItem(channel=channel, error=exc.error())
            return s.BroadcastItem(channel=channel, epoch=r.epoch, offset=r.offset,
                                   duplicate=r.duplicate)

        return s.BroadcastReply(results=list(await asyncio.gather(
            *(one(c) for c in req.channels))))

    # -- history ------------------------------------------------------------------------

    async def history(self, req: s.HistoryRequest) -> s.HistoryReply:
        try:
            if req.since is not None:
                h = await self._broker.history(req.channel, Position(req.since.epoch,
                                                                     req.since.offset),
                                               limit=req.limit, reverse=req.reverse)
            else:
                # From the oldest entry (reverse: from above the newest) of the current
                # epoch. Asked again once if the epoch changed in between (the stream was
                # lost meanwhile): the second answer is of the new stream.
                for _ in range(2):
                    top = (await self._broker.history(req.channel, None)).position
                    start = Position(top.epoch, top.offset + 1 if req.reverse else 0)
                    h = await self._broker.history(req.channel, start, limit=req.limit,
                                                   reverse=req.reverse)
                    if h.position.epoch == top.epoch:
                        break
        except BrokerUnavailable:
            raise ApiFailure(ErrorCode.UNAVAILABLE, "broker unavailable") from None
        return s.HistoryReply(
            epoch=h.position.epoch, offset=h.position.offset,
            publications=[_history_item(p) for p in h.publications])

    async def presence(self, req: s.PresenceRequest) -> s.PresenceReply:
        store, bound = self._presence_of(req.channel)
        limit = min(req.limit or bound, bound)
        snap = await self._snapshot(store, req.channel, limit)
        members = [] if snap.members is None else [
            msgspec.json.decode(m, type=s.PresenceMember) for m in snap.members]
        return s.PresenceReply(clients=snap.clients, users=snap.users, members=members,
                               stats_only=snap.members is None)

    async def presence_stats(self, req: s.PresenceStatsRequest) -> s.PresenceStatsReply:
        store, _ = self._presence_of(req.channel)
        snap = await self._snapshot(store, req.channel, 0)
        return s.PresenceStatsReply(clients=snap.clients, users=snap.users)

    def _presence_of(self, channel: str) -> tuple[PresenceStore, int]:
        """The store and the members bound of a presence channel; presence_disabled else."""
        opts = self._options(channel) if self._options is not None else None
        if self._presence is None or opts is None or not opts.presence:
            raise ApiFailure(ErrorCode.PRESENCE_DISABLED,
                             f"presence is off on {channel!r} (channel options)")
        return self._presence, opts.presence_max_members

    @staticmethod
    async def _snapshot(store: PresenceStore, channel: str, limit: int) -> PresenceSnapshot:
        # The store holds every node's members (in Redis with a Redis broker): one read,
        # bounded by ``limit``, never a scan of the broker.
        try:
            return await store.snapshot(channel, limit)
        except BrokerUnavailable:
            raise ApiFailure(ErrorCode.UNAVAILABLE, "presence store unavailable") from None

    # -- every node -----------------------------------------------------------------------

    async def _everywhere(self, command: str, args: msgspec.Struct) -> FanOut:
        try:
            return await self._control.run(command, msgspec.json.encode(args), self._timeout)
        except BrokerUnavailable:
            raise ApiFailure(ErrorCode.UNAVAILABLE,
                             "broker unavailable: no other node can be reached") from None

    async def channels(self, req: s.ChannelsRequest) -> s.ChannelsReply:
        glob = Glob(req.pattern)
        if glob.literal == 0:
            raise ApiFailure(ErrorCode.BAD_REQUEST, f"pattern {req.pattern!r} matches every "
                             "channel: give at least one literal character")
        out = await self._everywhere("channels", ChannelsArgs(req.pattern, req.limit))
        counts: dict[str, int] = {}
        truncated = False
        for raw in out.results.values():
            part = msgspec.json.decode(raw, type=ChannelsResult)
            truncated |= part.truncated
            for name, n in part.channels:
                counts[name] = counts.get(name, 0) + n
        # Each node sent its first ``limit`` names: the first ``limit`` of their union are
        # exactly the cluster's first ``limit``, with every node's count of them.
        names = sorted(counts)
        truncated |= len(names) > req.limit
        return s.ChannelsReply(
            channels=[s.ChannelCount(channel=n, subscribers=counts[n])
                      for n in names[:req.limit]],
            truncated=truncated, missing=out.missing)

    async def info(self, req: s.InfoRequest) -> s.InfoReply:
        out = await self._everywhere("info", req)
        nodes = [msgspec.json.decode(raw, type=s.NodeInfo) for raw in out.results.values()]
        return s.InfoReply(nodes=sorted(nodes, key=lambda n: n.node), missing=out.missing)

    async def disconnect(self, req: s.DisconnectRequest) -> s.DisconnectReply:
        if req.code is None:
            code = int(CloseCode.FORCE_RECONNECT if req.reconnect else CloseCode.FORCE_DISCONNECT)
        else:
            code = req.code
        reconnects = reconnect_policy(code) is not Reconnect.NEVER
        if req.reconnect is not None and req.reconnect != reconnects:
            raise ApiFailure(ErrorCode.BAD_REQUEST, (
                f"code {code} means {'reconnect' if reconnects else 'do not reconnect'}, "
                f"but reconnect is {str(req.reconnect).lower()}: 4000-4499 reconnect, "
                "4500-4999 do not"))
        reason = req.reason
        if reason is None:
            try:
                reason = CloseCode(code).reason
            except ValueError:
                reason = ""
        if len(reason.encode()) > 123:  # RFC 6455 5.5: a control frame's payload <= 125
            raise ApiFailure(ErrorCode.BAD_REQUEST, "reason is over 123 bytes of UTF-8")
        out = await self._everywhere("disconnect",
                                     DisconnectArgs(req.user, code, reason, req.client))
        return s.DisconnectReply(disconnected=_count(out), code=code, reconnect=reconnects,
                                 missing=out.missing)

    async def refresh(self, req: s.RefreshRequest) -> s.RefreshReply:
        out = await self._everywhere("refresh", RefreshArgs(req.user, req.expire_at))
        return s.RefreshReply(refreshed=_count(out), missing=out.missing)

    async def subscribe(self, req: s.SubscribeRequest) -> s.SubscribeReply:
        out = await self._everywhere("subscribe", UserChannelArgs(req.user, req.channel))
        nodes = []
        for node, raw in sorted(out.results.items()):
            part = msgspec.json.decode(raw, type=SubscribeResult)
            nodes.append(s.SubscribeNode(node=node, subscribed=part.count,
                                         refused=dict(part.refused)))
        return s.SubscribeReply(subscribed=sum(n.subscribed for n in nodes), nodes=nodes,
                                missing=out.missing)

    async def unsubscribe(self, req: s.UnsubscribeRequest) -> s.UnsubscribeReply:
        out = await self._everywhere("unsubscribe", UserChannelArgs(req.user, req.channel))
        nodes = [s.UnsubscribeNode(node=node,
                                   unsubscribed=msgspec.json.decode(raw, type=UserResult).count)
                 for node, raw in sorted(out.results.items())]
        return s.UnsubscribeReply(unsubscribed=sum(n.unsubscribed for n in nodes), nodes=nodes,
                                  missing=out.missing)

    # -- batch ----------------------------------------------------------------------------

    async def batch(self, req: s.BatchRequest) -> s.BatchReply:
        replies = []
        for command in req.commands:
            try:
                if command.method == "batch":
                    raise ApiFailure(ErrorCode.BAD_REQUEST, "a batch cannot hold a batch")
                result = await self._run(command.method, msgspec.json.encode(command.params))
            except ApiFailure as exc:
                replies.append(s.BatchItem(error=exc.error()))
            else:
                replies.append(s.BatchItem(result=result))
        return s.BatchReply(replies=replies)


def _count(out: FanOut) -> int:
    total = 0
    for raw in out.results.values():
        total += msgspec.json.decode(raw, type=UserResult).count
    return total
