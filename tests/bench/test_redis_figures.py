"""The bench's Redis figures: redis-server's CPU from ``INFO cpu`` (against a real
redis-server), and the Redis / memory goals computed from a summary."""

from __future__ import annotations

import socket

import pytest
from redis import Redis

from staywire_bench.ports import free_port
from staywire_bench.redis_cpu import redis_cpu_seconds
from staywire_bench.redis_goals import redis_goals
from tests.support.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


@pytest.mark.redis
def test_redis_cpu_grows_with_work(redis_server: RedisServer) -> None:
    before = redis_cpu_seconds(redis_server.port)
    assert before is not None and before > 0
    client = Redis(port=redis_server.port)
    try:
        for i in range(2000):  # bounded: enough work to be seen in microseconds
            client.set(f"bench-cpu-{i % 10}", "x" * 100)
    finally:
        client.close()
    after = redis_cpu_seconds(redis_server.port)
    assert after is not None and after > before


def test_redis_cpu_is_none_when_nothing_answers() -> None:
    port = free_port()
    with socket.socket() as probe:  # nothing listens there
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert redis_cpu_seconds(port, timeout=0.5) is None


def test_goals_are_ratios_of_the_same_run() -> None:
    summary = {
        "staywire": {"fanout_rate": 100_000.0, "fanout_p99": 10.0, "publish_rate": 40_000.0,
                     "storm_s": 1.0},
        "staywire-redis": {"fanout_rate": 85_000.0, "fanout_p99": 16.0,
                           "publish_rate": 19_000.0, "storm_s": 1.4,
                           "fanout_redis_us": 14.0, "publish_redis_us": 12.0,
                           "fanout_redis_publishes": 1.0},
    }
    rows = {r["goal"].split(":")[0]: r for r in redis_goals(summary)}
    assert [(r["ratio"], r["met"]) for r in rows.values()] == [
        (0.85, True), (1.6, False), (0.475, False), (pytest.approx(1.4), True),
        (None, True)]
    assert redis_goals({"staywire": summary["staywire"]}) == []  # no Redis run: no rows
