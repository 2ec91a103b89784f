"""Heartbeats work before auth: a connection answering the server's ping while it has not
authenticated yet is not closed 4501; only ``auth_timeout`` (4508) ends one that never
authenticates. (Found by trying ``--ping-interval 1`` with a client slow to send auth.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import websockets

from tests.server.test_auth import SECRET, token
from tests.support.ws import closed_with, connect, expect


async def test_a_pong_before_auth_keeps_the_connection(server_factory) -> None:
    srv = server_factory(jwt_secret=SECRET, ping_interval=0.3, pong_timeout=2.0, auth_timeout=3.0)
    async with connect(srv.url) as ws:
        ping = await expect(ws, "ping")
        await ws.send(json.dumps({"type": "pong", "t": ping["t"]}))
        await ws.send(json.dumps({"type": "ping", "t": 7}))  # the client's own heartbeat
        assert (await expect(ws, "pong"))["t"] == 7
        await expect(ws, "ping")  # still open one interval later, pinged again
        await ws.send(json.dumps({"type": "auth", "token": token()}))
        assert (await expect(ws, "welcome"))["client"]


async def test_only_auth_timeout_ends_a_connection_that_answers_pings(server_factory) -> None:
    srv = server_factory(jwt_secret=SECRET, ping_interval=0.2, pong_timeout=2.0, auth_timeout=1.0)
    async with connect(srv.url) as ws:
        answered = 0
        deadline = time.monotonic() + 10
        with contextlib.suppress(websockets.ConnectionClosed):
            while time.monotonic() < deadline:  # answer every ping until the server closes
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if msg.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "t": msg["t"]}))
                    answered += 1
        code, _ = await closed_with(ws)
    assert code == 4508
    assert answered >= 2
