"""Broker failures on paths that degrade instead of failing a request are never silent.

A resume that could not be loaded says why in the welcome (``resume_failed``);
failed session loads and saves (and broker unsubscribes) count in
``staywire_broker_errors`` and log one warning per outage, not one per failure.
Against a real redis-server that the test stops.
"""

from __future__ import annotations

import asyncio

from tests.conftest import ANON
from tests.support.redis_server import RedisServer, fresh_redis_server
from tests.support.servers import metric
from tests.support.ws import closed_with, connect, expect, request

__all__ = ["fresh_redis_server"]


async def _welcome(url: str) -> dict:
    async with connect(url) as ws:
        return await expect(ws, "welcome")


async def _wait_metric(api: str, name: str, labels: str, at_least: float) -> float:
    async with asyncio.timeout(10):
        while (value := metric(api, name, labels)) < at_least:
            await asyncio.sleep(0.05)
    return value


async def test_a_resume_during_a_broker_outage_says_so(server_factory,
                                                       fresh_redis_server: RedisServer) -> None:
    srv = server_factory(**ANON, broker=fresh_redis_server.url)
    base = f"ws://127.0.0.1:{srv.port}/ws"
    async with connect(base) as ws:
        session = (await expect(ws, "welcome"))["session"]
        await request(ws, {"type": "sub", "id": 1, "channel": "room"})
    resumed = await _welcome(f"{base}?session={session}")
    assert resumed["resumed"] is True and "resume_failed" not in resumed

    fresh_redis_server.stop()
    for _ in range(3):
        welcome = await _welcome(f"{base}?session={session}")
        assert welcome["resumed"] is False
        assert welcome["resume_failed"] == "unavailable"
        assert welcome["session"] != session
    assert metric(srv.api, "staywire_broker_errors_total", 'operation="load_session"') == 3
    assert srv.log().count("broker load_session failed") == 1  # once per outage


async def test_a_session_save_that_fails_is_counted_and_logged(server_factory,
                                                            fresh_redis_server: RedisServer
                                                            ) -> None:
    srv = server_factory(**ANON, broker=fresh_redis_server.url)
    async with connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
        await expect(ws, "welcome")
        await request(ws, {"type": "sub", "id": 1, "channel": "room"})
        fresh_redis_server.stop()
        await ws.close()
        await closed_with(ws)
    # Closing saves the session (the record a resume needs): it fails, not silently. (The
    # Redis broker's unsubscribe never fails: with the link down there is nothing to undo.)
    await _wait_metric(srv.api, "staywire_broker_errors_total", 'operation="save_session"', 1)
    assert srv.log().count("broker save_session failed") == 1


async def test_an_unknown_or_foreign_session_is_named_in_the_welcome(server_factory) -> None:
    srv = server_factory(**ANON)
    base = f"ws://127.0.0.1:{srv.port}/ws"
    welcome = await _welcome(f"{base}?session=abcdef")
    assert welcome["resumed"] is False and welcome["resume_failed"] == "unknown"
    fresh = await _welcome(base)  # no session asked for: nothing to explain
    assert "resume_failed" not in fresh
