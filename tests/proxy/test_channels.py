"""Subscribe and publish proxies over real sockets: routing and grants, data replaced.

The channels a route matches are decided by the backend alone; the others by the
identity's grants, as without proxies. Timeouts, malformed answers, an outage and
the recovery from it are cells of test_grid.py.
"""

from __future__ import annotations


import pytest

from tests.proxy.backend import GARBAGE, HUGE, SLOW, Backend
from tests.support.ws import connect, expect, request

pytestmark = pytest.mark.asyncio

FAILURES = [SLOW, GARBAGE, HUGE, 500, {"error": {"code": "nonsense"}},
            {"result": {}, "error": {"code": "forbidden"}}]


async def open_ws(server):  # type: ignore[no-untyped-def]
    ws = await connect(f"ws://127.0.0.1:{server.port}/ws", additional_headers={
        "Cookie": "sessionid=s1"})
    await expect(ws, "welcome")
    return ws


@pytest.fixture
async def server(backend: Backend, staywire):  # type: ignore[no-untyped-def]
    backend.answer["connect"] = {"result": {"user": "42", "channels": ["open:*"]}}
    return await staywire(
        connect_proxy_url=f"{backend.url}/connect",
        subscribe_proxy_url=(f"room:* {backend.url}/subscribe",),
        publish_proxy_url=(f"room:* {backend.url}/publish",),
        proxy_breaker_failures=3)


async def test_subscribe_allow_and_refuse(backend: Backend, server) -> None:
    backend.answer["subscribe"] = lambda body: (
        {"result": {}} if body["channel"] == "room:ok"
        else {"error": {"code": "forbidden", "reason": "not a member"}})
    async with await open_ws(server) as ws:
        ok = await request(ws, {"type": "sub", "id": 1, "channel": "room:ok"})
        assert ok["type"] == "ack"
        no = await request(ws, {"type": "sub", "id": 2, "channel": "room:vip"})
        assert no == {"type": "error", "id": 2, "code": "forbidden", "reason": "not a member"}
        # Outside the route, the grants decide and the backend is not asked.
        assert (await request(ws, {"type": "sub", "id": 3, "channel": "open:1"}))["type"] == "ack"
        assert (await request(ws, {"type": "sub", "id": 4, "channel": "x"}))["code"] == "forbidden"
    seen = backend.seen["subscribe"]
    assert [b["channel"] for b in seen] == ["room:ok", "room:vip"]
    assert seen[0]["user"] == "42" and seen[0]["headers"] == {"Cookie": "sessionid=s1"}
    assert "data" not in seen[0]


async def test_publish_allow_replace_refuse(backend: Backend, server) -> None:
    def decide(body: dict) -> dict:  # type: ignore[type-arg]
        if body["data"].get("bad"):
            return {"error": {"code": "forbidden", "reason": "moderated"}}
        if body["data"].get("shout"):
            return {"result": {"data": {"text": body["data"]["text"].upper()}}}
        return {"result": {}}

    backend.answer["publish"] = decide
    async with await open_ws(server) as ws:
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "room:1"}))["type"] == "ack"
        ack = await request(ws, {"type": "pub", "id": 2, "channel": "room:1",
                                 "data": {"text": "hi"}})
        assert ack["type"] == "ack"
        assert (await expect(ws, "msg"))["data"] == {"text": "hi"}
        await request(ws, {"type": "pub", "id": 3, "channel": "room:1",
                           "data": {"text": "hey", "shout": True}})
        assert (await expect(ws, "msg"))["data"] == {"text": "HEY"}
        refused = await request(ws, {"type": "pub", "id": 4, "channel": "room:1",
                                     "data": {"bad": True}})
        assert refused == {"type": "error", "id": 4, "code": "forbidden", "reason": "moderated"}
        # Nothing of the refused one reaches subscribers: the next msg is the next publish.
        await request(ws, {"type": "pub", "id": 5, "channel": "room:1", "data": {"n": 5}})
        assert (await expect(ws, "msg"))["data"] == {"n": 5}
    assert backend.seen["publish"][0]["data"] == {"text": "hi"}


