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
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

__all__ = ["SENTINEL_SCHEME", "RedisPool", "SentinelURL", "is_redis_url", "open_pool",
           "parse_sentinel_url"]

SENTINEL_SCHEME = "redis+sentinel://"
_DEFAULT_SENTINEL_PORT = 26379
_QUERY = frozenset({"sentinel_password"})


@dataclass(frozen=True, slots=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", SENTINEL_SCHEME))


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:26379
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad sentinel address {item!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"bad sentinel address {item!r}: no host")
    if not port_text:
        return host, _DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad sentinel address {item!r}: the port must be 1-65535")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a ``redis+sentinel://`` URL; ``ValueError`` says what is wrong.

    The messages never contain the password."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}")
    rest, _, query = url[len(SENTINEL_SCHEME):].partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts = netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
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


def open_pool(url: str, *, max_connections: int, connect_timeout: float,
              command_timeout: float, health_check_interval: float = 0) -> RedisPool:
    """The pool for ``url`` (connects lazily). ``ValueError`` for a malformed URL.

    No retries inside redis-py (``Retry(NoBackoff(), 0)``): retrying a publish whose
    reply was lost could publish it twice. RESP2 unless the URL asks for 3: it saves the
    HELLO round trip on every connect."""
    common: dict[str, Any] = {"protocol": 2, "socket_connect_timeout": connect_timeout,
                              "socket_timeout": command_timeout,
                              "retry": Retry(NoBackoff(), 0),
                              "health_check_interval": health_check_interval}
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
