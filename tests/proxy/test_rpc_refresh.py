"""RPC and refresh proxies over real sockets.

rpc: a method no ``@server.rpc`` handler takes is forwarded when ``rpc_proxy_url``
matches it; the backend's result or error is the reply. refresh: at the expiry the
connect proxy gave, the backend extends the session or ends it (4401). Timeouts,
malformed answers, an outage and the recovery from it are cells of test_grid.py.
"""

from __future__ import annotations

import time

import pytest

from staywire.server.app import RpcContext
from tests.proxy.backend import Backend
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


async def test_refresh_expired_ends_the_session(backend: Backend, staywire) -> None:
    """``expired: true`` is a result, not a refusal: 4401, and the reconnect asks connect."""
    backend.answer["refresh"] = {"result": {"expired": True}}
    server = await refresh_server(backend, staywire)
    async with await open_ws(server) as ws:
        assert (await closed_with(ws))[0] == 4401


