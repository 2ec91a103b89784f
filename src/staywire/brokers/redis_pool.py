"""Where the Redis broker's connections go: one server (``redis://``) or a Sentinel service.

``redis://[[user]:password@]host:port/db`` and ``rediss://`` name one server, with
redis-py's query parameters. ``redis+sentinel://`` names a service that Sentinel
watches, so that the broker follows a failover::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/SERVICE[/DB][?sentinel_password=...]

The hosts are the sentinels (port 26379 when left out), ``SERVICE`` the name in their
``sentinel monitor`` line, ``DB`` the database (0). The user and password are those of
the Redis servers; sentinels that require a password of their own get it from
``sentinel_password``.

Every connection of the pool (the publish pipeline's, the pub/sub link, a ping) asks
the sentinels for the primary's address when it connects (redis-py's
``SentinelConnectionPool``), so after a failover the next connection goes to the
promoted replica. Until the sentinels have promoted one, connecting fails as it does
when a single Redis is down: the broker reports unavailable and its callers see
``unavailable``. The URLs are parsed in ``redis_urls`` (pure, and free of redis-py), so
the configuration can check one without connecting.

``redis+cluster://`` names a Redis Cluster by some of its nodes::

    redis+cluster://[[user]:password@]host:port[,host:port...]/

Any one node that answers is enough to learn the slot map (port 6379 when left out);
a cluster has database 0 only, so the path is empty. ``open_cluster`` gives redis-py's
asyncio ``RedisCluster``: the broker reads the slot map from it and keeps a pool per
primary of its own (redis_cluster.py); presence and the control plane send their
commands through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from staywire.brokers.redis_urls import (
    CLUSTER_SCHEME,
    SENTINEL_SCHEME,
    ClusterURL,
    SentinelURL,
    is_cluster_url,
    is_redis_url,
    parse_cluster_url,
    parse_sentinel_url,
)

__all__ = ["CLUSTER_SCHEME", "SENTINEL_SCHEME", "ClusterURL", "RedisPool", "SentinelURL",
           "is_cluster_url", "is_redis_url", "node_pool", "open_cluster", "open_pool",
           "parse_cluster_url", "parse_sentinel_url"]


class RedisPool:
    """The broker's connection pool and, for a Sentinel URL, the sentinels' clients."""

    def __init__(self, pool: ConnectionPool, sentinel: Sentinel | None = None) -> None:
        self.pool = pool
        self.sentinel = sentinel

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.pool.disconnect()
        if self.sentinel is not None:
            with contextlib.suppress(Exception):
                await asyncio.gather(*(s.aclose() for s in self.sentinel.sentinels))


def _common(connect_timeout: float, command_timeout: float,
            health_check_interval: float) -> dict[str, Any]:
    return {"protocol": 2, "socket_connect_timeout": connect_timeout,
            "socket_timeout": command_timeout, "retry": Retry(NoBackoff(), 0),
            "health_check_interval": health_check_interval}


def open_pool(url: str, *, max_connections: int, connect_timeout: float,
              command_timeout: float, health_check_interval: float = 0) -> RedisPool:
    """The pool for ``url`` (connects lazily). ``ValueError`` for a malformed URL.

    No retries inside redis-py (``Retry(NoBackoff(), 0)``): retrying a publish whose
    reply was lost could publish it twice. RESP2 unless the URL asks for 3: it saves the
    HELLO round trip on every connect."""
    common = _common(connect_timeout, command_timeout, health_check_interval)
    if is_cluster_url(url):
        raise ValueError("a Cluster URL needs the cluster client (open_cluster)")
    if not url.startswith(SENTINEL_SCHEME):
        # A blocking pool: a burst of commands waits for one of max_connections instead
        # of failing with "Too many connections" (spurious `unavailable` errors).
        return RedisPool(BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=command_timeout, **common))
    parts = parse_sentinel_url(url)
    # A sentinel that does not answer is skipped for the next one; it must not hold a
    # failover up for long, nor be retried.
    sentinel = Sentinel(list(parts.sentinels), sentinel_kwargs={
        "socket_connect_timeout": connect_timeout, "socket_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), 0), "password": parts.sentinel_password, "protocol": 2},
    )  # type: ignore[no-untyped-call]
    # Not a blocking pool (redis-py has no blocking Sentinel pool): only the publish
    # pipeline (one connection at a time), the pub/sub link and pings use it.
    pool = SentinelConnectionPool(parts.service, sentinel, db=parts.db,
                                  username=parts.username, password=parts.password,
                                  max_connections=max_connections,
                                  **common)  # type: ignore[no-untyped-call]
    return RedisPool(pool, sentinel)


def open_cluster(url: str, *, max_connections: int, connect_timeout: float,
                 command_timeout: float, health_check_interval: float = 0) -> RedisCluster:
    """redis-py's cluster client for a ``redis+cluster://`` URL (connects lazily, on
    ``initialize`` or the first command). ``ValueError`` for a malformed URL.

    Unlike the broker's pipelines, it keeps redis-py's retries: what goes through it
    (presence, the control plane) is idempotent, and its retries are what follows a
    MOVED or a failover. Nodes named ``localhost`` are resolved as redis-py does."""
    parts = parse_cluster_url(url)
    common = _common(connect_timeout, command_timeout, health_check_interval)
    del common["retry"]  # the nodes' own connections never retry (redis-py sets that)
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in parts.nodes],
                        username=parts.username, password=parts.password,
                        max_connections=max_connections, **common)


def node_pool(cluster: RedisCluster, host: str, port: int, *, max_connections: int
              ) -> ConnectionPool:
    """A blocking pool to one node of ``cluster``, with its credentials and timeouts but
    no retries (see ``open_pool``): the broker's pipelines and links use these."""
    kwargs = cluster.get_connection_kwargs()
    keep: dict[str, Any] = {k: kwargs[k] for k in ("username", "password", "socket_timeout",
                                   "socket_connect_timeout", "health_check_interval",
                                   "socket_keepalive", "protocol") if k in kwargs}
    return BlockingConnectionPool(host=host, port=port, max_connections=max_connections,
                                  timeout=kwargs.get("socket_timeout"),
                                  retry=Retry(NoBackoff(), 0), **keep)
