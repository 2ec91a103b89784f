"""The channels the application subscribes to, and the routing of their messages.

Several local ``Subscription``s of one channel share one server subscription and
one ``ChannelCursor`` (``protocol.positions``), which decides for every ``msg``
and ``sub`` ack whether to deliver, drop, or resubscribe; this module sends what
the cursor asks for and hands deliveries and ``Recovery`` items to the
subscriptions, in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from staywire.client import messages as m
from staywire.client.link import Link
from staywire.client.requests import Request, Requests
from staywire.client.subscription import Join, Leave, Message, Recovery, Subscription
from staywire.exceptions import ConnectionClosed, RequestError
from staywire.protocol.backoff import jittered
from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import CHANNEL_PATTERN
from staywire.protocol.positions import ChannelCursor, CursorState, Position, Verdict
from staywire.protocol.stream import ChannelPosition

__all__ = ["Channel", "Channels", "check_channel"]

log = logging.getLogger("staywire.client")

_CHANNEL = re.compile(CHANNEL_PATTERN)  # the server's, so a bad name fails here first
_TRANSIENT = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL})


@dataclass(slots=True)
class Channel:
    """One channel's cursor and the local subscriptions that share it."""

    cursor: ChannelCursor
    subs: list[Subscription] = field(default_factory=list)
    retries: int = 0  # transient sub errors in a row
    server_side: Subscription | None = None  # the one the server subscribed (welcome)


