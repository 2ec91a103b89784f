"""A client's publishes sent back to back are handled as one run (one round trip to the
Redis broker) and keep their order: acks in the order sent, offsets in that order, and
subscribers receive them in that order. Against a real redis-server."""

from __future__ import annotations

import json

from tests.conftest import ANON
from tests.support.redis_server import RedisServer, redis_server
from tests.support.ws import connect, expect, request

__all__ = ["redis_server"]


async def test_back_to_back_publishes_keep_their_order(server_factory,
                                                       redis_server: RedisServer) -> None:
    srv = server_factory(**ANON, broker=redis_server.url)
    url = f"ws://127.0.0.1:{srv.port}/ws"
    async with connect(url) as pub, connect(url) as sub:
        await expect(pub, "welcome")
        await expect(sub, "welcome")
        await request(sub, {"type": "sub", "id": 1, "channel": "runs"})
        n = 150  # over one run (64): the order holds across runs too
        for i in range(1, n + 1):
            await pub.send(json.dumps({"type": "pub", "id": i, "channel": "runs",
                                       "data": {"i": i}}))
        acks = [await expect(pub, "ack") for _ in range(n)]
        assert [a["id"] for a in acks] == list(range(1, n + 1))
        offsets = [a["offset"] for a in acks]
        assert offsets == list(range(offsets[0], offsets[0] + n))
        msgs = [await expect(sub, "msg") for _ in range(n)]
        assert [m["data"]["i"] for m in msgs] == list(range(1, n + 1))
        assert [m["offset"] for m in msgs] == offsets
