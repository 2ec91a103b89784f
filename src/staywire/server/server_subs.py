"""Server-side subscriptions: the channels a connect answer subscribes a connection to.

The application's backend may name channels in its connect answer
(``subscriptions``, docs/proxy.md). The server subscribes the connection to each
before the welcome, as if the client had sent ``sub`` without ``since``, and the
welcome names them with the position each was joined at (``server_subs``). From
there each is an ordinary subscription of the connection: its ``msg``s, ``unsub``,
and recovery after a reconnect, which the client asks for from its own position
exactly as it repairs a gap (``unsub``, then ``sub`` with ``since``), since it is
the authority on what it delivered (docs/protocol.md, *Server-side subscriptions*).

Why joined before the welcome: a publication between the welcome and the join
would be missed at an offset the welcome already named. Joined first, the position
is exact; the publications that arrive meanwhile wait in ``conn.recovering`` (as
during a ``sub``'s recovery) and are sent right after the welcome by ``settle``.

The checks a ``sub`` makes that still make sense are kept: ``max_subscriptions``,
a channel's ``max_subscribers``, a broker that cannot be reached. A channel that
fails one is left out of the welcome and gets ``error {code, channel}`` (no
``id``: the server ended, here never started, that subscription). The grants are
implied: the backend named the channel.

The server API's ``subscribe``/``unsubscribe`` (docs/api.md) do the same on an open
connection (``join_open``, ``leave_open``): the connection is told with
``subscribed {channel, epoch, offset}`` (the position it was joined at, from which
its ``msg``s follow) or ``unsubscribed {channel}``, and the channel is added to (or
taken from) the identity's ``server_subs`` and ``api_subs``. ``api_subs`` is saved in
the session record, so a resumed session is subscribed again before its welcome
(``with_api_subs``) on whichever node it reconnects to.

Every subscription, a client's ``sub`` too (``requests.py``), is joined here, in the
same steps: ``refusal`` (the limits), ``hold`` (join with the live publications held
back, then read the history), ``go_live`` (merge what was held back), or ``abort``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from staywire.brokers.base import Broker, HistoryResult
from staywire.channel_options import ChannelOptions
from staywire.config import Config
from staywire.exceptions import BrokerUnavailable
from staywire.protocol.codes import ErrorCode
from staywire.protocol.recovery import merge_live
from staywire.protocol.state import ConnState
from staywire.protocol.stream import Position
from staywire.protocol.state import ConnectionStateMachine
from staywire.server.auth import Identity
from staywire.server.hub import Subscriber, msg_frame
from staywire.server.membership import Membership
from staywire.server.presence import Present, Presence

__all__ = ["RECOVERING", "Joined", "ServerSubs", "carry_over", "msg_frame", "with_api_subs"]

RECOVERING = object()  # a subscription's value while its recovery is in flight

Joined = dict[str, Position]  # channel -> the position it was joined at


class Conn(Subscriber, Present, Protocol):
    """What joining uses of a connection (``requests.Conn`` has it all)."""

    sm: ConnectionStateMachine
    subs: dict[str, Any]
    identity: Identity | None
    binary: bool  # protocol v2 (hub.msg_frame)

    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None: ...
    def enqueue(self, frame: bytes) -> None: ...
    def send(self, obj: dict[str, Any]) -> None: ...




class ServerSubs:
    __slots__ = ("config", "membership", "broker", "presence")

    def __init__(self, config: Config, membership: Membership, broker: Broker,
                 presence: Presence) -> None:
        self.presence = presence
        self.config = config
        self.membership = membership
        self.broker = broker

    async def join(self, conn: Conn, channels: tuple[str, ...]
                   ) -> tuple[Joined, list[tuple[str, ErrorCode, str]]]:
        """Subscribe ``conn`` to ``channels``: the positions joined at, and the refusals."""
        joined: Joined = {}
        refused: list[tuple[str, ErrorCode, str]] = []
        cfg = self.config
        for channel in channels:
            if conn.sm.state != ConnState.AUTHENTICATING:
                break  # closed meanwhile: detach() left what was joined
            if channel in conn.subs:
                continue
            refusal = self.refusal(conn, channel, cfg.channel(channel))
            if refusal is not None:
                refused.append((channel, *refusal))
                continue
            try:
                result = await self.hold(conn, channel, None)
            except BrokerUnavailable:
                refused.append((channel, ErrorCode.UNAVAILABLE, "broker unavailable"))
                continue
            joined[channel] = result.position
        return joined, refused

    def settle(self, conn: Conn, joined: Joined,
               refused: list[tuple[str, ErrorCode, str]]) -> None:
        """The welcome was sent: the refusals, then what was held back, then live."""
        for channel, code, reason in refused:
            conn.send_error(code, reason, channel=channel)
        for channel, top in joined.items():
            recovering = conn.recovering
            if recovering is None or channel not in recovering:
                continue  # closed meanwhile
            self.go_live(conn, channel, top)
        if not conn.recovering:
            conn.recovering = None

    async def join_open(self, conn: Conn, channel: str) -> tuple[ErrorCode, str] | None:
        """The server API's ``subscribe`` on one open connection: join ``channel``, say
        ``subscribed`` with the position joined at, then its ``msg``s. ``None``: joined
        (or had it already, and keeps it as a server-side subscription); else why not."""
        if channel in conn.subs:
            # Subscribed by the client already: the same server subscription goes on (the
            # client keeps its own position); it is now also the server's.
            try:
                top = (await self.broker.history(channel, None)).position
            except BrokerUnavailable:
                return ErrorCode.UNAVAILABLE, "broker unavailable"
            if conn.sm.state != ConnState.OPEN or channel not in conn.subs:
                return ErrorCode.NOT_SUBSCRIBED, "closed or unsubscribed meanwhile"
            _mark(conn, channel, True)
            conn.send(_subscribed(channel, top))
            return None
        refusal = self.refusal(conn, channel, self.config.channel(channel))
        if refusal is not None:
            return refusal
        # Joined first, then the top read, as at connect: what is published in between
        # waits in ``conn.recovering`` and follows ``subscribed`` in order.
        try:
            top = (await self.hold(conn, channel, None)).position
        except BrokerUnavailable:
            return ErrorCode.UNAVAILABLE, "broker unavailable"
        recovering = conn.recovering
        if conn.sm.state != ConnState.OPEN or recovering is None or channel not in recovering:
            return ErrorCode.NOT_SUBSCRIBED, "closed or unsubscribed meanwhile"
        _mark(conn, channel, True)
        conn.send(_subscribed(channel, top))
        self.go_live(conn, channel, top)
        return None

    def leave_open(self, conn: Conn, channel: str) -> bool:
        """The server API's ``unsubscribe`` on one connection: whether it had the channel
        (whoever subscribed it); if so it leaves it and is told ``unsubscribed``."""
        _mark(conn, channel, False)
        if channel not in conn.subs:
            return False
        self.abort(conn, channel)
        conn.send({"type": "unsubscribed", "channel": channel})
        return True

    # ------------------------------------------------------------------ joining, for all

    def refusal(self, conn: Conn, channel: str, opts: ChannelOptions
                ) -> tuple[ErrorCode, str] | None:
        """Why ``conn`` may not join ``channel`` now (``max_subscriptions``, the channel's
        ``max_subscribers``), or ``None``. ``opts``: the channel's options."""
        if len(conn.subs) >= self.config.max_subscriptions:
            return ErrorCode.TOO_MANY_SUBSCRIPTIONS, "too many subscriptions"
        if (opts.max_subscribers is not None
                and self.membership.count(channel) >= opts.max_subscribers):
            return ErrorCode.CHANNEL_FULL, "the channel has max_subscribers already"
        return None

    async def hold(self, conn: Conn, channel: str, since: Position | None) -> HistoryResult:
        """Join ``channel`` with its live publications held back, then read its history
        from ``since`` (``None``: only the top). Every subscription is joined this way (a
        client's ``sub``, the connect answer's, the server API's).

        Joined first, history read second: nothing published in between can fall through
        the crack; it waits in ``conn.recovering`` until ``go_live`` merges it by offset.
        If the broker cannot be reached, the channel is left again (``abort``) and
        ``BrokerUnavailable`` raised. The caller checks, after the await, that the channel
        is still held (``conn.recovering``): the connection may have closed or
        unsubscribed meanwhile."""
        if conn.recovering is None:
            conn.recovering = {}
        conn.recovering[channel] = []
        conn.subs[channel] = RECOVERING
        try:
            await self.membership.join(channel, conn)
            return await self.broker.history(channel, since)
        except BrokerUnavailable:
            self.abort(conn, channel)
            raise

    def go_live(self, conn: Conn, channel: str, top: Position) -> None:
        """After ``hold`` (and whatever the caller sent first: replay, ``ack``, welcome,
        ``subscribed``): what was held back after ``top``, then live; a presence join."""
        recovering = conn.recovering
        assert recovering is not None  # the caller checked it still holds ``channel``
        buffered = recovering.pop(channel)
        if not recovering:
            conn.recovering = None
        for pub in merge_live(top.offset, top.epoch, buffered):
            conn.enqueue(msg_frame(pub, conn.binary))
        conn.subs[channel] = top
        self.presence.joined(channel, conn)

    def abort(self, conn: Conn, channel: str) -> None:
        conn.subs.pop(channel, None)
        if conn.recovering is not None:
            conn.recovering.pop(channel, None)
            if not conn.recovering:
                conn.recovering = None
        self.membership.leave(channel, conn)
        self.presence.left(channel, conn, gone=False)