class Channels:
    """Every subscribed channel, outliving connections: resubscribed on each new one."""

    def __init__(
        self,
        *,
        requests: Requests,
        stats: dict[str, int],
        random: Callable[[], float],
        current_link: Callable[[], Link | None],
    ) -> None:
        self._requests = requests
        self._stats = stats
        self._random = random
        self._current_link = current_link  # the welcomed connection, if any
        self._channels: dict[str, Channel] = {}

    # -- the application's subscriptions ------------------------------------------------

    def attach(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.channel)
        if channel is None:
            channel = self._channels[sub.channel] = Channel(ChannelCursor(sub.channel))
        channel.subs.append(sub)
        link = self._current_link()
        if channel.cursor.state is CursorState.LIVE:
            sub._subscribed()
        elif channel.cursor.state is CursorState.IDLE and link is not None:
            self._send_sub(link, channel)

    def detach(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.channel)
        if channel is None or sub not in channel.subs:
            return
        channel.subs.remove(sub)
        if channel.server_side is sub:
            channel.server_side = None
        if channel.subs:
            return
        del self._channels[sub.channel]
        link = self._current_link()
        if link is not None and channel.cursor.state is not CursorState.IDLE:
            rid = self._requests.add(Request("unsub", channel))
            link.send_paced(m.encode_unsub(rid, sub.channel))

    def position(self, channel: str) -> Position | None:
        state = self._channels.get(channel)
        return None if state is None else state.cursor.position

    # -- connections come and go ----------------------------------------------------------

    def resubscribe(self, link: Link) -> None:
        """A new connection was welcomed: subscribe to every channel again (but those the
        server subscribed itself: ``server_subscribed`` did)."""
        for channel in self._channels.values():
            if channel.cursor.state is CursorState.IDLE:
                self._send_sub(link, channel)

    def server_subscribed(
        self, link: Link, subs: list[ChannelPosition], make: Callable[[str], Subscription]
    ) -> list[Subscription]:
        """The welcome's ``server_subs``: the channels the server subscribed this
        connection to. Each is recovered from the position delivered on the connection
        before, as a gap is (``unsub``, ``sub`` with ``since``); ``make`` builds the
        ``Subscription`` of a channel seen for the first time, which is returned. A
        channel the server no longer subscribes ends its server-side subscription."""
        named = {p.channel for p in subs}
        for name, old in list(self._channels.items()):
            sub = old.server_side
            if sub is not None and name not in named:
                old.server_side = None
                old.subs.remove(sub)
                sub._end()
                if not old.subs:
                    del self._channels[name]
        new: list[Subscription] = []
        for p in subs:
            channel = self._channels.get(p.channel)
            if channel is None:
                channel = self._channels[p.channel] = Channel(ChannelCursor(p.channel))
            if channel.server_side is None:
                channel.server_side = make(p.channel)
                channel.subs.append(channel.server_side)
                new.append(channel.server_side)
            since = channel.cursor.joined(p.epoch, p.offset)
            if since is not None:
                log.info("recovering %s (subscribed by the server) from %d", p.channel,
                         since.offset)
                self._send_resync(link, channel, since)
            else:
                for sub in channel.subs:
                    sub._subscribed()
        return new

    def server_joined(
        self, link: Link, p: ChannelPosition, make: Callable[[str], Subscription]
    ) -> Subscription | None:
        """``subscribed``: the server joined this open connection to a channel (the server
        API). A channel seen for the first time is live from ``p`` (its ``msg``s follow);
        one this client subscribes already goes on as it is, on the same server
        subscription. Returns the new server-side ``Subscription``, if one was made."""
        channel = self._channels.get(p.channel)
        if channel is None:
            channel = self._channels[p.channel] = Channel(ChannelCursor(p.channel))
        made = None
        if channel.server_side is None:
            made = channel.server_side = make(p.channel)
            channel.subs.append(made)
        state = channel.cursor.state
        if state is CursorState.IDLE:
            since = channel.cursor.joined(p.epoch, p.offset)
            if since is not None:
                self._send_resync(link, channel, since)
                return made
            state = channel.cursor.state
        if state is CursorState.LIVE and made is not None:
            made._subscribed()
        return made

    def server_left(self, name: str) -> list[Subscription]:
        """``unsubscribed``: the server took the connection out of the channel, so every
        local subscription of it ends (as iteration ending, not as an error)."""
        channel = self._channels.pop(name, None)
        if channel is None:
            return []
        for sub in channel.subs:
            sub._end()
        return channel.subs

    def connection_lost(self) -> None:
        for channel in self._channels.values():
            channel.cursor.connection_lost()

    def finish(self, error: ConnectionClosed | None) -> None:
        """The client is CLOSED: end every subscription, with ``error`` if there is one."""
        for channel in self._channels.values():
            for sub in channel.subs:
                if error is not None:
                    sub._fail(error)
                else:
                    sub._end()
        self._channels.clear()

    # -- inbound ----------------------------------------------------------------------

    def transfer_timeout(self, seconds: float) -> None:
        """The server's ``transfer_timeout`` (welcome.binary), for every subscription."""
        for channel in self._channels.values():
            for sub in channel.subs:
                sub._transfer_timeout(seconds)

    def on_msg(self, msg: m.Msg) -> None:
        channel = self._channels.get(msg.channel)
        if channel is None:
            return
        previous = channel.cursor.position
        verdict = channel.cursor.on_message(msg.epoch, msg.offset)
        if not verdict.deliver:
            if verdict is Verdict.DUPLICATE:
                self._stats["duplicates_dropped"] += 1
            elif verdict is Verdict.RESYNC:
                self._stats["gaps"] += 1
                log.warning(
                    "offsets skipped before %d on %s: resubscribing from %d",
                    msg.offset,
                    msg.channel,
                    previous.offset if previous else 0,
                )
                link = self._current_link()
                if link is not None:
                    self._send_resync(link, channel, channel.cursor.position)
            return
        if verdict is Verdict.NEW_EPOCH:
            # The stream was recreated under a live subscription: tell, then deliver.
            self._tell(
                channel, Recovery(msg.channel, False, True, previous, channel.cursor.position)
            )
        elif verdict is Verdict.GAP:
            self._stats["gaps"] += 1
            log.warning("gap before offset %d on %s", msg.offset, msg.channel)
        if msg.chunk is not None and not isinstance(msg.chunk, dict):
            # A piece of a transfer (protocol v2): into each subscription's inbox.
            for sub in channel.subs:
                sub._chunk(msg.chunk, msg.data)
            return
        item = Message(msg.channel, msg.epoch, msg.offset, msg.data, msg.chunk)
        for sub in channel.subs:
            sub._push(item)

    def on_presence(self, msg: m.Join | m.Leave) -> None:
        """A ``join`` or ``leave`` of a channel with ``join_leave``: to its subscriptions,
        in the order it arrived among the channel's messages."""
        channel = self._channels.get(msg.channel)
        if channel is None:
            return
        who = msg.member
        item: Join | Leave = (Join if isinstance(msg, m.Join) else Leave)(
            msg.channel, who.user, who.client, who.info)
        for sub in channel.subs:
            sub._push(item)

    def on_ack(self, link: Link, request: Request[Channel], ack: m.Ack) -> None:
        """The ack of a ``sub``, ``unsub`` or resync request of ``request.channel``."""
        channel = request.channel
        if channel is None:
            return
        if self._channels.get(channel.cursor.channel) is not channel:
            return  # the application left this channel meanwhile
        if request.kind == "resync":
            channel.cursor.on_unsubscribed()
            return
        if request.kind != "sub" or ack.epoch is None or ack.offset is None:
            return
        outcome = channel.cursor.on_subscribed(ack.epoch, ack.offset, bool(ack.recovered))
        if outcome.unrecovered:
            self._tell(
                channel,
                Recovery(
                    channel.cursor.channel,
                    False,
                    outcome.epoch_changed,
                    outcome.previous,
                    Position(ack.epoch, ack.offset),
                ),
            )
        if outcome.missing:
            self._stats["missing"] += outcome.missing
            log.warning(
                "server acked %s as recovered but %d offsets never arrived",
                channel.cursor.channel,
                outcome.missing,
            )
        if outcome.resync_from is not None:
            self._send_resync(link, channel, outcome.resync_from)
        if outcome.live:
            channel.retries = 0
            for sub in channel.subs:
                sub._subscribed()

    def on_error(self, link: Link, request: Request[Channel], err: m.Error) -> None:
        """The error reply to a request of a channel (only a ``sub`` refusal matters)."""
        channel = request.channel
        if channel is None or request.kind != "sub":
            return
        if self._channels.get(channel.cursor.channel) is not channel:
            return
        if err.code == ErrorCode.ALREADY_SUBSCRIBED:
            since = channel.cursor.begin_resync()
            self._send_resync(link, channel, since)
        elif err.code in _TRANSIENT and channel.retries < 5:
            channel.retries += 1
            channel.cursor.connection_lost()
            delay = jittered(0.5 * channel.retries, self._random)
            asyncio.get_running_loop().call_later(delay, self._retry_sub, link, channel)
        else:
            del self._channels[channel.cursor.channel]
            for sub in channel.subs:
                sub._fail(RequestError(err.code, err.reason))

    def revoked(self, name: str, err: m.Error) -> None:
        """The server ended the channel's subscription: every local one ends with ``err``."""
        channel = self._channels.pop(name, None)
        if channel is None:
            # Say, a server-side subscription the server could not make (channel_full).
            log.warning("the server did not subscribe %s: %s %s", name, err.code, err.reason)
            return
        log.warning("subscription to %s ended by the server: %s", name, err.reason)
        for sub in channel.subs:
            sub._fail(RequestError(err.code, err.reason))

    def _retry_sub(self, link: Link, channel: Channel) -> None:
        if (
            link is self._current_link()
            and self._channels.get(channel.cursor.channel) is channel
            and channel.cursor.state is CursorState.IDLE
        ):
            self._send_sub(link, channel)

    def _tell(self, channel: Channel, event: Recovery) -> None:
        for sub in channel.subs:
            sub._push(event)

    # -- outbound ---------------------------------------------------------------------

    def _send_sub(self, link: Link, channel: Channel) -> None:
        since = channel.cursor.subscribe()
        rid = self._requests.add(Request("sub", channel))
        link.send_paced(m.encode_sub(rid, channel.cursor.channel, None if since is None else _pos(since)))

    def _send_resync(self, link: Link, channel: Channel, since: Position | None) -> None:
        """``unsub`` then ``sub`` with ``since``; the cursor drops msgs until the unsub ack."""
        name = channel.cursor.channel
        rid = self._requests.add(Request("resync", channel))
        link.send_paced(m.encode_unsub(rid, name))
        rid = self._requests.add(Request("sub", channel))
        link.send_paced(m.encode_sub(rid, name, None if since is None else _pos(since)))


def _pos(position: Position) -> tuple[str, int]:
    return position.epoch, position.offset


def check_channel(channel: str) -> None:
    if not _CHANNEL.match(channel):
        raise ValueError(f"invalid channel name: {channel!r}")
