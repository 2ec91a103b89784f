"""Fixtures of the broker tests: a real redis-server (see tests/support/redis_server.py);
the session's Redis Cluster comes from tests/conftest.py."""

from tests.support.redis_server import fresh_redis_server, redis_server

__all__ = ["fresh_redis_server", "redis_server"]
