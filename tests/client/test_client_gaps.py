"""A live subscription that skips offsets resubscribes and fills the gap, in order."""

from __future__ import annotations

import asyncio

from staywire.client import Client, Message
from staywire.config import Config
from staywire.server.app import Server


async def test_live_gap_is_refilled_from_history_in_order() -> None:
    server = Server(Config(port=0, api_port=0, allow_anonymous=True, anonymous_channels=("*",)))
    await server.start()
    try:
        async with Client(f"ws://127.0.0.1:{server.port}/ws") as client:
            async with client.subscribe("g") as sub:
                await server.publish("g", 1)
                # Offsets 2 and 3 reach history but not this node's fan-out: what a node
                # sees when its broker lost publications it could not refill.
                broker = server.broker
                broker._on_publication = lambda pub: None  # type: ignore[attr-defined]
                await server.publish("g", 2)
                await server.publish("g", 3)
                broker._on_publication = server.hub.on_publication  # type: ignore[attr-defined]
                await server.publish("g", 4)
                got = []
                async with asyncio.timeout(5):
                    async for item in sub:
                        if isinstance(item, Message):
                            got.append((item.offset, item.data))
                        if len(got) == 4:
                            break
                assert got == [(1, 1), (2, 2), (3, 3), (4, 4)]
                assert client.stats["gaps"] == 1
    finally:
        await server.stop()
