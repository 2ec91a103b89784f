"""This node's side of the cluster-wide API commands: info, channels, disconnect, refresh.

The control plane (``brokers/control.py``) brings a command here from whichever node's
API port took the request; ``NodeControl.execute`` runs it on this node's connections
and hub and answers JSON. One table of commands (``_COMMANDS``): the server-side
``subscribe``/``unsubscribe`` are two more entries, with their argument structs.

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
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import msgspec

from staywire import __version__
from staywire.api.schema import NodeInfo
from staywire.brokers.control import NodeFailed
from staywire.protocol.patterns import Glob
from staywire.protocol.state import ConnState
from staywire.server.auth import Identity
from staywire.server.metrics import Stats

__all__ = ["ChannelsArgs", "ChannelsResult", "DisconnectArgs", "NodeControl", "RefreshArgs",
           "UserResult"]

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
    """Publications and deliveries per second over the last few one-second samples."""

    __slots__ = ("_stats", "_hub", "_samples", "_clock")

    def __init__(self, stats: Stats, hub: HubView,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stats = stats
        self._hub = hub
        self._clock = clock
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=_RATE_WINDOW)
        self.sample()

    def sample(self) -> None:
        self._samples.append((self._clock(), self._hub.deliveries, self._stats.publications))

    def per_second(self) -> tuple[float, float]:
        """(deliveries, publications) per second since the oldest sample."""
        t0, d0, p0 = self._samples[0]
        elapsed = self._clock() - t0
        if elapsed <= 0:
            return 0.0, 0.0
        return ((self._hub.deliveries - d0) / elapsed,
                (self._stats.publications - p0) / elapsed)


class NodeControl:
    """Runs control commands on this node (the ``LocalNode`` of the control plane)."""

    def __init__(self, node_id: str, *, connections: Callable[[], Iterable[Managed]],
                 hub: HubView, stats: Stats) -> None:
        self._node_id = node_id
        self._connections = connections
        self._hub = hub
        self._started = time.monotonic()
        self.rates = Rates(stats, hub)
        self._sampler: asyncio.Task[None] | None = None
        self._commands: dict[str, tuple[type[Any], Callable[[Any], Awaitable[Any]]]] = {
            "info": (NoArgs, self._info),
            "channels": (ChannelsArgs, self._channels),
            "disconnect": (DisconnectArgs, self._disconnect),
            "refresh": (RefreshArgs, self._refresh),
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
        deliveries, publications = self.rates.per_second()
        return NodeInfo(
            node=self._node_id, version=__version__,
            uptime=round(time.monotonic() - self._started, 3),
            connections=sum(1 for _ in self._connections()),
            subscriptions=sum(len(subs) for subs in channels.values()),
            channels=len(channels),
            deliveries_per_second=round(deliveries, 3),
            publications_per_second=round(publications, 3))

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
