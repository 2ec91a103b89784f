"""MemoryBroker against the broker contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from staywire.brokers.memory import MemoryBroker
from tests.brokers.contract import BrokerContract, MakeNode, Node, Received


@pytest.fixture
async def make_node() -> AsyncIterator[MakeNode]:
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        node = Node(MemoryBroker(**options), Received())
        await node.broker.start(node.received)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.broker.close()


class TestMemoryBroker(BrokerContract):
    pass
