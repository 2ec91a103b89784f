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
``unavailable``. ``parse_sentinel_url`` is pure, so the configuration can check a URL
without connecting.

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
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

__all__ = ["CLUSTER_SCHEME", "SENTINEL_SCHEME", "ClusterURL", "RedisPool", "SentinelURL",
           "is_cluster_url", "is_redis_url", "node_pool", "open_cluster", "open_pool",
           "parse_cluster_url", "parse_sentinel_url"]

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"
_DEFAULT_SENTINEL_PORT = 26379
_DEFAULT_PORT = 6379
_QUERY = frozenset({"sentinel_password"})


@dataclass(frozen=True, slots=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterURL:
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", SENTINEL_SCHEME, CLUSTER_SCHEME))


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def _host_port(item: str, what: str = "sentinel",
               default: int = _DEFAULT_SENTINEL_PORT) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:26379
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad {what} address {item!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"bad {what} address {item!r}: no host")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad {what} address {item!r}: the port must be 1-65535")
    return host, int(port_text)


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts = netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return username, password, hosts


def parse_cluster_url(url: str) -> ClusterURL:
    """The parts of a ``redis+cluster://`` URL; ``ValueError`` says what is wrong (never
    with the password)."""
    if not url.startswith(CLUSTER_SCHEME):
        raise ValueError(f"a Cluster URL starts with {CLUSTER_SCHEME}")
    rest = url[len(CLUSTER_SCHEME):]
    if "?" in rest:
        raise ValueError("a Cluster URL takes no parameters")
    netloc, _, path = rest.partition("/")
    if path.strip("/"):
        raise ValueError("a Cluster URL has no path: a cluster has database 0 only "
                         "(redis+cluster://host:port[,host:port]/)")
    username, password, hosts = _userinfo(netloc)
    if not hosts.strip(","):
        raise ValueError("no cluster node: name at least one host:port "
                         "(redis+cluster://host:port[,host:port]/)")
    nodes = tuple(_host_port(item.strip(), "cluster node", _DEFAULT_PORT)
                  for item in hosts.split(",") if item.strip())
    return ClusterURL(nodes, username, password)


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a ``redis+sentinel://`` URL; ``ValueError`` says what is wrong.

    The messages never contain the password."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}")
    rest, _, query = url[len(SENTINEL_SCHEME):].partition("?")
    netloc, _, path = rest.partition("/")
    username, password, hosts = _userinfo(netloc)
    if not hosts.strip(","):
        raise ValueError("no sentinel: name at least one host:port "
                         "(redis+sentinel://host:port[,host:port]/SERVICE/DB)")
    sentinels = tuple(_host_port(item.strip()) for item in hosts.split(",") if item.strip())
    parts = path.split("/")
    service = unquote(parts[0])
    if not service:
        raise ValueError("no service name: redis+sentinel://host:port/SERVICE/DB, SERVICE as "
                         "in the sentinels' 'sentinel monitor' line")
    db_text = parts[1] if len(parts) > 1 else ""
    if len(parts) > 2 and any(parts[2:]):
        raise ValueError("a Sentinel URL's path is /SERVICE/DB, nothing after the database")
    if db_text and not db_text.isdigit():
        raise ValueError(f"the database must be a number, got {db_text!r}")
    options = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(options) - _QUERY)
    if unknown:
        raise ValueError(f"unknown Sentinel URL parameter {unknown[0]!r} "
                         f"(known: {', '.join(sorted(_QUERY))})")
    sentinel_password = options.get("sentinel_password", [None])[-1]
    return SentinelURL(sentinels, service, int(db_text or 0), username, password,
                       sentinel_password or None)


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
