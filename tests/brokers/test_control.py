"""The control plane on a real Redis, with plain LocalNodes: answers, failures, bad input.

The server's own commands are tested through the API (tests/api/test_cluster.py); here
the plane alone: what comes back when a node fails a command or does not know it, and
that a foreign message on the control channel does not cost the link.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from staywire.brokers.control import MemoryControl, NodeFailed
from staywire.brokers.redis_control import RedisControl
from staywire.exceptions import ConfigError
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


class Node:
    def __init__(self, node_id: str, delay: float = 0.0) -> None:
        self.node_id = node_id
        self.delay = delay
        self.ran: list[tuple[str, bytes]] = []

    async def execute(self, command: str, args: bytes) -> bytes:
        self.ran.append((command, args))
        await asyncio.sleep(self.delay)
        if command == "fail":
            raise NodeFailed(f"{self.node_id} refused")
        if command != "echo":
            raise NodeFailed(f"unknown command {command!r}")
        return b'{"from":"%s","args":%s}' % (self.node_id.encode(), args)


async def _planes(url: str) -> AsyncIterator[tuple[str, list[RedisControl]]]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    made = [RedisControl(url, prefix=prefix) for _ in range(3)]
    yield prefix, made
    for plane in made:
        await plane.close()


@pytest.fixture(params=["redis", "cluster"])
async def planes(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[RedisControl]]]:
    """On one Redis, and on a Redis Cluster (sharded pub/sub, node keys in many slots)."""
    url = request.getfixturevalue("redis_server" if request.param == "redis"
                                  else "redis_cluster").url
    async for made in _planes(url):
        yield made


@pytest.fixture
async def single_planes(redis_server: RedisServer
                        ) -> AsyncIterator[tuple[str, list[RedisControl]]]:
    async for made in _planes(redis_server.url):
        yield made


async def test_every_node_answers_and_failures_are_named(planes) -> None:
    _, (a, b, c) = planes
    nodes = [Node("a"), Node("b"), Node("c")]
    for plane, node in zip((a, b, c), nodes, strict=True):
        await plane.start(node)
    out = await b.run("echo", b"[1]", 2.0)
    assert out.results == {n: b'{"from":"%s","args":[1]}' % n.encode() for n in "abc"}
    assert out.missing == []
    failed = await a.run("fail", b"{}", 2.0)
    assert failed.results == {} and failed.failed == {n: f"{n} refused" for n in "abc"}
    unknown = await a.run("subscribe", b"{}", 2.0)  # a command of a later version
    assert unknown.missing == ["a", "b", "c"] and "unknown command" in unknown.failed["b"]


async def test_a_slow_node_is_missing_after_the_timeout(planes) -> None:
    _, (a, b, _) = planes
    await a.start(Node("a"))
    await b.start(Node("b", delay=5.0))
    started = time.monotonic()
    out = await a.run("echo", b"0", 0.5)
    assert 0.5 <= time.monotonic() - started < 2.0
    assert list(out.results) == ["a"] and out.failed == {"b": "no answer within 0.5s"}


async def test_foreign_messages_do_not_break_the_link_and_close_withdraws(single_planes,
                                                                          redis_server) -> None:
    prefix, (a, b, _) = single_planes
    await a.start(Node("a"))
    await b.start(Node("b"))
    redis = Redis.from_url(redis_server.url)
    try:
        for junk in (b"not json", b'{"id": 1}', b"[]"):
            await redis.publish(f"{prefix}control", junk)
            await redis.publish(f"{prefix}control:a", junk)
        out = await a.run("echo", b"1", 2.0)
        assert sorted(out.results) == ["a", "b"]
        await b.close()
        assert await a.live_nodes() == {"a"}  # at once, not after the TTL
        assert await redis.smembers(f"{prefix}nodes") == {b"a"}
    finally:
        await redis.aclose()


async def test_memory_control_is_this_node_only() -> None:
    plane = MemoryControl()
    await plane.start(Node("only"))
    out = await plane.run("echo", b"2", 1.0)
    assert out.results == {"only": b'{"from":"only","args":2}'} and out.missing == []
    await plane.close()


def test_a_heartbeat_period_over_its_ttl_is_refused() -> None:
    with pytest.raises(ConfigError):
        RedisControl("redis://127.0.0.1:1/0", period=5, ttl=5)


async def test_a_node_that_crashes_on_a_command_answers_internal_error(planes) -> None:
    _, (a, b, _) = planes

    class Broken(Node):
        async def execute(self, command: str, args: bytes) -> bytes:
            raise ZeroDivisionError("a bug")

    await a.start(Node("a"))
    await b.start(Broken("b"))
    out = await a.run("echo", b"1", 2.0)
    assert list(out.results) == ["a"] and out.failed == {"b": "internal error"}
    assert sorted((await a.run("echo", b"2", 2.0)).failed) == ["b"]  # b still listens
