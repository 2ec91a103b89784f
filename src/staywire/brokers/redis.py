"""The Redis broker: streams, history, idempotency keys and sessions shared by every node.

Modelled on centrifuge's Redis engine. A channel lives in three kinds of keys,
all carrying the channel as a hash tag so that one Lua script may touch them
together (and a Redis Cluster would keep them in one slot)::

    {prefix}{<channel>}:meta       hash: e = epoch, o = top offset
    {prefix}{<channel>}:stream     stream whose entry ids are the offsets
    {prefix}{<channel>}:key:<key>  "epoch:offset" of the first publish with this key

The epoch is stored in Redis, not in a node: every node (and a node after its
own restart) sees the same positions, and the epoch changes exactly when Redis
lost the meta key (restart without persistence, eviction, expiry), which is
when the offsets it named no longer exist.

Delivery between nodes is Redis pub/sub, which is at most once: whatever is
published while a node's link is down never reaches it. The stream is what
makes delivery lossless. Each node remembers the last (epoch, offset) it
delivered per channel and, when a SUBSCRIBE is confirmed (on subscribe and
after every reconnect) or a publication skips ahead, reads the missing entries
from the stream and delivers them first. Only the link readers deliver, and only an
offset above the last one delivered, so per channel the order is the offset order
and no offset is delivered twice (also while a moved channel's old and new links
overlap on Cluster).

On Redis Cluster (``redis+cluster://``) each primary has its own publish pipeline and
pub/sub link (redis_cluster.py, redis_links.py), publications go over sharded pub/sub,
and a channel whose slot moves is subscribed again on its new primary, from where the
stream fills in what the move made this node miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from redis import exceptions as redis_errors
from redis.asyncio.connection import ConnectionPool
from redis.crc import key_slot

from staywire.protocol.stream import Position, Publication
from staywire.brokers.base import (
    Broker,
    HistoryLimits,
    HistoryPolicy,
    HistoryResult,
    PublicationHandler,
    PublishResult,
)
from staywire.brokers.redis_cluster import ClusterRoutes
from staywire.brokers.redis_history import HISTORY_LUA, HistoryReads, read_reply
from staywire.brokers.redis_links import PubSubLinks
from staywire.brokers.redis_publish import (
    NotReplicated,
    PublishCommands,
    decode_publication,
    pack,
)
from staywire.brokers.redis_routes import Routes, open_routes
from staywire.exceptions import BrokerError, BrokerUnavailable, ConfigError

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

# The meta key (epoch and top offset) outlives the stream by this factor: a client
# back after the stream expired is then told "nothing missed, same epoch" when that
# is true, and offsets stay monotonic while anyone may still hold a position.
_META_TTL_FACTOR = 10
# Defaults for the client; query parameters of the URL take precedence.
_CONNECT_TIMEOUT = 2.0
_COMMAND_TIMEOUT = 5.0
_POOL_SIZE = 64
_CONFIRM_TIMEOUT = 5.0

# Errors that mean "Redis cannot serve us now" (BusyLoading and Authentication
# errors are ConnectionErrors; a read-only replica after failover cannot either).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)
_TRANSLATED: tuple[type[BaseException], ...] = (*_UNAVAILABLE, redis_errors.RedisError)



def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(slots=True, eq=False)
class _Track:
    """A channel this node subscribed to, and the last position delivered for it.

    ``epoch`` is ``None`` until the position at subscribe time is known; the
    reader ignores the channel until then.
    """

    ready: asyncio.Future[None]
    epoch: str | None = None
    offset: int = 0
    failed: BaseException | None = field(default=None)


class RedisBroker(Broker):
    def __init__(
        self,
        url: str,
        *,
        history_size: int = 100,
        history_ttl: float = 300.0,
        dedupe_window: float = 120.0,
        prefix: str = "staywire:",
        reconnect_backoff_max: float = 5.0,
        policy: HistoryPolicy | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
    ) -> None:
        """``url``: ``redis://``, ``rediss://``, ``redis+sentinel://`` or
        ``redis+cluster://`` (redis_pool).

        ``wait_replicas`` > 0: a publish is acknowledged only once ``WAIT`` saw it on that
        many replicas within ``wait_timeout`` seconds, else it fails as unavailable
        (redis_publish)."""
        if history_size < 0:
            raise ConfigError("history_size must be >= 0")
        if history_ttl <= 0 or dedupe_window <= 0:
            raise ConfigError("history_ttl and dedupe_window must be > 0")
        if reconnect_backoff_max <= 0:
            raise ConfigError("reconnect_backoff_max must be > 0")
        self.url = url  # presence_redis.py uses the same Redis
        self._history_size = history_size
        default = HistoryLimits(history_size, history_ttl)
        self._policy: HistoryPolicy = policy or (lambda channel: default)  # per-channel options
        self._history_ttl_ms = _ms(history_ttl)
        self._meta_ttl_ms = _ms(history_ttl * _META_TTL_FACTOR)
        self._dedupe_ms = _ms(dedupe_window)
        self._prefix = prefix
        self._pubsub_prefix = f"{prefix}pub:"
        if wait_replicas < 0 or wait_timeout <= 0:
            raise ConfigError("wait_replicas must be >= 0 and wait_timeout > 0")
        try:
            # One server, or a cluster's primaries: where commands and links go.
            self._routes: Routes = open_routes(
                url, pool_size=_POOL_SIZE, connect_timeout=_CONNECT_TIMEOUT,
                command_timeout=_COMMAND_TIMEOUT, wait_replicas=wait_replicas,
                wait_timeout=wait_timeout, on_change=self._ensure_links)
        except ValueError as exc:  # the message names the problem, never the password
            raise ConfigError(f"invalid Redis URL: {exc}") from None
        self._commands = PublishCommands(prefix=prefix, pubsub_prefix=self._pubsub_prefix,
                                         policy=self._policy, dedupe_ms=self._dedupe_ms,
                                         meta_ttl_factor=_META_TTL_FACTOR,
                                         sharded=self._routes.sharded)
        self._reads = HistoryReads(prefix=prefix, policy=self._policy,
                                   meta_ttl_ms=self._meta_ttl_ms)
        self._on_publication: PublicationHandler | None = None
        self._tracks: dict[str, _Track] = {}
        self._links = PubSubLinks(self, sharded=self._routes.sharded,
                                  backoff_max=reconnect_backoff_max)
        self._send_lock = self._links.lock
        self._started = False
        self._all_linked = False  # every link the routes name is up
        self._discovery: asyncio.Task[None] | None = None
        self._available = False
        self._closed = False

    # -- keys -----------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self._prefix

    def _key(self, channel: str, suffix: str) -> str:
        return f"{self._prefix}{{{channel}}}:{suffix}"

    def _pubsub_name(self, channel: str) -> str:
        return self._commands.pubsub_name(channel)

    def _channel_of(self, name: bytes) -> str:
        channel = name.decode()[len(self._pubsub_prefix):]
        return channel[1:-1] if self._routes.sharded else channel

    @staticmethod
    def _tag(channel: str) -> bytes:
        # What a channel's keys hash by (their ``{channel}`` tag): its slot on Cluster.
        return b"{%s}" % channel.encode()

    @staticmethod
    def _new_epoch() -> str:
        # Hex only: the payload and the idempotency value use ':' as separator.
        return secrets.token_hex(6)

    # -- lifecycle --------------------------------------------------------------

    async def start(self, on_publication: PublicationHandler) -> None:
        """Connect the pub/sub link and start its reader.

        Does not raise when Redis is down: the broker then reports ``available``
        false and keeps reconnecting in the background, so that a node started
        before Redis becomes ready by itself instead of crash-looping.
        """
        if self._closed:
            raise BrokerUnavailable("the Redis broker is closed")
        self._on_publication = on_publication
        if self._started:
            return
        self._started = True
        try:
            await self._routes.start()
        except Exception as exc:  # no node of the cluster answers: try again, backing off
            log.warning("redis broker: the cluster's slot map could not be read: %s", exc)
            self._discovery = asyncio.create_task(self._discover(), name="staywire-redis-map")
            return
        await asyncio.gather(*(self._links.ensure(name).wait() for name in self._routes.names()))

    async def _discover(self) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(self._links.backoff(attempt))
            try:
                await self._routes.start()
            except Exception as exc:
                log.debug("redis broker: the cluster's slot map: %s", exc)
                continue
            log.info("redis broker: the cluster's slot map was read")
            self._ensure_links()
            return

    def _ensure_links(self) -> None:
        """Keep a link up to every primary known now (Cluster: one may be new)."""
        if self._closed:
            return
        for name in self._routes.names():
            self._links.ensure(name)
        self.link_changed()

    # -- links (redis_links.LinkOwner) ---------------------------------------------

    def _link_of(self, channel: str) -> str:
        return self._routes.name_of(self._tag(channel))

    def _linked(self) -> bool:
        return self._all_linked  # asked on every publish's reply: kept, not computed

    def wanted(self, name: str) -> bool:
        return not self._closed and name in self._routes.names()

    def pool(self, name: str) -> ConnectionPool:
        return self._routes.pool(name)

    def subscriptions(self, name: str) -> list[str]:
        return [self._pubsub_name(c) for c, t in self._tracks.items()
                if t.epoch and self._link_of(c) == name]

    def link_changed(self) -> None:
        self._all_linked = self._links.up(self._routes.names())
        self._available = self._all_linked

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._available = False
        if self._discovery is not None:
            self._discovery.cancel()
            await asyncio.gather(self._discovery, return_exceptions=True)
        await self._links.close()
        closed = BrokerUnavailable("the Redis broker is closed")
        for channel, track in list(self._tracks.items()):
            self._forget(channel, track, closed)
        self._on_publication = None
        await self._routes.close()

    @property
    def available(self) -> bool:
        return self._available

    async def ping(self) -> None:
        with self._guard("ping"):
            await self._routes.ping()
        self._ensure_links()  # Cluster: a primary that is new (a failover)
        if not self._linked():
            # Redis is back but the link waits out its backoff: cut the wait short.
            self._links.wake()
            raise BrokerUnavailable("ping: the pub/sub link to Redis is reconnecting")

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Translate redis-py errors; keep ``available`` in step with what was seen."""
        if self._closed:
            raise BrokerUnavailable(f"{what}: the Redis broker is closed")
        try:
            yield
        except _TRANSLATED as exc:
            raise self._translate(what, exc) from exc
        if self._linked():
            self._available = True

    def _translate(self, what: str, exc: BaseException) -> BaseException:
        """The broker's error for a redis-py one (``exc`` itself when it is neither)."""
        if isinstance(exc, NotReplicated):
            # The primary answers: the node stays ready (subscribers are served), only
            # publishes cannot be acknowledged until the replicas catch up.
            error: BaseException = BrokerUnavailable(f"{what}: {exc}")
        elif isinstance(exc, _UNAVAILABLE):
            # After a timeout the outcome is unknown (a publish may have happened);
            # a retry with the same idempotency key is what makes that safe.
            self._available = False
            error = BrokerUnavailable(f"{what}: Redis unreachable: {exc}")
        elif isinstance(exc, redis_errors.RedisError):
            error = BrokerError(f"{what}: {exc}")
        else:
            return exc
        error.__cause__ = exc
        return error

    # -- streams ----------------------------------------------------------------

    async def publish(self, channel: str, data: bytes, *, key: str | None = None,
                      binary: bool = False, chunk: bytes | None = None) -> PublishResult:
        fut: asyncio.Future[PublishResult] = asyncio.get_running_loop().create_future()

        def settle(result: PublishResult | None, exc: BaseException | None) -> None:
            if fut.done():
                return  # the caller was cancelled
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(cast("PublishResult", result))

        self.publish_soon(channel, data, key, settle, binary, chunk)
        return await fut

    def publish_soon(self, channel: str, data: bytes, key: str | None,
                     done: Callable[[PublishResult | None, BaseException | None], None],
                     binary: bool = False, chunk: bytes | None = None) -> None:
        """``publish`` without a coroutine: queued now, so publishes made in order reach
        Redis in that order (redis_publish.PublishPipeline); ``done`` is called once,
        later, with the result or with ``BrokerUnavailable`` / ``BrokerError``."""
        if self._closed:
            done(None, BrokerUnavailable("publish: the Redis broker is closed"))
            return

        def reply(value: Any, exc: BaseException | None) -> None:
            if exc is None:
                if self._all_linked:
                    self._available = True
                epoch, offset, duplicate = value
                done(PublishResult(epoch.decode(), int(offset), duplicate=bool(duplicate)), None)
            else:
                done(None, self._translate("publish", exc))

        command = self._commands.command(channel, data, key, binary, chunk)
        single = self._routes.single
        if single is not None:  # one server: straight to its pipeline (the hot path)
            single.submit(command, reply, self._commands.script, durable=True)
        else:
            self._routes.submit(self._tag(channel), command, reply, self._commands.script,
                                durable=True)

    async def key_seen(self, channel: str, key: str) -> bool:
        with self._guard("key_seen"):
            # Through the channel's route (its slot's primary on a cluster).
            return bool(await self._routes.call(self._tag(channel), pack(
                "EXISTS", self._key(channel, f"key:{key}"))))

    async def history(self, channel: str, since: Position | None, *, limit: int | None = None,
                      reverse: bool = False) -> HistoryResult:
        with self._guard("history"):
            return await self._read_history(channel, since, limit, reverse)

    async def _read_history(self, channel: str, since: Position | None,
                            limit: int | None = None, reverse: bool = False) -> HistoryResult:
        # Through the pipeline: a storm's recovery reads share round trips.
        reply = await self._routes.call(self._tag(channel), self._reads.command(
            channel, since, limit, reverse, self._new_epoch()), HISTORY_LUA)
        return read_reply(channel, reply)

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        track = self._tracks.get(channel)
        if track is None:
            track = _Track(asyncio.get_running_loop().create_future())
            self._tracks[channel] = track  # visible at once, so an unsubscribe can cancel it
            try:
                await self._start_tracking(channel, track)
            except BaseException as exc:
                self._forget(channel, track, exc)
                raise
        await self._wait_ready(channel, track)

    async def _start_tracking(self, channel: str, track: _Track) -> None:
        # Delivery starts after the position read *before* SUBSCRIBE: whatever is
        # published after it reaches this node, live or, when it raced the
        # SUBSCRIBE, from the stream when the subscription is confirmed.
        with self._guard("subscribe"):
            position = (await self._read_history(channel, None)).position
        async with self._send_lock:
            if self._tracks.get(channel) is not track:
                return  # unsubscribed meanwhile: the later call wins
            with self._guard("subscribe"):
                name = self._link_of(channel)
                self._links.ensure(name)  # a primary that came up since (Cluster)
                link = self._links.get(name)
                if link is None:
                    raise BrokerUnavailable("subscribe: the pub/sub link to Redis is down")
                track.epoch, track.offset = position.epoch, position.offset
                await link.send_command(self._links.subscribe_command,
                                        self._pubsub_name(channel), check_health=False)

    async def _wait_ready(self, channel: str, track: _Track) -> None:
        try:
            async with asyncio.timeout(_CONFIRM_TIMEOUT):
                await asyncio.shield(track.ready)
        except TimeoutError:
            if self._tracks.get(channel) is track:
                await self.unsubscribe(channel)
            raise BrokerUnavailable("subscribe: Redis did not confirm in time") from None
        if track.failed is not None:
            raise BrokerUnavailable(f"subscribe: {track.failed}") from track.failed

    def _forget(self, channel: str, track: _Track, failed: BaseException | None = None) -> None:
        if self._tracks.get(channel) is track:
            del self._tracks[channel]
        if not track.ready.done():
            track.failed = failed
            track.ready.set_result(None)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivery at once; never raises.

        Deliveries stop when this returns, whatever the link's state. When the
        link is down there is nothing to tell Redis: the next link subscribes
        only the channels still tracked.
        """
        track = self._tracks.get(channel)
        if track is None:
            return
        self._forget(channel, track)
        async with self._send_lock:
            with contextlib.suppress(*_UNAVAILABLE, redis_errors.RedisError):
                link = self._links.get(self._link_of(channel))
                if link is not None:
                    await link.send_command(
                        self._links.unsubscribe_command, self._pubsub_name(channel),
                        check_health=False
                    )

    # -- what the links read ----------------------------------------------------------

    async def dispatch(self, name: str, reply: Any) -> None:
        if isinstance(reply, redis_errors.MovedError):
            await self._moved(reply)
            return
        if not isinstance(reply, list):
            self.link_changed()  # PONG while subscribed to nothing
            return
        kind = reply[0]
        if kind in (b"message", b"smessage"):
            try:
                pub = decode_publication(reply[2])
            except (ValueError, UnicodeDecodeError):
                log.warning("redis broker: ignoring a malformed payload on %r", reply[1])
                return
            await self._on_message(pub)
        elif kind in (b"subscribe", b"ssubscribe"):
            await self._on_subscribed(self._channel_of(reply[1]))
        elif kind == b"sunsubscribe":
            # Redis Cluster unsubscribes a shard channel whose slot this primary lost.
            await self._resubscribe([self._channel_of(reply[1])])
        elif kind == b"pong":
            self.link_changed()

    async def _moved(self, err: redis_errors.MovedError) -> None:
        """An SSUBSCRIBE met a primary that no longer serves the slot: the MOVED names
        the one that does."""
        assert isinstance(self._routes, ClusterRoutes)
        await self._routes.moved(err)
        await self._resubscribe([c for c in self._tracks
                                 if key_slot(self._tag(c)) == err.slot_id], refresh=False)

    async def _resubscribe(self, channels: list[str], *, refresh: bool = True) -> None:
        """Subscribe ``channels`` again where the map says their slot lives now (Cluster);
        when that primary confirms, the stream fills in what was published meanwhile. A
        map that is behind names a primary that answers MOVED (``_moved``), so this ends
        where the slot is."""
        assert isinstance(self._routes, ClusterRoutes)
        if refresh:
            await self._routes.refresh()
        async with self._send_lock:
            for channel in channels:
                track = self._tracks.get(channel)
                if track is None or track.epoch is None:
                    continue  # unsubscribed by this node: nothing to do
                try:
                    name = self._link_of(channel)
                except redis_errors.ConnectionError:
                    continue  # no primary for the slot yet: the link subscribes it when up
                self._links.ensure(name)
                link = self._links.get(name)
                if link is not None:  # else the link subscribes it when it is up
                    with contextlib.suppress(*_UNAVAILABLE):
                        await link.send_command(self._links.subscribe_command,
                                                self._pubsub_name(channel), check_health=False)

    async def _on_subscribed(self, channel: str) -> None:
        # Whatever was published since this node's last delivery (before the
        # subscription, or while the link was down) is in the stream.
        track = self._tracks.get(channel)
        if track is None or track.epoch is None:
            return
        await self._catch_up(channel, track)
        if not track.ready.done():
            track.ready.set_result(None)

    async def _on_message(self, pub: Publication) -> None:
        track = self._tracks.get(pub.channel)
        if track is None or track.epoch is None:
            return
        if pub.epoch != track.epoch or pub.offset > track.offset + 1:
            await self._catch_up(pub.channel, track)
        if pub.epoch == track.epoch and pub.offset > track.offset:
            # Normally offset + 1; more only when the stream no longer had the gap.
            self._deliver(pub.channel, track, pub)

    async def _catch_up(self, channel: str, track: _Track) -> None:
        assert track.epoch is not None
        with self._guard("catch up"):
            result = await self._read_history(channel, Position(track.epoch, track.offset))
            if result.position.epoch != track.epoch:
                # Redis lost the stream: the old offsets are gone for good. Continue
                # with the new stream from its beginning, delivering nothing old.
                track.epoch, track.offset = result.position.epoch, 0
                result = await self._read_history(channel, Position(track.epoch, 0))
        for pub in result.publications:
            if pub.offset > track.offset:
                self._deliver(channel, track, pub)

    def _deliver(self, channel: str, track: _Track, pub: Publication) -> None:
        if self._tracks.get(channel) is not track:
            return
        track.epoch, track.offset = pub.epoch, pub.offset
        handler = self._on_publication
        if handler is None:
            return
        try:
            handler(pub)
        except Exception:
            log.exception("redis broker: on_publication failed for %s@%d", channel, pub.offset)

    # -- sessions -------------------------------------------------------------------

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}session:{session_id}"

    async def save_session(self, session_id: str, record: bytes, ttl: float) -> None:
        with self._guard("save_session"):
            key = self._session_key(session_id)
            await self._routes.call(key.encode(), pack("SET", key, record, "PX", _ms(ttl)))

    async def load_session(self, session_id: str) -> bytes | None:
        with self._guard("load_session"):
            key = self._session_key(session_id)
            record = await self._routes.call(key.encode(), pack("GET", key))
        return cast("bytes | None", record)  # bytes: the client does not decode

    async def delete_session(self, session_id: str) -> None:
        with self._guard("delete_session"):
            key = self._session_key(session_id)
            await self._routes.call(key.encode(), pack("DEL", key))
