"""Health, readiness, metrics and the publish API over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support.servers import metric
from tests.support.ws import connect, expect, request

pytestmark = pytest.mark.asyncio


def http(url: str, body: dict | bytes | None = None, key: str | None = None,
         method: str | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_health_and_readiness(anon_server) -> None:
    assert http(f"{anon_server.http}/healthz") == (200, b"ok\n")
    assert http(f"{anon_server.http}/readyz")[0] == 200
    assert http(f"{anon_server.api}/healthz")[0] == 200
    assert http(f"{anon_server.api}/readyz")[0] == 200
    assert http(f"{anon_server.http}/metrics")[0] == 404  # metrics stay on the internal port


async def test_metrics_count_traffic(anon_server) -> None:
    async with connect(anon_server.url) as ws:
        await expect(ws, "welcome")
        await request(ws, {"type": "sub", "id": 1, "channel": "m"})
        await request(ws, {"type": "pub", "id": 2, "channel": "m", "data": 1})
        assert metric(anon_server.api, "staywire_connections") == 1
        assert metric(anon_server.api, "staywire_publications_total") == 1
        assert metric(anon_server.api, "staywire_messages_in_total") == 2
        assert metric(anon_server.api, "staywire_messages_out_total") >= 4


async def test_publish_api(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], api_key="s3cret")
    async with connect(srv.url) as ws:
        await expect(ws, "welcome")
        await request(ws, {"type": "sub", "id": 1, "channel": "news"})
        status, body = http(f"{srv.api}/api/publish",
                            {"channel": "news", "data": {"headline": "hi"}, "key": "n1"}, "s3cret")
        assert status == 200 and json.loads(body)["offset"] == 1
        status, body = http(f"{srv.api}/api/publish",
                            {"channel": "news", "data": {"headline": "hi"}, "key": "n1"}, "s3cret")
        assert status == 200 and json.loads(body) == {**json.loads(body), "duplicate": True}
        msg = await expect(ws, "msg")
        assert msg["data"] == {"headline": "hi"} and msg["offset"] == 1
    assert http(f"{srv.api}/api/publish", {"channel": "news", "data": 1}, "wrong")[0] == 401
    assert http(f"{srv.api}/api/publish", {"channel": "news", "data": 1})[0] == 401
    assert http(f"{srv.api}/api/publish", {"channel": "bad name", "data": 1}, "s3cret")[0] == 400
    assert http(f"{srv.api}/api/publish", b"{not json", "s3cret")[0] == 400
    assert http(f"{srv.api}/api/publish", method="GET")[0] == 405


async def test_publish_api_is_off_without_a_key(anon_server) -> None:
    assert http(f"{anon_server.api}/api/publish", {"channel": "a", "data": 1}, "x")[0] == 403


async def test_static_client_files(server_factory) -> None:
    srv = server_factory(**{"allow_anonymous": True, "demo": True})
    status, body = http(f"{srv.http}/staywire.js")
    assert status == 200 and b"export" in body
    req = urllib.request.urlopen(f"{srv.http}/staywire.js")
    assert "javascript" in req.headers["Content-Type"]
    assert http(f"{srv.http}/staywire.d.ts")[0] == 200
    assert http(f"{srv.http}/codes.js")[0] == 200
    status, body = http(f"{srv.http}/")
    assert status == 200 and b"<html" in body.lower()
    for bad in ["/../pyproject.toml", "/%2e%2e/pyproject.toml", "/nope.js", "/static/codes.js",
                "/package.json"]:  # npm packaging metadata, not for browsers
        assert http(f"{srv.http}{bad}")[0] == 404, bad


async def test_demo_page_is_off_by_default(anon_server) -> None:
    assert http(f"{anon_server.http}/")[0] == 404
