"""This node's side of the cluster-wide API commands: info, channels, disconnect, refresh,
subscribe and unsubscribe.

The control plane (``brokers/control.py``) brings a command here from whichever node's
API port took the request; ``NodeControl.execute`` runs it on this node's connections
and hub and answers JSON. One table of commands (``self._commands``), each with its
argument struct.

A user's connections are found by a pass over the node's connections: the API is for
administrators, not for every request (a pass over 100,000 connections costs a few
milliseconds; docs/api.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from staywire import __version__
from staywire.api.schema import NodeInfo, RecentClose
from staywire.brokers.control import NodeFailed
from staywire.protocol.patterns import Glob
from staywire.protocol.state import ConnState
from staywire.server.auth import Identity
from staywire.server.metrics import Stats

__all__ = ["ChannelsArgs", "ChannelsResult", "DisconnectArgs", "NodeControl", "RefreshArgs",
           "SubscribeResult", "UserChannelArgs", "UserResult"]

# The channel names matched between two yields to the event loop: a pattern over a
# node with a million channels must not stall its connections for the whole pass.
_SCAN_CHUNK = 4096
_RATE_WINDOW = 5  # samples, one a second: the rates are over the last five seconds


class NoArgs(msgspec.Struct, frozen=True):
    pass


class ChannelsArgs(msgspec.Struct, frozen=True):
    pattern: str
    limit: int


class ChannelsResult(msgspec.Struct, frozen=True):
    channels: list[tuple[str, int]]  # the first ``limit`` matching names, sorted
    truncated: bool


class DisconnectArgs(msgspec.Struct, frozen=True):
    user: str
    code: int
    reason: str
    client: str | None = None


class RefreshArgs(msgspec.Struct, frozen=True):
    user: str
    expire_at: float | None


class UserResult(msgspec.Struct, frozen=True):
    count: int  # the user's connections the command changed on this node


class UserChannelArgs(msgspec.Struct, frozen=True):
    user: str
    channel: str


class SubscribeResult(msgspec.Struct, frozen=True):
    count: int  # the user's connections that joined (or had the channel already)
    refused: dict[str, int] = {}  # ErrorCode value -> connections refused with it


class UserSubscriber(Protocol):
    """Joins and leaves channels on a user's connections (``user_subs.UserSubs``)."""

    async def subscribe(self, conns: Sequence[Any], channel: str) -> list[str | None]: ...
    async def unsubscribe(self, conns: Sequence[Any], channel: str) -> int: ...


class Managed(Protocol):
    """What the commands touch of a connection."""

    id: str
    identity: Identity | None

    @property
    def sm(self) -> Any: ...

    def close(self, code: int, reason: str | None = None) -> None: ...


class HubView(Protocol):
    channels: dict[str, Any]  # channel -> its local subscribers
    deliveries: int


