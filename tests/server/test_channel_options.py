"""Per-channel options over real sockets: history, recovery, publish, anonymous access and
max_subscribers follow the channel's most specific pattern."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ANON
from tests.support.ws import connect, expect, request

pytestmark = pytest.mark.asyncio

CONFIG = """
history_size = 20

[channels."short:*"]
history_size = 2

[channels."live:*"]
recovery = false

[channels."news:*"]
publish = false

[channels."private:*"]
anonymous_read = false
anonymous_write = false

[channels."small:*"]
max_subscribers = 2

[channels."bytes:*"]
history_max_bytes = 10
"""


@pytest.fixture
def server(server_factory, tmp_path: Path):
    path = tmp_path / "staywire.toml"
    path.write_text(CONFIG)
    return server_factory(config=str(path), api_key="k", **ANON)


async def _replayed(url: str, channel: str, publish: int) -> tuple[list[int], bool]:
    async with connect(url) as ws:
        await expect(ws, "welcome")
        first = await request(ws, {"type": "sub", "id": 1, "channel": channel})
        for i in range(publish):
            await request(ws, {"type": "pub", "id": 10 + i, "channel": channel,
                               "data": f"m{i}"})
        for _ in range(publish):
            await expect(ws, "msg")
    async with connect(url) as ws:
        await expect(ws, "welcome")
        ws_msgs = []
        await ws.send(json.dumps({"type": "sub", "id": 1, "channel": channel,
                                  "since": {"epoch": first["epoch"], "offset": 0}}))
        while True:
            reply = await expect(ws)
            if reply["type"] == "ack":
                return ws_msgs, reply["recovered"]
            ws_msgs.append(reply["offset"])


async def test_history_and_recovery_follow_the_pattern(server) -> None:
    assert await _replayed(server.url, "short:1", 5) == ([4, 5], False)
    assert await _replayed(server.url, "other", 5) == ([1, 2, 3, 4, 5], True)
    assert await _replayed(server.url, "live:1", 3) == ([], False)
    # "m0".."m4" are 4 bytes each: 10 bytes keep the last two.
    assert await _replayed(server.url, "bytes:1", 5) == ([4, 5], False)


async def test_publish_false_leaves_publishing_to_the_backend(server) -> None:
    async with connect(server.url) as ws:
        await expect(ws, "welcome")
        await request(ws, {"type": "sub", "id": 1, "channel": "news:1"})
        refused = await request(ws, {"type": "pub", "id": 2, "channel": "news:1", "data": 1})
        assert refused["code"] == "forbidden" and "backend" in refused["reason"]
        body = json.dumps({"channel": "news:1", "data": {"from": "backend"}}).encode()
        req = urllib.request.Request(f"{server.api}/api/publish", data=body, method="POST",
                                     headers={"Authorization": "Bearer k"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        assert (await expect(ws, "msg"))["data"] == {"from": "backend"}


async def test_anonymous_options_override_anonymous_channels(server) -> None:
    async with connect(server.url) as ws:
        await expect(ws, "welcome")
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "private:1"}))["code"] \
            == "forbidden"
        assert (await request(ws, {"type": "pub", "id": 2, "channel": "private:1",
                                   "data": 1}))["code"] == "forbidden"
        assert (await request(ws, {"type": "sub", "id": 3, "channel": "public"}))["type"] \
            == "ack"


async def test_max_subscribers_answers_channel_full_and_frees_on_leave(server) -> None:
    async with connect(server.url) as a, connect(server.url) as b, connect(server.url) as c:
        for ws in (a, b, c):
            await expect(ws, "welcome")
        assert (await request(a, {"type": "sub", "id": 1, "channel": "small:1"}))["type"] == "ack"
        assert (await request(b, {"type": "sub", "id": 1, "channel": "small:1"}))["type"] == "ack"
        full = await request(c, {"type": "sub", "id": 1, "channel": "small:1"})
        assert full["code"] == "channel_full"
        # The connection lives on: other channels work, and a place that frees is taken.
        assert (await request(c, {"type": "sub", "id": 2, "channel": "small:2"}))["type"] == "ack"
        await request(a, {"type": "unsub", "id": 2, "channel": "small:1"})
        assert (await request(c, {"type": "sub", "id": 3, "channel": "small:1"}))["type"] == "ack"
