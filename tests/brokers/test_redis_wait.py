"""What replication means for a publish: ``wait_replicas``, and a primary demoted under it.

``wait_replicas``: a publish is acknowledged only once ``WAIT`` saw it on the replicas.
Against a real primary and a real replica; the replica is paused (SIGSTOP) to lag."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from staywire.brokers.redis import RedisBroker
from staywire.exceptions import BrokerUnavailable
from tests.brokers.contract import Received
from tests.support.redis_sentinel import wait_replicating
from tests.support.redis_server import RedisServer, fresh_redis_server

pytestmark = pytest.mark.redis

__all__ = ["fresh_redis_server"]


@pytest.fixture
def replica(fresh_redis_server: RedisServer) -> Iterator[RedisServer]:
    primary = redis.Redis(port=fresh_redis_server.port)
    # A full sync at once, not after Redis' default 5 s wait for more replicas.
    primary.config_set("repl-diskless-sync-delay", 0)
    with RedisServer(extra=("--replicaof", "127.0.0.1", str(fresh_redis_server.port))) as r:
        wait_replicating(fresh_redis_server.port, 1)
        yield r
        r.resume()
    primary.close()


async def _broker(server: RedisServer, **options: object) -> RedisBroker:
    broker = RedisBroker(server.url, prefix=f"w{uuid.uuid4().hex[:8]}:",
                         reconnect_backoff_max=0.1, **options)  # type: ignore[arg-type]
    await broker.start(Received())
    return broker


@pytest.fixture
async def waiting(fresh_redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    broker = await _broker(fresh_redis_server, wait_replicas=1, wait_timeout=0.5)
    yield broker
    await broker.close()


async def test_without_a_replica_a_publish_is_unavailable_and_never_acked(
        waiting: RedisBroker) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="0 of 1 replicas"):
        await waiting.publish("room", b"x", key="k1")
    assert time.monotonic() - started < 2  # bounded by wait_timeout, not a command timeout
    # The primary answers: the node stays ready (/readyz 200), only publishes are refused.
    assert waiting.available
    # It did run on the primary: a retry with its key is answered from the key, and
    # still not acknowledged while no replica has it.
    with pytest.raises(BrokerUnavailable):
        await waiting.publish("room", b"x", key="k1")
    # History reads and other commands do not wait for replicas.
    assert (await waiting.history("room", None)).position.offset == 1


async def test_a_lagging_replica_holds_the_ack_until_the_retry_finds_it_replicated(
        replica: RedisServer, waiting: RedisBroker) -> None:
    first = await waiting.publish("room", b"a", key="k1")
    assert (first.offset, first.duplicate) == (1, False)
    replica.pause()
    with pytest.raises(BrokerUnavailable, match="replicas within 0.5 s"):
        await waiting.publish("room", b"b", key="k2")
    replica.resume()
    # The client's retry: the same key, answered with the original offset once the
    # replica has it (the dedupe hit writes, so this WAIT covers the original too).
    again = await waiting.publish("room", b"b", key="k2")
    assert (again.offset, again.duplicate) == (2, True)


async def test_with_wait_off_a_lagging_replica_does_not_hold_publishes(
        fresh_redis_server: RedisServer, replica: RedisServer) -> None:
    broker = await _broker(fresh_redis_server)
    try:
        replica.pause()
        assert (await broker.publish("room", b"a", key="k1")).offset == 1
    finally:
        replica.resume()
        await broker.close()


async def test_a_demoted_primary_drops_the_publish_connection(
        fresh_redis_server: RedisServer) -> None:
    # What a node sees when the primary it is connected to became a replica (a healed
    # partition after a failover): READONLY. The publish is unavailable, and the
    # connection is dropped, so the next one asks (Sentinel) for the primary again.
    broker = await _broker(fresh_redis_server)
    admin = redis.Redis(port=fresh_redis_server.port)
    try:
        await broker.publish("room", b"a")
        ids = {c["id"] for c in admin.client_list()}
        with RedisServer() as other:
            admin.replicaof("127.0.0.1", other.port)
            with pytest.raises(BrokerUnavailable, match="READONLY|read only"):
                await broker.publish("room", b"b")
            admin.replicaof("NO", "ONE")
        assert (await broker.publish("room", b"c")).offset >= 1
        # The connection that got READONLY is gone (an admin one may remain).
        assert len(ids - {c["id"] for c in admin.client_list()}) >= 1
    finally:
        admin.close()
        await broker.close()
