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
