"""Presence in Redis: every node's members, and a heartbeat per node that bounds a dead
node's members' life.

Keys (the channel as a hash tag, so one script touches one slot)::

    {prefix}presence:{<channel>}:m         hash: client -> "<len(key)>:<key><member json>"
    {prefix}presence:{<channel>}:u         hash: key -> clients (users are the keys)
    {prefix}presence:{<channel>}:n:<node>  set: the clients node <node> has there
    {prefix}presence:node:<node>           set: the channels node <node> has members in
    {prefix}presence:nodes                 sorted set: node -> last heartbeat (Redis ms)

Joins and leaves are Lua scripts that change the member, the per-user count and the
node's set together, and PUBLISH a ``join`` (the user's first client) or ``leave``
(its last) on ``{prefix}presence:events``; each node listens there on a link of its
own and hands every event to the server, which keeps those of its channels.

Why a heartbeat per node, not a TTL per member: refreshing 10,000 members every few
seconds would cost a write each; a node's heartbeat is one ``ZADD`` whatever its
members. Every ``ttl / 3`` seconds each node beats and looks for nodes whose last
beat is older than ``ttl`` (Redis's own clock, so nodes' clocks need not agree);
it removes their members channel by channel, each ``leave`` published as usual. So
the members of a node killed with ``kill -9`` leave within ``ttl + ttl / 3`` (20 s
with the default ``presence_ttl = 15``). A node that finds its own entry gone (it
was paused, or Redis restarted) joins its members again. A node that stops
gracefully back-dates its beat so that its members leave ``presence_grace`` later:
clients that reconnect elsewhere meanwhile are absorbed by the per-user count.

Events are Redis pub/sub, at most once: a node whose link was down misses them
(its clients can ask ``presence`` again). Membership itself is never lost that way.

On Redis Cluster (``redis+cluster://``) every script's keys are in the slot of its
channel's tag (or, for the heartbeat, one key), so the scripts run as they are; the
events stay classic pub/sub, which a cluster forwards to every node, so the events
link may listen on any one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from typing import Literal

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from staywire.brokers.redis_pool import RedisPool, is_cluster_url, open_cluster, open_pool
from staywire.brokers.presence import (
    Member,
    PresenceEvent,
    PresenceHandler,
    PresenceSnapshot,
    PresenceStore,
)
from staywire.exceptions import BrokerUnavailable, ConfigError

__all__ = ["RedisPresence"]

log = logging.getLogger(__name__)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError,
    OSError)
_TIMEOUT = 5.0
_DEAD_BATCH = 16  # dead nodes swept per heartbeat: bounded work per tick
# The events link is silent when nothing joins: a PING after this long idle, and a link
# that answers nothing for twice as long is dead (a vanished peer sends no RST).
_IDLE_PING = 5.0

# Removes one member (``ARGV[1]``: client) and publishes a leave when its key had no
# other client. Shared by LEAVE and SWEEP.
_REMOVE = """
local function remove(m, u, client, channel, events)
  local v = redis.call('HGET', m, client)
  if not v then return 0 end
  redis.call('HDEL', m, client)
  local c = string.find(v, ':', 1, true)
  local n = tonumber(string.sub(v, 1, c - 1))
  local key = string.sub(v, c + 1, c + n)
  if redis.call('HINCRBY', u, key, -1) <= 0 then
    redis.call('HDEL', u, key)
    redis.call('PUBLISH', events, 'l' .. redis.call('HLEN', m) .. ':' .. #channel .. ':'
                .. channel .. string.sub(v, c + n + 1))
  end
  return 1
end
"""

# KEYS: m, u, node set. ARGV: client, stored value, key, member json, channel, events
_JOIN_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('SADD', KEYS[3], ARGV[1])
if redis.call('HINCRBY', KEYS[2], ARGV[3], 1) == 1 then
  redis.call('PUBLISH', ARGV[6], 'j' .. redis.call('HLEN', KEYS[1]) .. ':' .. #ARGV[5] .. ':'
              .. ARGV[5] .. ARGV[4])
end
return 1
"""

# KEYS: m, u, node set. ARGV: client, channel, events
_LEAVE_LUA = _REMOVE + """
redis.call('SREM', KEYS[3], ARGV[1])
return remove(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
"""

# KEYS: m, u, the dead node's set. ARGV: channel, events
_SWEEP_LUA = _REMOVE + """
local removed = 0
for _, client in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  removed = removed + remove(KEYS[1], KEYS[2], client, ARGV[1], ARGV[2])
end
redis.call('DEL', KEYS[3])
return removed
"""

# KEYS: m, u. ARGV: limit
_SNAPSHOT_LUA = """
local n = redis.call('HLEN', KEYS[1])
local u = redis.call('HLEN', KEYS[2])
if n > tonumber(ARGV[1]) then return {n, u} end
return {n, u, redis.call('HVALS', KEYS[1])}
"""

