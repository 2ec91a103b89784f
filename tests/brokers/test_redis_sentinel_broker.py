"""RedisBroker on a ``redis+sentinel://`` URL passes the broker contract.

Every connection (the publish pipeline, the pub/sub link, pings) goes through redis-py's
SentinelConnectionPool, which asks the sentinels for the primary; the contract shows that
nothing of the broker depends on talking to a fixed address. One real Sentinel group for
the module (tests/support/redis_sentinel.py); tests keep apart by key prefix. The
failover itself is tests/deploy/test_sentinel.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from staywire.brokers.redis import RedisBroker
from tests.brokers.contract import BrokerContract, MakeNode, Node, Received
from tests.support.redis_sentinel import SentinelGroup
from tests.support.redis_server import REDIS_SERVER

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"{REDIS_SERVER} is not installed")
    with SentinelGroup() as g:
        yield g


@pytest.fixture
async def make_node(group: SentinelGroup) -> AsyncIterator[MakeNode]:
    prefix = f"s{uuid.uuid4().hex[:10]}:"
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        broker = RedisBroker(group.url, prefix=prefix,
                             **{"reconnect_backoff_max": 0.1, **options})
        node = Node(broker, Received())
        nodes.append(node)
        await node.broker.start(node.received)
        return node

    yield make
    for node in nodes:
        await node.broker.close()


class TestRedisBrokerOnSentinel(BrokerContract):
    pass


async def test_with_no_sentinel_left_open_connections_serve_and_new_ones_cannot() -> None:
    # The quorum lost: nothing changes while the primary lives and the connections stay
    # up; a connection that must be made again cannot learn the primary's address.
    import redis

    from staywire.exceptions import BrokerUnavailable
    from tests.brokers.contract import eventually

    with SentinelGroup() as g:
        received = Received()
        broker = RedisBroker(g.url, prefix="q:", reconnect_backoff_max=0.1)
        await broker.start(received)
        try:
            await broker.subscribe("room")
            await broker.publish("room", b"1")
            for s in g.sentinels:
                s.stop()
            assert (await broker.publish("room", b"2")).offset == 2
            await eventually(lambda: received.offsets("room") == [1, 2])
            admin = redis.Redis(port=g.primary.port)
            admin.client_kill_filter(_type="normal", skipme=True)
            admin.client_kill_filter(_type="pubsub")
            admin.close()
            # The first publish may meet the killed connection; the next one connects anew.
            with pytest.raises(BrokerUnavailable):
                await broker.publish("room", b"3")
            with pytest.raises(BrokerUnavailable, match="No master found"):
                await broker.publish("room", b"3")
            await eventually(lambda: not broker.available)
        finally:
            await broker.close()
