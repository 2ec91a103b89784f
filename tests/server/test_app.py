"""The application API in-process: RPC with typed params, hooks, publish, and the close
codes only application code can provoke (4503 from a hook, 1011 from a crash)."""

from __future__ import annotations

import msgspec
import pytest

from staywire.config import Config
from staywire.server.app import RpcContext, Server
from staywire.server.auth import Identity
from tests.support.ws import closed_with, connect, expect, request

pytestmark = pytest.mark.asyncio


class AddParams(msgspec.Struct):
    a: int
    b: int


@pytest.fixture
async def app():
    server = Server(Config(port=0, api_port=0, allow_anonymous=True, anonymous_channels=("*",),
                           ping_interval=5))
    events: list[str] = []

    @server.rpc("add")
    async def add(ctx: RpcContext, params: AddParams) -> dict:
        return {"sum": params.a + params.b, "client": ctx.client}

    @server.rpc("boom")
    async def boom(ctx: RpcContext) -> None:
        raise RuntimeError("secret detail")

    @server.on_connect
    def connect_hook(ctx: RpcContext) -> bool:
        events.append("connect")
        return ctx.data.setdefault("ok", True)

    @server.on_disconnect
    async def disconnect_hook(ctx: RpcContext) -> None:
        events.append("disconnect")

    await server.start()
    server.events = events  # type: ignore[attr-defined]
    yield server
    await server.stop()


async def test_rpc_with_typed_params(app: Server) -> None:
    async with connect(f"ws://127.0.0.1:{app.port}/ws") as ws:
        await expect(ws, "welcome")
        res = await request(ws, {"type": "rpc", "id": 1, "method": "add", "data": {"a": 2, "b": 3}})
        assert res["type"] == "result" and res["data"]["sum"] == 5
        bad = await request(ws, {"type": "rpc", "id": 2, "method": "add", "data": {"a": "x"}})
        assert bad["code"] == "invalid_params"
        missing = await request(ws, {"type": "rpc", "id": 3, "method": "nope", "data": 1})
        assert missing["code"] == "unknown_method"
        crash = await request(ws, {"type": "rpc", "id": 4, "method": "boom"})
        assert crash == {"type": "error", "id": 4, "code": "internal", "reason": "internal error"}
    assert app.events[:1] == ["connect"]  # type: ignore[attr-defined]


async def test_server_publish_reaches_subscribers(app: Server) -> None:
    async with connect(f"ws://127.0.0.1:{app.port}/ws") as ws:
        await expect(ws, "welcome")
        await request(ws, {"type": "sub", "id": 1, "channel": "feed"})
        result = await app.publish("feed", {"n": 1})
        msg = await expect(ws, "msg")
        assert msg["data"] == {"n": 1} and msg["offset"] == result.offset


async def test_connect_hook_refusal_closes_4503() -> None:
    server = Server(Config(port=0, api_port=0, allow_anonymous=True))
    server.on_connect(lambda ctx: False)
    await server.start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            assert (await closed_with(ws))[0] == 4503
    finally:
        await server.stop()


async def test_internal_failure_closes_1011_without_details() -> None:
    def broken(token: str) -> Identity:
        raise ZeroDivisionError("database password is hunter2")

    server = Server(Config(port=0, api_port=0), authenticator=broken)
    await server.start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws?token=x") as ws:
            code, reason = await closed_with(ws)
        assert code == 1011 and "hunter2" not in reason
        # The server keeps serving.
        async with connect(f"ws://127.0.0.1:{server.port}/ws?token=y") as ws:
            assert (await closed_with(ws))[0] == 1011
    finally:
        await server.stop()
