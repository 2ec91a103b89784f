"""The Redis broker's publish pipeline (staywire.brokers.redis_publish), on a real Redis:
the publishes of one tick go in one write on one connection, in the order they were
made, each with its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from staywire.brokers.base import Position
from staywire.exceptions import BrokerError, BrokerUnavailable
from tests.brokers.contract import MakeNode
from tests.brokers.test_redis_broker import node_factory, prefix_of
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_node(redis_server: RedisServer) -> AsyncIterator[MakeNode]:
    make, nodes = node_factory(redis_server)
    yield make
    for node in nodes:
        await node.broker.close()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _clients(admin: Redis) -> int:
    return int((await admin.info("clients"))["connected_clients"])


async def test_publishes_of_one_tick_share_a_connection_and_keep_their_order(
        make_node: MakeNode, admin: Redis) -> None:
    a, b = await make_node(), await make_node()
    await b.broker.subscribe("room")
    await a.broker.publish("room", b"0")  # a's pool holds its one publish connection now
    before = await _clients(admin)
    results = await asyncio.gather(*(a.broker.publish("room", b"%d" % i)
                                     for i in range(1, 201)))
    # One round trip on one connection, not one connection per publish in flight.
    assert await _clients(admin) <= before
    assert [r.offset for r in results] == list(range(2, 202))  # the order they were made
    delivered = await b.received.wait_for("room", 201)
    assert [p.data for p in delivered] == [b"%d" % i for i in range(201)]


async def test_a_flushed_script_cache_is_loaded_again(make_node: MakeNode,
                                                     admin: Redis) -> None:
    node = await make_node()
    await node.broker.publish("c", b"1")
    await admin.script_flush()
    results = await asyncio.gather(*(node.broker.publish("c", b"%d" % i) for i in range(2, 12)))
    assert [r.offset for r in results] == list(range(2, 12))


async def test_one_failing_publish_does_not_fail_the_others_of_its_batch(
        make_node: MakeNode, admin: Redis) -> None:
    node = await make_node()
    await admin.set(f"{prefix_of(node)}{{broken}}:meta", "not a hash")  # WRONGTYPE for HGET
    outcomes = await asyncio.gather(node.broker.publish("ok", b"1"),
                                    node.broker.publish("broken", b"2"),
                                    node.broker.publish("ok", b"3"), return_exceptions=True)
    assert isinstance(outcomes[1], BrokerError)
    assert not isinstance(outcomes[1], BrokerUnavailable)  # Redis answered: not an outage
    assert [getattr(r, "offset", None) for r in (outcomes[0], outcomes[2])] == [1, 2]


async def test_a_batch_cut_by_an_outage_is_unavailable_and_the_broker_recovers(
        fresh_redis_server: RedisServer) -> None:
    make, nodes = node_factory(fresh_redis_server)
    try:
        node = await make()
        await node.broker.publish("c", b"1")
        fresh_redis_server.stop()
        outcomes = await asyncio.gather(*(node.broker.publish("c", b"x") for _ in range(5)),
                                        return_exceptions=True)
        assert all(isinstance(o, BrokerUnavailable) for o in outcomes), outcomes
        fresh_redis_server.start()
        async with asyncio.timeout(10):
            while True:
                try:
                    result = await node.broker.publish("c", b"back")
                    break
                except BrokerUnavailable:
                    await asyncio.sleep(0.05)
        assert result.offset >= 1
    finally:
        for n in nodes:
            await n.broker.close()


async def test_history_reads_and_session_commands_share_the_pipeline(
        make_node: MakeNode, admin: Redis) -> None:
    """A reconnect storm's recovery reads and session saves: one connection, not one
    per request in flight."""
    node = await make_node()
    first = await node.broker.publish("room", b"1")
    await node.broker.save_session("s0", b"r", 30)
    before = await _clients(admin)
    results = await asyncio.gather(*(node.broker.history("room", Position(first.epoch, 0))
                                     for _ in range(100)),
                                   *(node.broker.save_session(f"s{i}", b"r%d" % i, 30)
                                     for i in range(1, 101)))
    assert await _clients(admin) <= before
    assert all([p.data for p in r.publications] == [b"1"] for r in results[:100])
    assert await node.broker.load_session("s42") == b"r42"
    await node.broker.delete_session("s42")
    assert await node.broker.load_session("s42") is None


async def test_a_history_read_after_a_script_flush_loads_its_own_script(
        make_node: MakeNode, admin: Redis) -> None:
    node = await make_node()
    first = await node.broker.publish("c", b"1")
    await admin.script_flush()
    history, second = await asyncio.gather(node.broker.history("c", Position(first.epoch, 0)),
                                           node.broker.publish("c", b"2"))
    assert [p.offset for p in history.publications] == [1]
    assert second.offset == 2
