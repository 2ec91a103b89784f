"""Redis broker URLs, parsed with no connection and no import of redis-py.

The configuration checks ``--broker`` with these at start-up, so a node on the memory
broker never imports redis-py (restart time is reconnect-storm time); the URL forms are
described in ``redis_pool``, which opens them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

__all__ = ["CLUSTER_SCHEME", "SENTINEL_SCHEME", "ClusterURL", "SentinelURL", "is_cluster_url",
           "is_redis_url", "parse_cluster_url", "parse_sentinel_url"]

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