class Rates:
    """Deliveries, publications and connects per second over the last few one-second
    samples."""

    __slots__ = ("_stats", "_hub", "_samples", "_clock")

    def __init__(self, stats: Stats, hub: HubView,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stats = stats
        self._hub = hub
        self._clock = clock
        self._samples: deque[tuple[float, int, int, int]] = deque(maxlen=_RATE_WINDOW)
        self.sample()

    def _now(self) -> tuple[int, int, int]:
        s = self._stats
        return self._hub.deliveries, s.publications, s.connections_opened

    def sample(self) -> None:
        self._samples.append((self._clock(), *self._now()))

    def per_second(self) -> tuple[float, float, float]:
        """(deliveries, publications, connects) per second since the oldest sample."""
        t0, *then = self._samples[0]
        elapsed = self._clock() - t0
        if elapsed <= 0:
            return 0.0, 0.0, 0.0
        d, p, c = (now - before for now, before in zip(self._now(), then, strict=True))
        return d / elapsed, p / elapsed, c / elapsed


class NodeControl:
    """Runs control commands on this node (the ``LocalNode`` of the control plane)."""

    def __init__(self, node_id: str, *, connections: Callable[[], Iterable[Managed]],
                 hub: HubView, stats: Stats, subscriber: UserSubscriber | None = None) -> None:
        self._node_id = node_id
        self._subscriber = subscriber
        self._connections = connections
        self._hub = hub
        self._started = time.monotonic()
        self._stats = stats
        self.rates = Rates(stats, hub)
        self._sampler: asyncio.Task[None] | None = None
        self._commands: dict[str, tuple[type[Any], Callable[[Any], Awaitable[Any]]]] = {
            "info": (NoArgs, self._info),
            "channels": (ChannelsArgs, self._channels),
            "disconnect": (DisconnectArgs, self._disconnect),
            "refresh": (RefreshArgs, self._refresh),
            "subscribe": (UserChannelArgs, self._subscribe),
            "unsubscribe": (UserChannelArgs, self._unsubscribe),
        }
        self._encode = msgspec.json.Encoder().encode

    @property
    def node_id(self) -> str:
        return self._node_id

    def start(self) -> None:
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.rates.sample()

    async def execute(self, command: str, args: bytes) -> bytes:
        entry = self._commands.get(command)
        if entry is None:
            raise NodeFailed(f"unknown command {command!r}")  # a node of another version
        kind, handler = entry
        try:
            decoded = msgspec.json.decode(args or b"{}", type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise NodeFailed(f"bad arguments for {command}: {exc}") from None
        return self._encode(await handler(decoded))

    # -- the commands -----------------------------------------------------------------

    async def _info(self, _: Any) -> NodeInfo:
        channels = self._hub.channels
        deliveries, publications, connects = self.rates.per_second()
        stats = self._stats
        return NodeInfo(
            node=self._node_id, version=__version__,
            uptime=round(time.monotonic() - self._started, 3),
            connections=sum(1 for _ in self._connections()),
            subscriptions=sum(len(subs) for subs in channels.values()),
            channels=len(channels),
            deliveries_per_second=round(deliveries, 3),
            publications_per_second=round(publications, 3),
            connects_per_second=round(connects, 3),
            closes={str(code): n for code, n in sorted(stats.closes.items())},
            recent_closes=[RecentClose(at=round(at, 3), code=code, reason=reason, user=user,
                                       client=client)
                           for at, code, reason, user, client in stats.recent_closes])

    async def _channels(self, args: ChannelsArgs) -> ChannelsResult:
        glob = Glob(args.pattern)
        channels = self._hub.channels
        names = list(channels)  # a snapshot: the dict changes while the pass yields
        found: list[str] = []
        for start in range(0, len(names), _SCAN_CHUNK):
            found += [n for n in names[start:start + _SCAN_CHUNK] if glob.matches(n)]
            if start + _SCAN_CHUNK < len(names):
                await asyncio.sleep(0)
        first = heapq.nsmallest(args.limit + 1, found)
        counted = [(n, len(channels.get(n, ()))) for n in first[:args.limit]]
        return ChannelsResult([(n, c) for n, c in counted if c], len(first) > args.limit)

    def _users(self, user: str, client: str | None = None) -> list[Managed]:
        return [c for c in list(self._connections())
                if c.identity is not None and c.identity.user == user
                and (client is None or c.id == client) and c.sm.state <= ConnState.OPEN]

    async def _disconnect(self, args: DisconnectArgs) -> UserResult:
        conns = self._users(args.user, args.client)
        for conn in conns:
            conn.close(args.code, args.reason)
        return UserResult(len(conns))

    async def _refresh(self, args: RefreshArgs) -> UserResult:
        conns = self._users(args.user)
        for conn in conns:
            ident = conn.identity
            assert ident is not None
            # The sweeper reads the new expiry at its next pass: past it, 4401 (or, for a
            # session the connect proxy granted, a refresh at the backend).
            conn.identity = dataclasses.replace(ident, expires_at=args.expire_at)
        return UserResult(len(conns))

    def _user_subscriber(self) -> UserSubscriber:
        if self._subscriber is None:
            raise NodeFailed("this node takes no subscribe commands")
        return self._subscriber

    def _open_users(self, user: str) -> list[Managed]:
        # Welcomed only: nothing may reach a connection before its welcome, and one being
        # welcomed now joins what its session record names (docs/api.md, subscribe).
        return [c for c in self._users(user) if c.sm.state == ConnState.OPEN]

    async def _subscribe(self, args: UserChannelArgs) -> SubscribeResult:
        conns = self._open_users(args.user)
        outcomes = await self._user_subscriber().subscribe(conns, args.channel)
        refused: dict[str, int] = {}
        for code in outcomes:
            if code is not None:
                refused[code] = refused.get(code, 0) + 1
        return SubscribeResult(sum(1 for code in outcomes if code is None), refused)

    async def _unsubscribe(self, args: UserChannelArgs) -> UserResult:
        conns = self._open_users(args.user)
        return UserResult(await self._user_subscriber().unsubscribe(conns, args.channel))
