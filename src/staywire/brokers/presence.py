"""Presence storage: who is subscribed to a channel, counted per client and per user.

A ``PresenceStore`` holds the members of every channel with the ``presence``
option, as all nodes see them. ``MemoryPresence`` (below) keeps them in this
process, for one node; ``RedisPresence`` (``presence_redis.py``) keeps them in
Redis, shared by every node, with each node's members removed when that node stops
refreshing its heartbeat (``kill -9``).

A member is one client (connection) of one user. Members are counted by their
``key``, which is the user for an authenticated connection: one user on three
connections (or tabs on three browsers) is one user with three clients. The store
says when a user's *first* client joins a channel and when its *last* client
leaves, as ``PresenceEvent``s; the server turns them into ``join`` and ``leave``
messages (server/presence.py, which also holds the grace period). ``key`` never
leaves the server: it may name a session.

Every method may raise ``BrokerUnavailable``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

__all__ = ["Member", "MemoryPresence", "PresenceEvent", "PresenceHandler", "PresenceSnapshot",
           "PresenceStore", "member_json"]


@dataclass(frozen=True, slots=True)
class Member:
    """One client of one user in one channel.

    ``json`` is the member as the wire shows it (``{"client", "user", "info"?}``),
    encoded once when the client joins and spliced into replies and events as is."""

    client: str
    key: str  # what users are counted by: the user, or a session for anonymous clients
    json: bytes


def member_json(client: str, user: str, info: bytes | None) -> bytes:
    """The member's wire form; ``info`` is JSON the connection carries (small, or None)."""
    fields: dict[str, object] = {"client": client, "user": user}
    if info is not None:
        fields["info"] = msgspec.Raw(info)
    return msgspec.json.encode(fields)


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A user's first client joined (``join``) or its last one left (``leave``).

    ``clients`` is the channel's number of clients after the change: the server sends
    no events on a channel over its ``presence_max_members``."""

    channel: str
    kind: Literal["join", "leave"]
    member: bytes  # the member's wire form (Member.json)
    clients: int


PresenceHandler = Callable[[PresenceEvent], None]


@dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    """The counts of a channel, and its members unless there are more than asked for."""

    clients: int
    users: int
    members: list[bytes] | None  # None: over the limit, counts only


class PresenceStore(abc.ABC):
    @abc.abstractmethod
    async def start(self, on_event: PresenceHandler) -> None:
        """``on_event`` is then called, on the event loop, for every join and leave of
        every channel on every node (the server keeps those it has subscribers for)."""

    @abc.abstractmethod
    async def close(self, grace: float = 0.0) -> None:
        """Stop; this node's members leave ``grace`` seconds later (Redis), or with it."""

    @abc.abstractmethod
    async def join(self, channel: str, member: Member) -> None:
        """Add ``member`` (idempotent); a ``join`` event when its key had no client here."""

    @abc.abstractmethod
    async def leave(self, channel: str, member: Member) -> None:
        """Remove ``member`` (idempotent); a ``leave`` event when it was its key's last."""

    @abc.abstractmethod
    async def snapshot(self, channel: str, limit: int) -> PresenceSnapshot:
        """The counts, and the members when there are at most ``limit`` clients."""

    async def tick(self) -> None:
        """Called about every ``presence_ttl / 3`` seconds: heartbeats and sweeps."""
        return None


class _Channel:
    __slots__ = ("members", "keys")

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}  # client -> member
        self.keys: dict[str, int] = {}  # key -> clients


class MemoryPresence(PresenceStore):
    """Members in this process: for the memory broker (one node). Events are immediate."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._on_event: PresenceHandler | None = None

    async def start(self, on_event: PresenceHandler) -> None:
        self._on_event = on_event

    async def close(self, grace: float = 0.0) -> None:
        self._on_event = None
        self._channels.clear()

    async def join(self, channel: str, member: Member) -> None:
        self.join_now(channel, member)

    def join_now(self, channel: str, member: Member) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel()
        if member.client in ch.members:
            return
        ch.members[member.client] = member
        n = ch.keys.get(member.key, 0) + 1
        ch.keys[member.key] = n
        if n == 1 and self._on_event is not None:
            self._on_event(PresenceEvent(channel, "join", member.json, len(ch.members)))

    async def leave(self, channel: str, member: Member) -> None:
        self.leave_now(channel, member)

    def leave_now(self, channel: str, member: Member) -> None:
        ch = self._channels.get(channel)
        if ch is None or ch.members.pop(member.client, None) is None:
            return
        n = ch.keys[member.key] - 1
        if n > 0:
            ch.keys[member.key] = n
        else:
            del ch.keys[member.key]
        if not ch.members:
            del self._channels[channel]
        if n <= 0 and self._on_event is not None:
            self._on_event(PresenceEvent(channel, "leave", member.json, len(ch.members)))

    async def snapshot(self, channel: str, limit: int) -> PresenceSnapshot:
        ch = self._channels.get(channel)
        if ch is None:
            return PresenceSnapshot(0, 0, [])
        clients = len(ch.members)
        members = [m.json for m in ch.members.values()] if clients <= limit else None
        return PresenceSnapshot(clients, len(ch.keys), members)
