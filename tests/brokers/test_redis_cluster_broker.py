"""RedisBroker on a ``redis+cluster://`` URL: the broker contract on a real 3-primary
Redis Cluster, channels spread over every primary, and publications over sharded pub/sub.

One cluster for the session (tests/support/redis_cluster.py); tests keep apart by key
prefix. A slot moving under traffic is tests/deploy/test_cluster.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from staywire.brokers.redis import RedisBroker
from staywire.exceptions import BrokerUnavailable
from tests.brokers.contract import BrokerContract, MakeNode, Node, Received
from tests.support.redis_cluster import RedisClusterGroup

pytestmark = pytest.mark.redis


def cluster_factory(cluster: RedisClusterGroup) -> tuple[MakeNode, list[Node], str]:
    prefix = f"c{uuid.uuid4().hex[:10]}:"
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        broker = RedisBroker(cluster.url, prefix=prefix,
                             **{"reconnect_backoff_max": 0.1, **options})
        node = Node(broker, Received())
        nodes.append(node)
        await node.broker.start(node.received)
        return node

    return make, nodes, prefix


@pytest.fixture
async def make_node(redis_cluster: RedisClusterGroup) -> AsyncIterator[MakeNode]:
    make, nodes, _ = cluster_factory(redis_cluster)
    yield make
    for node in nodes:
        await node.broker.close()


class TestRedisBrokerOnCluster(BrokerContract):
    pass


async def test_channels_spread_over_every_primary_and_each_shard_publishes_its_own(
        redis_cluster: RedisClusterGroup) -> None:
    make, nodes, prefix = cluster_factory(redis_cluster)
    try:
        a, b = await make(), await make()
        channels = [f"room:{i}" for i in range(30)]
        for channel in channels:
            await b.broker.subscribe(channel)
        for channel in channels:
            await a.broker.publish(channel, b'"%s"' % channel.encode(), key="k")
        for channel in channels:
            assert [p.data for p in await b.received.wait_for(channel, 1)] == [
                b'"%s"' % channel.encode()]
        # Every key of a channel (meta, stream, idempotency key, shard channel) in one
        # slot, and the 30 channels on all 3 primaries.
        owners: dict[int, set[str]] = {}
        for channel in channels:
            keys = [f"{prefix}{{{channel}}}:meta", f"{prefix}{{{channel}}}:stream",
                    f"{prefix}{{{channel}}}:key:k", f"{prefix}pub:{{{channel}}}"]
            (server,) = {redis_cluster.owner_of(k).port for k in keys}
            owners.setdefault(server, set()).add(channel)
            with redis.Redis(port=server) as primary:
                assert primary.exists(*keys[:3]) == 3
                # Sharded pub/sub: the channel's subscribers are on its shard only
                # (classic PUBLISH would have reached every node of the cluster).
                assert primary.pubsub_shardnumsub(keys[3]) == [(keys[3].encode(), 1)]
        assert sorted(owners) == sorted(s.port for s in redis_cluster.servers)
    finally:
        for node in nodes:
            await node.broker.close()


async def test_a_cluster_that_does_not_answer_is_unavailable_not_fatal() -> None:
    # No node of the URL answers: the node starts anyway (not ready), and every call is
    # refused as unavailable, naming why, until the slot map can be read.
    from staywire_bench.ports import free_port

    broker = RedisBroker(f"redis+cluster://127.0.0.1:{free_port()}/", reconnect_backoff_max=0.1)
    await broker.start(Received())
    try:
        assert not broker.available
        with pytest.raises(BrokerUnavailable):
            await broker.ping()
        with pytest.raises(BrokerUnavailable, match="no known primary serves slot"):
            await broker.publish("room", b"1")
        with pytest.raises(BrokerUnavailable):
            await broker.subscribe("room")
        with pytest.raises(BrokerUnavailable):
            await broker.load_session("s1")
    finally:
        await broker.close()


async def test_a_node_started_before_the_cluster_answers_becomes_ready_by_itself(
        redis_cluster: RedisClusterGroup) -> None:
    # The URL's node answers only later (a proxy to nowhere, then to a node): the
    # broker keeps trying to read the map, backing off, and then links every primary.
    from staywire_bench.ports import free_port
    from tests.brokers.contract import eventually
    from tests.support.tcp_proxy import TcpProxy

    async with TcpProxy("127.0.0.1", free_port()) as proxy:
        broker = RedisBroker(f"redis+cluster://127.0.0.1:{proxy.port}/",
                             prefix=f"late{uuid.uuid4().hex[:6]}:", reconnect_backoff_max=0.1)
        received = Received()
        await broker.start(received)
        try:
            assert not broker.available
            proxy.upstream_port = redis_cluster.servers[0].port
            await eventually(lambda: broker.available, timeout=5.0)
            await broker.subscribe("room")
            first = await broker.publish("room", b"1")
            assert [p.offset for p in await received.wait_for("room", 1)] == [first.offset]
        finally:
            await broker.close()


async def test_links_cut_by_every_primary_subscribe_all_their_channels_again(
        redis_cluster: RedisClusterGroup) -> None:
    # A link that comes back subscribes every channel of its primary again, channels of
    # many slots: one SSUBSCRIBE may name channels of one slot only (else CROSSSLOT).
    from tests.brokers.contract import eventually

    make, nodes, _ = cluster_factory(redis_cluster)
    try:
        a, b = await make(), await make()
        channels = [f"cut:{i}" for i in range(20)]
        for channel in channels:
            await b.broker.subscribe(channel)
            await a.broker.publish(channel, b"1")
        for server in redis_cluster.servers:
            with redis_cluster.client(server) as admin:
                assert admin.client_kill_filter(_type="pubsub") >= 1
        for channel in channels:  # published while the links may be down: caught up
            await a.broker.publish(channel, b"2")
        await eventually(lambda: all(b.received.offsets(c) == [1, 2] for c in channels),
                         timeout=10.0)
        assert b.broker.available
    finally:
        for node in nodes:
            await node.broker.close()


async def test_a_slot_no_primary_serves_is_unavailable_at_once_then_serves_again(
        redis_cluster: RedisClusterGroup) -> None:
    # CLUSTERDOWN is an outage, not a move: answered unavailable without the redirect
    # budget's seconds of waiting; once the slot is served again, publishes go through.
    import time

    from redis.crc import key_slot

    make, nodes, prefix = cluster_factory(redis_cluster)
    slot = key_slot(b"{down}")
    owner = redis_cluster.owner_of("{down}")
    try:
        node = await make()
        assert (await node.broker.publish("down", b"1")).offset == 1
        for server in redis_cluster.servers:
            with redis_cluster.client(server) as admin:
                admin.execute_command("CLUSTER", "DELSLOTS", slot)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="cluster is down|CLUSTERDOWN"):
            await node.broker.publish("down", b"2")
        assert time.monotonic() - started < 1.0
    finally:
        with redis_cluster.client(owner) as admin:
            admin.execute_command("CLUSTER", "ADDSLOTS", slot)
        redis_cluster.wait_ok()
    try:
        from tests.brokers.contract import eventually

        async def served() -> None:
            for _ in range(100):
                try:
                    await node.broker.publish("down", b"3")
                    return
                except BrokerUnavailable:
                    await asyncio.sleep(0.05)
            raise AssertionError("the slot is not served again")

        await served()
        await eventually(lambda: node.broker.available)
    finally:
        for n in nodes:
            await n.broker.close()


async def test_a_channel_whose_keys_moved_first_publishes_at_once_while_its_slot_migrates(
        redis_cluster: RedisClusterGroup) -> None:
    # Mid-reshard: the channel's keys are on the target already, the slot not yet. The
    # source answers ASK; the publish goes to the target after ASKING, at once, instead
    # of waiting (up to the redirect budget) for the slot's move to end. (A publish with
    # a new idempotency key cannot: the importing node runs a multi-key script only
    # when all its keys exist, and answers TRYAGAIN until the slot has moved.)
    import time

    from redis.crc import key_slot

    make, nodes, prefix = cluster_factory(redis_cluster)
    slot = key_slot(b"{ask}")
    source = redis_cluster.owner_of("{ask}")
    target = next(s for s in redis_cluster.servers if s is not source)
    try:
        a, b = await make(), await make()
        await b.broker.subscribe("ask")
        assert (await a.broker.publish("ask", b"1", key="k1")).offset == 1
        ids = redis_cluster._node_ids()
        with redis_cluster.client(source) as src, redis_cluster.client(target) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            assert len(keys) == 3  # meta, stream, the idempotency key
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            started = time.monotonic()
            second = await a.broker.publish("ask", b"2")
            again = await a.broker.publish("ask", b"1", key="k1")  # read on the target
            elapsed = time.monotonic() - started
        redis_cluster.migrate_slot(slot, target)  # the rest of the move (SETSLOT NODE)
        with redis_cluster.client(target) as check:
            assert check.xlen(f"{prefix}{{ask}}:stream") == 2  # the second ran there
        assert (second.offset, again.offset, again.duplicate) == (2, 1, True)
        assert elapsed < 1.0, f"{elapsed:.2f} s: the publishes waited for the move"
        await a.broker.publish("ask", b"3")
        assert [p.offset for p in await b.received.wait_for("ask", 3)] == [1, 2, 3]
    finally:
        for node in nodes:
            await node.broker.close()
