"""Subscribe and publish proxies over real sockets: allow, refuse, replace, and failures.

The channels a route matches are decided by the backend alone; the others by the
identity's grants, as without proxies. A failed call is ``unavailable`` for that one
request and the connection stays open.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.proxy.backend import GARBAGE, HUGE, SLOW, Backend, metric
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


@pytest.mark.parametrize("answer", FAILURES)
async def test_subscribe_failure_is_unavailable_and_the_connection_stays(
        backend: Backend, server, answer: object) -> None:
    backend.answer["subscribe"] = answer
    async with await open_ws(server) as ws:
        started = time.monotonic()
        reply = await request(ws, {"type": "sub", "id": 1, "channel": "room:1"})
        assert reply["code"] == "unavailable"
        assert time.monotonic() - started < 3.0
        assert (await request(ws, {"type": "sub", "id": 2, "channel": "open:1"}))["type"] == "ack"


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


@pytest.mark.parametrize("answer", FAILURES)
async def test_publish_failure_is_unavailable_and_never_retried(
        backend: Backend, server, answer: object) -> None:
    backend.answer["publish"] = answer
    async with await open_ws(server) as ws:
        await request(ws, {"type": "sub", "id": 1, "channel": "room:1"})
        reply = await request(ws, {"type": "pub", "id": 2, "channel": "room:1", "data": 1})
        assert reply["code"] == "unavailable"
        backend.answer["publish"] = {"result": {}}
        ack = await request(ws, {"type": "pub", "id": 3, "channel": "room:1", "data": 3})
        assert ack["type"] == "ack" and ack["offset"] == 1  # the failed one was not published
    # A publish may have been acted on: sent once, even after a 500.
    assert len(backend.seen["publish"]) == 2


async def test_backend_down_then_recovery(backend: Backend, server) -> None:
    api = f"http://127.0.0.1:{server.api_port}"
    async with await open_ws(server) as ws:
        await backend.stop()
        for i in range(4):
            reply = await request(ws, {"type": "sub", "id": 10 + i, "channel": f"room:{i}"})
            assert reply["code"] == "unavailable"
            reply = await request(ws, {"type": "pub", "id": 20 + i, "channel": "room:x",
                                       "data": i})
            assert reply["code"] == "unavailable"
        assert await metric(api, "staywire_proxy_breaker_state", 'event="subscribe"') == 2.0
        await backend.start()
        # After proxy_breaker_reset each circuit lets a probe through, which closes it.
        ack = await until_ok(ws, lambda rid: {"type": "sub", "id": rid, "channel": "room:back"})
        assert ack["type"] == "ack"
        ack = await until_ok(ws, lambda rid: {"type": "pub", "id": rid, "channel": "room:back",
                                              "data": 1})
        assert ack["offset"] == 1
        assert await metric(api, "staywire_proxy_breaker_state", 'event="subscribe"') == 0.0
        assert await metric(api, "staywire_proxy_breaker_state", 'event="publish"') == 0.0


async def until_ok(ws, make, timeout: float = 5.0) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Send ``make(id)`` until it is acked; only ``unavailable`` may come meanwhile."""
    deadline = time.monotonic() + timeout
    for rid in range(1000, 2000):  # bounded
        reply = await request(ws, make(rid))
        if reply["type"] == "ack":
            return reply
        assert reply["code"] == "unavailable" and time.monotonic() < deadline, reply
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline
    raise AssertionError("never acked")
