"""A client's publishes on the Redis broker are handed to it in the frame callback (no
task per publish) and pipelined: they keep their order (acks in the order sent, offsets
in that order, subscribers receive them in that order), and a Redis outage still answers
each one with ``unavailable``. Against a real redis-server."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import ANON
from tests.support.redis_server import RedisServer, fresh_redis_server, redis_server
from tests.support.ws import connect, expect, request

__all__ = ["fresh_redis_server", "redis_server"]


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


async def test_a_publish_during_an_outage_is_unavailable_then_acked_again(
        server_factory, fresh_redis_server: RedisServer) -> None:
    srv = server_factory(**ANON, broker=fresh_redis_server.url)
    async with connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
        await expect(ws, "welcome")
        assert (await request(ws, {"type": "pub", "id": 1, "channel": "c", "data": 1}))[
            "type"] == "ack"
        fresh_redis_server.stop()
        for rid in (2, 3):  # each publish gets its own answer, nothing silent
            reply = await request(ws, {"type": "pub", "id": rid, "channel": "c", "data": rid})
            assert (reply["type"], reply["code"]) == ("error", "unavailable")
        fresh_redis_server.start()
        for attempt in range(100):  # bounded: until the broker's pool reconnects
            reply = await request(ws, {"type": "pub", "id": 10 + attempt, "channel": "c",
                                       "data": 4})
            if reply["type"] == "ack":
                break
            await asyncio.sleep(0.05)
        assert reply["type"] == "ack"
