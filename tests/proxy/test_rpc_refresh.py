"""RPC and refresh proxies over real sockets.

rpc: a method no ``@server.rpc`` handler takes is forwarded when ``rpc_proxy_url``
matches it; the backend's result or error is the reply. refresh: at the expiry the
connect proxy gave, the backend extends the session or ends it (4401); while it
cannot answer, the connection stays open.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from staywire.server.app import RpcContext
from tests.proxy.backend import GARBAGE, HUGE, SLOW, Backend
from tests.support.ws import closed_with, connect, expect, request

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def server(backend: Backend, staywire):  # type: ignore[no-untyped-def]
    backend.answer["connect"] = {"result": {"user": "42"}}
    srv = await staywire(connect_proxy_url=f"{backend.url}/connect",
                         rpc_proxy_url=(f"shop.* {backend.url}/rpc",), proxy_breaker_failures=50)

    @srv.rpc("local")
    async def local(ctx: RpcContext) -> str:
        return "here"

    return srv


async def open_ws(server):  # type: ignore[no-untyped-def]
    ws = await connect(f"ws://127.0.0.1:{server.port}/ws")
    await expect(ws, "welcome")
    return ws


async def test_rpc_result_error_and_routing(backend: Backend, server) -> None:
    backend.answer["rpc"] = lambda body: (
        {"result": {"data": {"total": sum(body["data"])}}} if body["method"] == "shop.sum"
        else {"error": {"code": "invalid_params", "reason": "no such item"}})
    async with await open_ws(server) as ws:
        res = await request(ws, {"type": "rpc", "id": 1, "method": "shop.sum", "data": [1, 2]})
        assert res == {"type": "result", "id": 1, "data": {"total": 3}}
        err = await request(ws, {"type": "rpc", "id": 2, "method": "shop.buy", "data": {}})
        assert err == {"type": "error", "id": 2, "code": "invalid_params",
                       "reason": "no such item"}
        # A registered method stays local; an unmatched one is still unknown.
        assert (await request(ws, {"type": "rpc", "id": 3, "method": "local"}))["data"] == "here"
        nope = await request(ws, {"type": "rpc", "id": 4, "method": "other"})
        assert nope["code"] == "unknown_method"
    first = backend.seen["rpc"][0]
    assert first["method"] == "shop.sum" and first["data"] == [1, 2] and first["user"] == "42"
    assert len(backend.seen["rpc"]) == 2


@pytest.mark.parametrize("answer", [SLOW, GARBAGE, HUGE, 503, {"result": {"dta": 1}}])
async def test_rpc_failure_is_unavailable_and_never_retried(backend: Backend, server,
                                                            answer: object) -> None:
    backend.answer["rpc"] = answer
    async with await open_ws(server) as ws:
        reply = await request(ws, {"type": "rpc", "id": 1, "method": "shop.x", "data": 1})
        assert reply["code"] == "unavailable"
        assert (await request(ws, {"type": "rpc", "id": 3, "method": "local"}))["type"] == "result"
    assert len(backend.seen["rpc"]) == 1  # an rpc may have been acted on: sent once


async def test_rpc_backend_down_then_back(backend: Backend, server) -> None:
    backend.answer["rpc"] = {"result": {"data": "ok"}}
    async with await open_ws(server) as ws:
        await backend.stop()
        assert (await request(ws, {"type": "rpc", "id": 1, "method": "shop.a"}))["code"] == \
            "unavailable"
        await backend.start()
        res = await request(ws, {"type": "rpc", "id": 2, "method": "shop.a"})
        assert res["data"] == "ok"


# ---------------------------------------------------------------- refresh


async def refresh_server(backend: Backend, staywire):  # type: ignore[no-untyped-def]
    backend.answer["connect"] = lambda body: {"result": {"user": "42",
                                                         "expire_at": time.time() + 0.5}}
    return await staywire(connect_proxy_url=f"{backend.url}/connect",
                          refresh_proxy_url=f"{backend.url}/refresh")


async def test_refresh_extends_the_session(backend: Backend, staywire) -> None:
    backend.answer["refresh"] = lambda body: {"result": {"expire_at": time.time() + 60}}
    server = await refresh_server(backend, staywire)
    async with await open_ws(server) as ws:
        await backend.wait_seen("refresh")
        # Still open well past the first expiry, and asked once, not at every sweep.
        reply = await request(ws, {"type": "sub", "id": 1, "channel": "a"})
        assert reply["code"] == "forbidden"  # no grants, but answered: the connection lives
        assert len(backend.seen["refresh"]) == 1
    body = backend.seen["refresh"][0]
    assert body["user"] == "42" and set(body) == {"client", "ip", "headers", "user"}


@pytest.mark.parametrize("answer,code", [
    ({"result": {"expired": True}}, 4401),
    ({"disconnect": {"code": 4503, "reason": "logged out"}}, 4503),
])
async def test_refresh_ends_the_session(backend: Backend, staywire, answer: object,
                                        code: int) -> None:
    backend.answer["refresh"] = answer
    server = await refresh_server(backend, staywire)
    async with await open_ws(server) as ws:
        assert (await closed_with(ws))[0] == code


@pytest.mark.parametrize("answer", [SLOW, GARBAGE, 500, "down"])
async def test_refresh_failure_keeps_the_connection(backend: Backend, staywire,
                                                    answer: object) -> None:
    server = await refresh_server(backend, staywire)
    if answer == "down":
        async with await open_ws(server) as ws:
            await backend.stop()
            await _stays_open_past_expiry(ws, server)
        return
    backend.answer["refresh"] = answer
    async with await open_ws(server) as ws:
        await backend.wait_seen("refresh")
        await _stays_open_past_expiry(ws, server)


async def _stays_open_past_expiry(ws, server) -> None:  # type: ignore[no-untyped-def]
    """The expiry came, the refresh failed: the connection is not dropped for it."""
    outcomes = server.backend.client.outcomes
    deadline = time.monotonic() + 5
    while not any(event == "refresh" and kind != "ok" for event, kind in outcomes):
        assert time.monotonic() < deadline, f"no failed refresh seen: {dict(outcomes)}"
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline
    reply = await request(ws, {"type": "rpc", "id": 2, "method": "none"})
    assert reply["code"] == "unknown_method"  # answered: still open
