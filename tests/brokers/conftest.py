"""Fixtures of the broker tests: a real redis-server (see tests/support/redis_server.py)
and a real Redis Cluster (tests/support/redis_cluster.py)."""

from tests.support.redis_cluster import redis_cluster
from tests.support.redis_server import fresh_redis_server, redis_server

__all__ = ["fresh_redis_server", "redis_cluster", "redis_server"]
