"""Binary publications over real sockets (protocol v2, docs/protocol.md *Binary frames*):
subprotocol negotiation, welcome.binary, a binary pub acked as a text one, its binary
``msg`` to v2 subscribers and base64 text ``msg`` to v1 ones, recovery of a mixed stream,
the limits and options a binary pub passes, on the memory and the Redis broker."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websockets

from staywire.protocol.binary import encode_frame, msg_frame
from tests.conftest import ANON
from tests.support.redis_server import RedisServer, redis_server
from tests.support.ws import T, connect, expect, request

__all__ = ["redis_server"]

V2 = ["staywire.v2", "staywire.v1"]
CONFIG = """
max_data_size = 1000

[channels."text:*"]
binary = false
"""


def pub_frame(rid: int, channel: str, data: bytes, **fields: Any) -> bytes:
    header = {"type": "pub", "id": rid, "channel": channel, **fields}
    return encode_frame(msgspec.json.encode(header), data)


async def next_frame(ws: Any, timeout: float = 5.0) -> str | bytes:
    """The next frame that is not a server ping: ``bytes`` for a binary frame."""
    async with asyncio.timeout(timeout * T):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str) and json.loads(frame).get("type") == "ping":
                continue
            return frame


async def reply(ws: Any) -> dict[str, Any]:
    frame = await next_frame(ws)
    assert isinstance(frame, str), frame
    return json.loads(frame)


@pytest.fixture
def server(server_factory, tmp_path: Path):
    path = tmp_path / "staywire.toml"
    path.write_text(CONFIG)
    return server_factory(config=str(path), max_message_size=4096, **ANON)


async def test_v2_is_selected_when_offered_and_welcome_says_what_binary_may_be(server) -> None:
    async with connect(server.url, subprotocols=V2) as ws:
        assert ws.subprotocol == "staywire.v2"
        welcome = await expect(ws, "welcome")
        assert welcome["binary"] == {"max_data_size": 1000, "max_transfer_size": 256 * 2**20,
                                     "transfer_timeout": 30.0, "transfer_window": 8}
    async with connect(server.url) as ws:  # a v1 client sees no change
        assert ws.subprotocol == "staywire.v1"
        assert "binary" not in await expect(ws, "welcome")
    async with connect(server.url, subprotocols=None) as ws:  # none offered: v1
        assert ws.subprotocol is None
        assert "binary" not in await expect(ws, "welcome")


async def test_a_server_with_binary_off_selects_v1_only(server_factory) -> None:
    srv = server_factory(no_binary=True, **ANON)
    async with connect(srv.url, subprotocols=V2) as ws:
        assert ws.subprotocol == "staywire.v1"
        assert "binary" not in await expect(ws, "welcome")
        await ws.send(pub_frame(1, "room", b"\x00"))
        assert (await reply(ws))["code"] == "binary_unsupported"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(srv.url, subprotocols=["staywire.v2"]):
            pass
    assert info.value.response.status_code == 400


async def _fan_out(url: str) -> None:
    async with connect(url, subprotocols=V2) as pub, connect(url, subprotocols=V2) as v2, \
            connect(url) as v1:
        for ws in (pub, v2, v1):
            await expect(ws, "welcome")
        for ws in (v2, v1):
            await request(ws, {"type": "sub", "id": 1, "channel": "room"})
        data = b"\x00\xff\x10" + bytes(range(256))
        await pub.send(pub_frame(7, "room", data, key="k-7"))
        ack = await reply(pub)
        assert ack["type"] == "ack" and ack["id"] == 7
        epoch, offset = ack["epoch"], ack["offset"]
        assert await next_frame(v2) == msg_frame("room", epoch, offset, data)
        assert await reply(v1) == {"type": "msg", "channel": "room", "epoch": epoch,
                                   "offset": offset, "data": base64.b64encode(data).decode(),
                                   "encoding": "base64"}
        # The same key again: a duplicate, nothing delivered; then JSON in the same stream.
        await pub.send(pub_frame(8, "room", b"again", key="k-7"))
        assert await reply(pub) == {"type": "ack", "id": 8, "epoch": epoch, "offset": offset,
                                    "duplicate": True}
        await request(pub, {"type": "pub", "id": 9, "channel": "room", "data": {"n": 1}})
        for ws in (v2, v1):
            msg = await reply(ws)
            assert (msg["offset"], msg["data"]) == (offset + 1, {"n": 1})
        # Recovery replays the same frames, each connection its own kind.
        chunk = {"transfer": "t1", "seq": 0, "at": 0}
        await pub.send(pub_frame(10, "room", b"\x01\x02", chunk=chunk))
        assert (await reply(pub))["offset"] == offset + 2
    async with connect(url, subprotocols=V2) as v2, connect(url) as v1:
        for ws in (v2, v1):
            await expect(ws, "welcome")
            await ws.send(json.dumps({"type": "sub", "id": 2, "channel": "room",
                                      "since": {"epoch": epoch, "offset": offset - 1}}))
        assert await next_frame(v2) == msg_frame("room", epoch, offset, data)
        assert (await reply(v2))["offset"] == offset + 1
        assert await next_frame(v2) == msg_frame("room", epoch, offset + 2, b"\x01\x02",
                                                 msgspec.json.encode(chunk))
        assert (await reply(v2))["recovered"] is True
        replayed = [await reply(v1) for _ in range(4)]
        assert [m.get("encoding") for m in replayed[:3]] == ["base64", None, "base64"]
        assert base64.b64decode(replayed[0]["data"]) == data
        assert replayed[2]["chunk"] == chunk
        assert replayed[3]["type"] == "ack" and replayed[3]["recovered"] is True


async def test_binary_fan_out_and_recovery_on_memory(server) -> None:
    await _fan_out(server.url)


@pytest.mark.redis
async def test_binary_fan_out_and_recovery_on_redis(server_factory,
                                                    redis_server: RedisServer) -> None:
    srv = server_factory(broker=redis_server.url, **ANON)
    await _fan_out(srv.url)


async def test_a_binary_pub_passes_the_checks_a_text_pub_does(server) -> None:
    async with connect(server.url, subprotocols=V2) as ws:
        await expect(ws, "welcome")
        await ws.send(pub_frame(1, "text:1", b"\x00"))  # the channel's binary = false
        assert await reply(ws) == {"type": "error", "id": 1, "code": "forbidden",
                                   "reason": "binary data is not allowed on this channel"}
        await request(ws, {"type": "pub", "id": 2, "channel": "text:1", "data": 1})
        await ws.send(pub_frame(3, "room", b"\x00" * 1001))  # over max_data_size
        err = await reply(ws)
        assert (err["id"], err["code"]) == (3, "bad_request")
        await ws.send(pub_frame(4, "room", b"ok"))
        assert (await reply(ws))["type"] == "ack"


async def test_binary_frames_pay_the_byte_rate_limit(server_factory) -> None:
    srv = server_factory(rate_bytes=100, rate_bytes_burst=2000, rate_messages=1000,
                         rate_burst=1000, max_message_size=1024, **ANON)
    async with connect(srv.url, subprotocols=V2) as ws:
        await expect(ws, "welcome")
        for i in range(1, 4):  # 3 x ~940 bytes against a 2000-byte burst
            await ws.send(pub_frame(i, "room", b"\x00" * 900))
        replies = [await reply(ws) for _ in range(3)]
        assert [r["type"] for r in replies[:2]] == ["ack", "ack"]
        assert (replies[2]["type"], replies[2]["code"]) == ("error", "rate_limited")
