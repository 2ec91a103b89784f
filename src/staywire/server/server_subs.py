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
"""

from __future__ import annotations

from typing import Any, Protocol

from staywire.brokers.base import Broker
from staywire.config import Config
from staywire.exceptions import BrokerUnavailable
from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import msg_envelope
from staywire.protocol.recovery import merge_live
from staywire.protocol.state import ConnState
from staywire.protocol.stream import Position, Publication
from staywire.protocol.state import ConnectionStateMachine
from staywire.server.hub import Subscriber
from staywire.server.membership import Membership
from staywire.server.presence import Present, Presence
from staywire.server.transport import text_frame

__all__ = ["RECOVERING", "Joined", "ServerSubs", "msg_frame"]

RECOVERING = object()  # a subscription's value while its recovery is in flight

Joined = dict[str, Position]  # channel -> the position it was joined at


class Conn(Subscriber, Present, Protocol):
    """What joining uses of a connection (``requests.Conn`` has it all)."""

    sm: ConnectionStateMachine
    subs: dict[str, Any]

    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None: ...
    def enqueue(self, frame: bytes) -> None: ...


def msg_frame(pub: Publication) -> bytes:
    return text_frame(msg_envelope(pub.channel, pub.epoch, pub.offset, pub.data))


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
            if len(conn.subs) >= cfg.max_subscriptions:
                refused.append((channel, ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                                "too many subscriptions"))
                continue
            opts = cfg.channel(channel)
            if (opts.max_subscribers is not None
                    and self.membership.count(channel) >= opts.max_subscribers):
                refused.append((channel, ErrorCode.CHANNEL_FULL,
                                "the channel has max_subscribers already"))
                continue
            if conn.recovering is None:
                conn.recovering = {}
            conn.recovering[channel] = []
            conn.subs[channel] = RECOVERING
            try:
                await self.membership.join(channel, conn)
                result = await self.broker.history(channel, None)
            except BrokerUnavailable:
                self.abort(conn, channel)
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
            buffered = recovering.pop(channel)
            for pub in merge_live(top.offset, top.epoch, buffered):
                conn.enqueue(msg_frame(pub))
            conn.subs[channel] = top
            self.presence.joined(channel, conn)
        if not conn.recovering:
            conn.recovering = None

    def abort(self, conn: Conn, channel: str) -> None:
        conn.subs.pop(channel, None)
        if conn.recovering is not None:
            conn.recovering.pop(channel, None)
            if not conn.recovering:
                conn.recovering = None
        self.membership.leave(channel, conn)
        self.presence.left(channel, conn, gone=False)


def positions(joined: Joined) -> list[dict[str, Any]]:
    """``welcome.server_subs``."""
    return [{"channel": c, "epoch": p.epoch, "offset": p.offset} for c, p in joined.items()]
