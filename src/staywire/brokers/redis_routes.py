"""Where the Redis broker's commands and pub/sub links go: one server, or a cluster's primaries.

``ServerRoutes`` is one Redis (``redis://``, or the primary Sentinel names): one publish
pipeline, one pub/sub link named ``""``. ``ClusterRoutes`` (redis_cluster.py) is a
Redis Cluster: a pipeline and a link per primary, each command sent by its key's slot.
The broker (redis.py) talks to either through ``Routes`` and never asks which it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool

from staywire.brokers.redis_cluster import ClusterRoutes
from staywire.brokers.redis_pool import RedisPool, is_cluster_url, open_cluster, open_pool
from staywire.brokers.redis_publish import PUBLISH_LUA, PublishPipeline, ReplyCallback

__all__ = ["Routes", "ServerRoutes", "open_routes"]

_ONE = [""]  # the one link's name (a constant: asked on every publish's reply)


class Routes(Protocol):
    sharded: bool  # Cluster: sharded pub/sub (SSUBSCRIBE, SPUBLISH)
    # One server: its pipeline, which the broker's publish path calls directly (a call
    # less per publish); None on Cluster.
    single: PublishPipeline | None

    async def start(self) -> None:
        """Learn where things go (Cluster: the slot map); a redis-py error if nothing
        answers."""
        ...

    def names(self) -> list[str]:
        """The pub/sub links that must be up."""
        ...

    def name_of(self, key: bytes) -> str:
        """The link that serves ``key`` (its slot's primary)."""
        ...

    def pool(self, name: str) -> ConnectionPool: ...

    def submit(self, key: bytes, command: bytes, callback: ReplyCallback,
               script: str | None = PUBLISH_LUA, *, durable: bool = False) -> None: ...

    async def call(self, key: bytes, command: bytes, script: str | None = None) -> Any: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class ServerRoutes:
    """Everything to one server: one pipeline (one write per tick; see redis_publish)."""

    sharded = False

    def __init__(self, pools: RedisPool, *, wait_replicas: int, wait_timeout: float) -> None:
        self._pools = pools
        self._redis = Redis(connection_pool=pools.pool)
        self._publisher = PublishPipeline(pools.pool, wait_replicas=wait_replicas,
                                          wait_timeout=wait_timeout)
        self.single: PublishPipeline | None = self._publisher

    async def start(self) -> None:
        pass  # connections are made when used

    def names(self) -> list[str]:
        return _ONE

    def name_of(self, key: bytes) -> str:
        return ""

    def pool(self, name: str) -> ConnectionPool:
        return self._pools.pool

    def submit(self, key: bytes, command: bytes, callback: ReplyCallback,
               script: str | None = PUBLISH_LUA, *, durable: bool = False) -> None:
        self._publisher.submit(command, callback, script, durable=durable)

    async def call(self, key: bytes, command: bytes, script: str | None = None) -> Any:
        return await self._publisher.call(command, script)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._publisher.close()
        await self._redis.aclose()
        await self._pools.aclose()


def open_routes(url: str, *, pool_size: int, connect_timeout: float, command_timeout: float,
                wait_replicas: int, wait_timeout: float,
                on_change: Callable[[], None] = lambda: None) -> Routes:
    """The routes for ``url`` (nothing connects yet); ``ValueError`` for a malformed URL.

    ``on_change``: called when a cluster's map was read again (``names`` may differ)."""
    if is_cluster_url(url):
        return ClusterRoutes(open_cluster(url, max_connections=pool_size,
                                          connect_timeout=connect_timeout,
                                          command_timeout=command_timeout),
                             pool_size=pool_size, wait_replicas=wait_replicas,
                             wait_timeout=wait_timeout, on_change=on_change)
    return ServerRoutes(open_pool(url, max_connections=pool_size, connect_timeout=connect_timeout,
                                  command_timeout=command_timeout),
                        wait_replicas=wait_replicas, wait_timeout=wait_timeout)
