"""Binary data through the server API: ``POST /api/publish`` with
``application/octet-stream`` (channel and key in the query or headers), both Python API
clients' ``publish(bytes)``, and history answering bytes as base64."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from staywire.api import ApiClient, AsyncApiClient, ApiError, Batch
from staywire.protocol.binary import msg_frame
from tests.api.conftest import API_KEY
from tests.server.test_binary import V2, next_frame
from tests.support.ws import connect, expect, request

DATA = b"\x00\xff\x10" + bytes(range(256))


def raw_post(srv, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.api_port, timeout=5)
    try:
        conn.request("POST", target, body, {"Authorization": f"Bearer {API_KEY}",
                                            "Content-Type": "application/octet-stream",
                                            **headers})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


async def test_octet_stream_publish_reaches_v2_and_v1_subscribers(api_server, api) -> None:
    async with connect(api_server.url, subprotocols=V2) as v2, connect(api_server.url) as v1:
        for ws in (v2, v1):
            await expect(ws, "welcome")
            await request(ws, {"type": "sub", "id": 1, "channel": "room:1"})
        reply = api.publish("room:1", DATA, key="img-1")
        assert not reply.duplicate
        assert await next_frame(v2) == msg_frame("room:1", reply.epoch, reply.offset, DATA)
        msg = await expect(v1, "msg")
        assert (msg["encoding"], base64.b64decode(msg["data"])) == ("base64", DATA)
        again = api.publish("room:1", bytearray(b"other"), key="img-1")
        assert (again.offset, again.duplicate) == (reply.offset, True)
        status, body = raw_post(api_server, "/api/publish", b"\x01",
                                {"Staywire-Channel": "room:1", "Staywire-Key": "img-2"})
        assert status == 200 and body["offset"] == reply.offset + 1
        assert await next_frame(v2) == msg_frame("room:1", reply.epoch, reply.offset + 1, b"\x01")
    api.publish("room:1", {"json": True})
    h = api.history("room:1")
    assert [(p.data, p.encoding) for p in h.publications] == [
        (base64.b64encode(DATA).decode(), "base64"), ("AQ==", "base64"), ({"json": True}, None)]
    async with AsyncApiClient(api_server.api, API_KEY) as aio:
        r = await aio.publish("room:1", memoryview(b"\x02"))
        assert r.offset == reply.offset + 3


def test_a_binary_publish_is_checked_like_a_json_one(api_server, api) -> None:
    for target, headers, why in [
        ("/api/publish", {}, "needs the channel"),
        ("/api/publish?channel=bad%20name", {}, "publish: Expected `str` matching"),
        ("/api/publish?channel=a&key=", {}, "Expected `str` of length >= 1"),
    ]:
        status, body = raw_post(api_server, target, b"\x00", headers)
        assert (status, body["error"]["code"]) == (400, "bad_request"), target
        assert why in body["error"]["reason"], body
    status, body = raw_post(api_server, "/api/publish?channel=a", b"\x00" * 61441, {})
    assert (status, body["error"]["code"]) == (413, "bad_request")
    with pytest.raises(ApiError):
        api.publish("bad name", b"\x00")
    with pytest.raises(TypeError):
        Batch().publish("a", b"\x00")
    with pytest.raises(TypeError):
        api.broadcast(["a", "b"], b"\x00")
    assert isinstance(api, ApiClient)
