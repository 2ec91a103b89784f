"""The application API with bytes (protocol v2): a binary ``rpc`` hands the handler its
bytes, a handler that answers bytes sends a binary ``result`` (base64 text under v1), and
``Server.publish`` of bytes is a binary publication."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from staywire.config import Config
from staywire.protocol.binary import encode_frame, msg_frame, result_frame
from staywire.server.app import RpcContext, Server
from tests.server.test_binary import V2, next_frame, reply
from tests.support.ws import connect, expect, request

pytestmark = pytest.mark.asyncio


class AddParams(msgspec.Struct):
    a: int
    b: int


@pytest.fixture
async def app():
    server = Server(Config(port=0, api_port=0, allow_anonymous=True, anonymous_channels=("*",)))

    @server.rpc("reverse")
    async def reverse(ctx: RpcContext, params: bytes) -> bytes:
        return params[::-1]

    @server.rpc("size")
    def size(ctx: RpcContext, params: bytes) -> dict:
        return {"n": len(params)}

    @server.rpc("add")
    def add(ctx: RpcContext, params: AddParams) -> int:
        return params.a + params.b

    await server.start()
    yield server
    await server.stop()


def rpc_frame(rid: int, method: str, data: bytes) -> bytes:
    return encode_frame(b'{"type":"rpc","id":%d,"method":"%s"}' % (rid, method.encode()), data)


async def test_binary_rpc_params_and_results(app: Server) -> None:
    url = f"ws://127.0.0.1:{app.port}/ws"
    async with connect(url, subprotocols=V2) as ws:
        await expect(ws, "welcome")
        await ws.send(rpc_frame(1, "reverse", b"\x00\x01\xff"))
        assert await next_frame(ws) == result_frame(1, b"\xff\x01\x00")
        await ws.send(rpc_frame(2, "size", b"\x00" * 10))  # bytes in, JSON out
        assert await reply(ws) == {"type": "result", "id": 2, "data": {"n": 10}}
        await ws.send(rpc_frame(3, "add", b"\x00"))  # takes JSON params
        err = await reply(ws)
        assert (err["id"], err["code"]) == (3, "invalid_params")
        await ws.send(rpc_frame(4, "nope", b""))
        assert (await reply(ws))["code"] == "unknown_method"
    async with connect(url) as ws:  # v1: a bytes answer is base64 text
        await expect(ws, "welcome")
        res = await request(ws, {"type": "rpc", "id": 5, "method": "reverse",
                                 "data": base64.b64encode(b"ab").decode()})
        assert res == {"type": "result", "id": 5, "data": base64.b64encode(b"ba").decode(),
                       "encoding": "base64"}


async def test_server_publish_of_bytes_is_a_binary_publication(app: Server) -> None:
    url = f"ws://127.0.0.1:{app.port}/ws"
    async with connect(url, subprotocols=V2) as v2, connect(url) as v1:
        for ws in (v2, v1):
            await expect(ws, "welcome")
            await request(ws, {"type": "sub", "id": 1, "channel": "feed"})
        result = await app.publish("feed", memoryview(b"\x00raw"))
        assert await next_frame(v2) == msg_frame("feed", result.epoch, result.offset, b"\x00raw")
        msg = json.loads(await next_frame(v1))
        assert (msg["encoding"], base64.b64decode(msg["data"])) == ("base64", b"\x00raw")