# KEYS: nodes. ARGV: node, ttl ms, back-date ms (0: a live beat)
# Returns {1 if the node's entry was new, dead nodes...}
_BEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local new = redis.call('ZADD', KEYS[1], now - tonumber(ARGV[3]), ARGV[1])
if tonumber(ARGV[3]) > 0 then return {new} end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]),
                        'LIMIT', 0, %d)
local out = {new}
for _, node in ipairs(dead) do
  if node ~= ARGV[1] then table.insert(out, node) end
end
return out
""" % _DEAD_BATCH


def _stored(member: Member) -> bytes:
    key = member.key.encode()
    return b"%d:%s%s" % (len(key), key, member.json)


def _unstored(value: bytes) -> bytes:
    """The member json of a stored value."""
    colon = value.index(b":")
    return value[colon + 1 + int(value[:colon]):]


def decode_event(payload: bytes) -> PresenceEvent:
    """``j|l<clients>:<len(channel)>:<channel><member json>``."""
    kind: Literal["join", "leave"] = "join" if payload[:1] == b"j" else "leave"
    first = payload.index(b":")
    clients = int(payload[1:first])
    second = payload.index(b":", first + 1)
    n = int(payload[first + 1:second])
    channel = payload[second + 1:second + 1 + n].decode()
    return PresenceEvent(channel, kind, payload[second + 1 + n:], clients)


class RedisPresence(PresenceStore):
    def __init__(self, url: str, *, prefix: str = "staywire:", ttl: float = 15.0,
                 node: str | None = None) -> None:
        if ttl < 1:
            raise ConfigError("presence_ttl must be >= 1")
        self._pool: RedisPool | None = None
        self._redis: Redis | RedisCluster
        try:
            # The broker's own pool kinds (redis_pool): Sentinel and Cluster URLs work too.
            if is_cluster_url(url):
                self._redis = open_cluster(url, max_connections=16, connect_timeout=2.0,
                                           command_timeout=_TIMEOUT)
            else:
                self._pool = open_pool(url, max_connections=16, connect_timeout=2.0,
                                       command_timeout=_TIMEOUT)
                self._redis = Redis(connection_pool=self._pool.pool)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL: {exc}") from None
        self._prefix = f"{prefix}presence:"
        self._events = f"{self._prefix}events"
        self._ttl_ms = int(ttl * 1000)
        self.node = node or secrets.token_hex(6)
        self._join = self._redis.register_script(_JOIN_LUA)
        self._leave = self._redis.register_script(_LEAVE_LUA)
        self._sweep = self._redis.register_script(_SWEEP_LUA)
        self._snapshot = self._redis.register_script(_SNAPSHOT_LUA)
        self._beat = self._redis.register_script(_BEAT_LUA)
        self._local: dict[str, dict[str, Member]] = {}  # channel -> client -> member
        # Joins and leaves Redis could not take, the latest per member: tried again at
        # each heartbeat, so an outage leaves neither ghosts nor missing members.
        self._retry: dict[tuple[str, str], tuple[bool, Member]] = {}
        self._on_event: PresenceHandler | None = None
        self._listener: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()  # the events link's first attempt is over

    # -- keys -----------------------------------------------------------------

    def _keys(self, channel: str, node: str | None = None) -> list[str]:
        tag = f"{self._prefix}{{{channel}}}"
        return [f"{tag}:m", f"{tag}:u", f"{tag}:n:{node or self.node}"]

    def _node_key(self, node: str) -> str:
        return f"{self._prefix}node:{node}"

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise BrokerUnavailable(f"presence {what}: {exc}") from exc

    # -- lifecycle --------------------------------------------------------------

    async def start(self, on_event: PresenceHandler) -> None:
        self._on_event = on_event
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        # Events of joins made right after start must not be missed: wait (bounded) for
        # the link's first attempt; without Redis, start anyway (the link retries).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_TIMEOUT):
                await self._tried.wait()
        with contextlib.suppress(BrokerUnavailable):
            await self.tick()

    async def close(self, grace: float = 0.0) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._local:
            # Back-dated: the other nodes sweep this node's members ``grace`` from now.
            with contextlib.suppress(*_UNAVAILABLE):
                await self._beat(keys=[f"{self._prefix}nodes"],
                                 args=[self.node, self._ttl_ms,
                                       max(1, self._ttl_ms - int(grace * 1000))])
        self._local.clear()
        self._on_event = None
        await self._redis.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    async def _listen(self) -> None:
        """The events link: subscribe, read, and resubscribe after a failure (backoff)."""
        delay = 0.05
        loop = asyncio.get_running_loop()
        while True:
            pubsub: PubSub = self._redis.pubsub()
            try:
                if isinstance(self._redis, RedisCluster):
                    await self._redis.initialize()  # its pubsub needs the slot map (no-op once read)
                await pubsub.subscribe(self._events)
                self._tried.set()
                delay = 0.05
                seen = pinged = loop.time()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    now = loop.time()
                    if msg is not None:
                        seen = now
                        if msg.get("type") == "message":
                            self._dispatch(msg["data"])
                    elif now - seen > 2 * _IDLE_PING:
                        raise ConnectionError("no answer to PING")
                    elif now - seen > _IDLE_PING and now - pinged > _IDLE_PING:
                        pinged = now
                        await pubsub.ping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost link: at most once, membership is kept
                self._tried.set()
                log.warning("presence events link lost: %s; retrying in %.2fs", exc, delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _dispatch(self, payload: bytes) -> None:
        try:
            event = decode_event(payload)
        except (ValueError, UnicodeDecodeError):
            log.warning("unreadable presence event: %.100r", payload)
            return
        if self._on_event is not None:
            self._on_event(event)

    # -- members ----------------------------------------------------------------

    async def join(self, channel: str, member: Member) -> None:
        local = self._local.get(channel)
        if local is None:
            local = self._local[channel] = {}
        local[member.client] = member
        self._retry.pop((channel, member.client), None)
        try:
            await self._send_join(channel, member, first=len(local) == 1)
        except BrokerUnavailable:
            self._retry[(channel, member.client)] = (True, member)
            raise

    async def _send_join(self, channel: str, member: Member, first: bool) -> None:
        with self._guard("join"):
            if first:  # before the member: a sweeper must always find it
                await self._redis.sadd(self._node_key(self.node), channel)
            await self._join(keys=self._keys(channel),
                             args=[member.client, _stored(member), member.key, member.json,
                                   channel, self._events])

    async def leave(self, channel: str, member: Member) -> None:
        local = self._local.get(channel)
        last = False
        if local is not None:
            local.pop(member.client, None)
            if not local:
                del self._local[channel]
                last = True
        self._retry.pop((channel, member.client), None)
        try:
            await self._send_leave(channel, member, last)
        except BrokerUnavailable:
            self._retry[(channel, member.client)] = (False, member)
            raise

    async def _send_leave(self, channel: str, member: Member, last: bool) -> None:
        with self._guard("leave"):
            await self._leave(keys=self._keys(channel), args=[member.client, channel,
                                                              self._events])
            if last and channel not in self._local:
                # No member here any more: the node's channel set must not grow forever.
                await self._redis.srem(self._node_key(self.node), channel)

    async def snapshot(self, channel: str, limit: int) -> PresenceSnapshot:
        with self._guard("snapshot"):
            reply = await self._snapshot(keys=self._keys(channel)[:2], args=[limit])
        members = [_unstored(v) for v in reply[2]] if len(reply) > 2 else None
        return PresenceSnapshot(int(reply[0]), int(reply[1]), members)

    # -- heartbeat and sweep ----------------------------------------------------

    async def tick(self) -> None:
        with self._guard("heartbeat"):
            reply = await self._beat(keys=[f"{self._prefix}nodes"],
                                     args=[self.node, self._ttl_ms, 0])
        if int(reply[0]) == 1 and self._local:
            # This node's entry was gone (swept while paused, or Redis lost it): its
            # members may have been removed; put them back (joins are idempotent).
            log.warning("presence: this node's heartbeat was gone; joining its %d channels "
                        "again", len(self._local))
            for channel, members in list(self._local.items()):
                for i, member in enumerate(list(members.values())):
                    await self._send_join(channel, member, first=i == 0)
        while self._retry:
            (channel, client), (join, member) = next(iter(self._retry.items()))
            if join:
                await self._send_join(channel, member, first=True)
            else:
                await self._send_leave(channel, member, channel not in self._local)
            if self._retry.get((channel, client)) == (join, member):
                del self._retry[(channel, client)]  # not replaced meanwhile
        for raw in reply[1:]:
            await self._sweep_node(raw.decode())

    async def _sweep_node(self, node: str) -> None:
        """Remove every member of a node that stopped beating, with their leaves."""
        node_key = self._node_key(node)
        with self._guard("sweep"):
            channels = await self._redis.smembers(node_key)
            removed = 0
            for raw in channels:
                channel = raw.decode() if isinstance(raw, bytes) else raw
                removed += int(await self._sweep(keys=self._keys(channel, node),
                                                 args=[channel, self._events]))
            await self._redis.delete(node_key)
            await self._redis.zrem(f"{self._prefix}nodes", node)
        log.info("presence: node %s stopped beating: %d members in %d channels left", node,
                 removed, len(channels))
