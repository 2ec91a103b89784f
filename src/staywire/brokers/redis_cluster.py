"""The Redis broker on Redis Cluster: a publish pipeline and a pub/sub link per primary.

redis-py's asyncio ``RedisCluster`` knows the slot map (``CLUSTER SLOTS`` from any
node named in the URL, and the updates a ``MOVED`` brings); ``ClusterRoutes`` keeps
a ``PublishPipeline`` per primary on a pool of its own (redis_publish.py: one batch
in flight per node, so the publishes of one channel, which all go to one node, keep
their order), and sends each command to the primary of its key's slot. Every key of a
channel carries ``{<channel>}`` as hash tag, so the publish script's keys and its
``SPUBLISH`` channel are in one slot and the script stays atomic.

When a slot moves (resharding) or its primary fails over, a node answers ``MOVED``,
``ASK`` or ``TRYAGAIN``: the command did not run, so it is sent again where the slot
lives now (after ``MOVED``: at once, to the new owner; after ``ASK``: at once, to the
node the slot is moving to, after ``ASKING``, since the channel's keys are there
already; after ``TRYAGAIN``, which says they are split between the two, to the slot's
owner after a short wait), ahead of what was queued there since, at most ``MAX_HOPS``
times; after that it fails as unavailable and the client retries it with its
idempotency key. A publish with a new idempotency key meets ``TRYAGAIN`` on the node
the slot moves to (Redis runs a multi-key command there only when all its keys exist),
so it waits for the move to end.
``CLUSTERDOWN`` (a primary failed and the cluster stopped serving) is an outage, not a
move: the command fails as unavailable at once. A node that cannot be reached, or an
outage, makes the map be read again (at most every ``REFRESH_EVERY`` seconds).

Order: the publishes of a channel are sent in the order they were made, and the ones
redirected together are sent again in theirs; but while a slot moves, a publish made
after one that met ``TRYAGAIN`` may reach the new owner first, so a client that sends
publishes without waiting for their acks may see them take offsets in another order.
Nothing is lost or run twice, and every subscriber sees the offsets' order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.crc import key_slot

from staywire.brokers.redis_publish import PUBLISH_LUA, PublishPipeline, ReplyCallback, pack
from staywire.brokers.redis_pool import node_pool

__all__ = ["MAX_HOPS", "ClusterRoutes"]

log = logging.getLogger("staywire.brokers.redis")

MAX_HOPS = 40  # redirects of one command; with the waits below, about 4 s in all
_WAIT_STEP = 0.005  # s of wait per hop already made, after TRYAGAIN
_ASKING = pack("ASKING")
REFRESH_EVERY = 0.25  # s between two reads of the slot map after a node failed


class ClusterRoutes:
    """Commands to the primary of their key's slot, through one pipeline per primary
    (redis_routes.Routes)."""

    sharded = True
    single: PublishPipeline | None = None  # (Routes) a pipeline per primary, not one

    def __init__(self, cluster: RedisCluster, *, pool_size: int, wait_replicas: int = 0,
                 wait_timeout: float = 0.5, on_change: Callable[[], None] = lambda: None) -> None:
        self.cluster = cluster
        self._on_change = on_change  # called after the map was read again: new primaries?
        self._names: list[str] = []  # the primaries, read from the map when it changes
        self._pool_size = pool_size
        self._wait = (wait_replicas, wait_timeout)
        self._pools: dict[str, ConnectionPool] = {}
        self._pipelines: dict[str, PublishPipeline] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._redirects: list[tuple[Any, redis_errors.ResponseError]] = []  # FIFO
        self._redirecting: asyncio.Task[None] | None = None
        self._closed = False

    # -- the slot map ---------------------------------------------------------------

    async def start(self) -> None:
        """Read the slot map; a ``ConnectionError`` when no node named answers."""
        try:
            await self.cluster.initialize()
        except redis_errors.RedisClusterException as exc:  # not a RedisError
            raise redis_errors.ConnectionError(str(exc)) from exc
        self._changed()

    def _changed(self) -> None:
        # Every publish asks whether all links are up: the list is kept, not rebuilt.
        self._names = [node.name for node in self.cluster.get_primaries()]
        self._on_change()

    def name_of(self, key: bytes) -> str:
        """``host:port`` of the primary serving ``key``'s slot, as known now; a
        ``ConnectionError`` (unavailable) when none does, or the map was never read."""
        slot = key_slot(key)
        try:
            return self.cluster.nodes_manager.get_node_from_slot(slot).name
        except (redis_errors.RedisClusterException, KeyError):
            self.refresh_soon()
            raise redis_errors.ConnectionError(
                f"no known primary serves slot {slot} of the cluster") from None

    def names(self) -> list[str]:
        """The primaries, as known now (none before the map was first read)."""
        return self._names

    async def ping(self) -> None:
        if not self.names():
            await self.start()  # the map was never read: try now
        await asyncio.gather(*(self.pipeline(name).call(pack("PING")) for name in self.names()))

    def pool(self, name: str) -> ConnectionPool:
        pool = self._pools.get(name)
        if pool is None:
            host, _, port = name.rpartition(":")
            pool = self._pools[name] = node_pool(self.cluster, host, int(port),
                                                 max_connections=self._pool_size)
        return pool

    def refresh_soon(self) -> None:
        """Read the slot map again in the background (at most every REFRESH_EVERY s)."""
        if self._closed or (self._refresh is not None and not self._refresh.done()):
            return
        self._refresh = asyncio.get_running_loop().create_task(self._refresh_map())

    async def refresh(self) -> None:
        self.refresh_soon()
        if self._refresh is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._refresh)

    async def _refresh_map(self) -> None:
        wait = self._refreshed_at + REFRESH_EVERY - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._refreshed_at = time.monotonic()
        try:
            await self.cluster.nodes_manager.initialize()
        except Exception as exc:  # no node answers: the next failure tries again
            log.warning("redis cluster: the slot map could not be read: %s", exc)
        else:
            self._changed()

    # -- commands -------------------------------------------------------------------

    def pipeline(self, name: str) -> PublishPipeline:
        pipe = self._pipelines.get(name)
        if pipe is None:
            pipe = self._pipelines[name] = PublishPipeline(
                self.pool(name), wait_replicas=self._wait[0], wait_timeout=self._wait[1],
                redirects=self)
        return pipe

    def submit(self, key: bytes, command: bytes, callback: ReplyCallback,
               script: str | None = PUBLISH_LUA, *, durable: bool = False) -> None:
        if self._closed:
            callback(None, redis_errors.ConnectionError("the Redis broker is closed"))
            return
        try:
            name = self.name_of(key)
        except redis_errors.ConnectionError as exc:
            callback(None, exc)
            return
        self.pipeline(name).submit(command, callback, script, durable=durable)

    async def call(self, key: bytes, command: bytes, script: str | None = None) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Any, exc: BaseException | None) -> None:
            if not fut.done():
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(reply)

        self.submit(key, command, settle, script)
        return await fut

    # -- Redirects (redis_publish) ----------------------------------------------------

    def redirected(self, items: list[tuple[Any, redis_errors.ResponseError]]) -> None:
        # One queue for every pipeline's redirects, sent again in the order they came.
        self._redirects.extend(items)
        if self._redirecting is None or self._redirecting.done():
            self._redirecting = asyncio.get_running_loop().create_task(self._drain())

    def node_failed(self, exc: BaseException) -> None:
        self.refresh_soon()

    async def _drain(self) -> None:
        try:
            while self._redirects and not self._closed:
                batch, self._redirects = self._redirects, []
                await self._send_again(batch)
        finally:
            # Closed (or cancelled) with commands still waiting: their callers hear so.
            left, self._redirects = self._redirects, []
            for item, _ in left:
                _fail(item[1], redis_errors.ConnectionError("the Redis broker is closed"))

    async def _send_again(self, items: list[tuple[Any, redis_errors.ResponseError]]) -> None:
        if any(isinstance(err, redis_errors.ClusterDownError) for _, err in items):
            # An outage, not a move: unavailable now (the clients retry with their keys).
            self.refresh_soon()
            for item, err in items:
                if isinstance(err, redis_errors.ClusterDownError):
                    _fail(item[1], redis_errors.ConnectionError(f"the cluster is down: {err}"))
            items = [p for p in items if not isinstance(p[1], redis_errors.ClusterDownError)]
            if not items:
                return
        self._redirects[:0] = items  # still to send: failed by _drain if this is cut short
        moved = [err for _, err in items if isinstance(err, redis_errors.MovedError)]
        for move in moved:
            with contextlib.suppress(Exception):
                await self.cluster.nodes_manager.move_slot(move)
        if moved:
            self._changed()
        hops = max(item[4] for item, _ in items) + 1
        if any(isinstance(err, redis_errors.TryAgainError) for _, err in items):
            await asyncio.sleep(_WAIT_STEP * hops)  # the keys are between two nodes
        del self._redirects[:len(items)]
        for item, err in reversed(items):  # each goes first: reversed keeps their order
            command, callback, script, durable, made, asking = item
            if asking:
                command = command[len(_ASKING):]
            if made + 1 > MAX_HOPS or self._closed:
                _fail(callback, redis_errors.TimeoutError(
                    f"the cluster kept redirecting the command ({err})"))
                continue
            ask = isinstance(err, redis_errors.AskError) and not isinstance(
                err, redis_errors.MovedError)
            try:
                if isinstance(err, redis_errors.AskError):  # MOVED too: the node it names
                    name = f"{err.host}:{err.port}"
                else:
                    name = self.name_of(_key_of(command))
            except (redis_errors.ConnectionError, IndexError) as exc:
                _fail(callback, redis_errors.ConnectionError(f"no route: {exc}"))
                continue
            self.pipeline(name).submit(_ASKING + command if ask else command, callback,
                                       script, durable=durable, hops=made + 1, first=True,
                                       asking=ask)

    async def moved(self, err: redis_errors.MovedError) -> None:
        """A MOVED seen elsewhere (a link's SSUBSCRIBE): the map learns the new owner."""
        with contextlib.suppress(Exception):
            await self.cluster.nodes_manager.move_slot(err)
        self._changed()

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._redirecting, self._refresh) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pipe in self._pipelines.values():
            await pipe.close()
        for pool in self._pools.values():
            with contextlib.suppress(Exception):
                await pool.disconnect()
        with contextlib.suppress(Exception):
            await self.cluster.aclose()


def _fail(callback: ReplyCallback, exc: BaseException) -> None:
    try:  # one caller's failing callback must not cut the others' answers short
        callback(None, exc)
    except Exception:
        log.exception("redis broker: a publish callback failed")


def _key_of(command: bytes) -> bytes:
    """The first key of a RESP command the broker built: the 2nd argument of GET/SET/DEL,
    the 4th of EVALSHA (after the sha and the key count)."""
    parts = command.split(b"\r\n", 11)  # keys never hold CRLF (channel names cannot)
    # *N, $len, NAME, $len, arg1, $len, arg2, ...
    name = parts[2].upper()
    return parts[10] if name in (b"EVALSHA", b"EVAL") else parts[4]