def _subscribed(channel: str, top: Position) -> dict[str, Any]:
    return {"type": "subscribed", "channel": channel, "epoch": top.epoch, "offset": top.offset}


def _mark(conn: Conn, channel: str, on: bool) -> None:
    """Add ``channel`` to (or take it from) the identity's server-made subscriptions."""
    ident = conn.identity
    if ident is None:
        return
    server = tuple(c for c in ident.server_subs if c != channel)
    api = tuple(c for c in ident.api_subs if c != channel)
    if on:
        server, api = server + (channel,), api + (channel,)
    conn.identity = dataclasses.replace(ident, server_subs=server, api_subs=api)


def with_api_subs(identity: Identity, api_subs: list[str]) -> Identity:
    """A resumed session's identity: the server API's channels are server-side again."""
    if not api_subs:
        return identity
    extra = tuple(c for c in dict.fromkeys(api_subs) if c not in identity.server_subs)
    return dataclasses.replace(identity, server_subs=identity.server_subs + extra,
                               api_subs=tuple(dict.fromkeys(api_subs)))


def carry_over(old: Identity | None, new: Identity) -> Identity:
    """An in-band token refresh keeps the channels the server subscribed (a token does not
    name them: they were granted by the connect answer or the server API)."""
    if old is None or not old.server_subs:
        return new
    return dataclasses.replace(new, server_subs=old.server_subs, api_subs=old.api_subs)


def positions(joined: Joined) -> list[dict[str, Any]]:
    """``welcome.server_subs``."""
    return [{"channel": c, "epoch": p.epoch, "offset": p.offset} for c, p in joined.items()]
