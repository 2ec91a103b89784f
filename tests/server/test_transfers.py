"""Transfers on the server over real sockets (docs/protocol.md *Transfers*): chunks
published in order with their derived keys, and every bad input of issue 11 that
concerns transfers answered with its error while the connection (and every other one)
is served on: a transfer never started, out of order, over ``max_transfer_size``, a
last chunk whose hash does not match (and the abort its subscribers get), a transfer
never finished (forgotten after ``transfer_timeout``). On memory and on Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from staywire.protocol.binary import encode_frame
from tests.conftest import ANON
from tests.support.redis_server import redis_server
from tests.support.ws import T, connect, expect

__all__ = ["redis_server"]

V2 = ["staywire.v2", "staywire.v1"]
CONFIG = """
max_data_size = 1000
max_transfer_size = 2500
transfer_timeout = 0.5
"""


def chunk_frame(rid: int, channel: str, data: bytes, **chunk: Any) -> bytes:
    header = {"type": "pub", "id": rid, "channel": channel, "chunk": chunk}
    return encode_frame(msgspec.json.encode(header), data)


async def reply(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout * T):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str):
                msg = json.loads(frame)
                if msg.get("type") != "ping":
                    return msg


async def binary_msg(ws: Any, timeout: float = 5.0) -> tuple[dict[str, Any], bytes]:
    async with asyncio.timeout(timeout * T):
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):
                n = frame[1] << 8 | frame[2]
                return json.loads(frame[3:3 + n]), frame[3 + n:]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def server(request, server_factory, tmp_path: Path):
    path = tmp_path / "staywire.toml"
    path.write_text(CONFIG)
    options: dict[str, Any] = {"config": str(path), "max_message_size": 4096, **ANON}
    if request.param == "redis":
        options["broker"] = request.getfixturevalue("redis_server").url
    return server_factory(**options)


async def _welcomed(url: str) -> Any:
    ws = await connect(url, subprotocols=V2).__aenter__()
    welcome = await expect(ws, "welcome")
    assert welcome["binary"]["transfer_window"] == 8
    return ws


async def test_a_transfer_reaches_a_subscriber_in_order_and_resends_are_duplicates(
        server) -> None:
    payload = bytes(range(256)) * 9  # 2304 bytes: 3 chunks
    parts = [payload[:1000], payload[1000:2000], payload[2000:]]
    sub, pub = await _welcomed(server.url), await _welcomed(server.url)
    try:
        await sub.send(json.dumps({"type": "sub", "id": 1, "channel": "files"}))
        assert (await reply(sub))["type"] == "ack"
        await pub.send(chunk_frame(1, "files", parts[0], transfer="t1", seq=0, at=0,
                                   size=len(payload), meta={"name": "a.bin"}))
        await pub.send(chunk_frame(2, "files", parts[1], transfer="t1", seq=1, at=1000))
        acks = [await reply(pub), await reply(pub)]
        assert [a["type"] for a in acks] == ["ack", "ack"]
        # Chunk 1 again (a resend after a reconnect): the dedupe path, not a second copy.
        await pub.send(chunk_frame(3, "files", parts[1], transfer="t1", seq=1, at=1000))
        again = await reply(pub)
        assert again["duplicate"] is True and again["offset"] == acks[1]["offset"]
        await pub.send(chunk_frame(4, "files", parts[2], transfer="t1", seq=2, at=2000,
                                   last=True, sha256=_digest(payload)))
        assert (await reply(pub))["type"] == "ack"
        got = [await binary_msg(sub) for _ in range(3)]
        assert b"".join(p for _, p in got) == payload
        assert [h["chunk"]["seq"] for h, _ in got] == [0, 1, 2]
        assert got[0][0]["chunk"]["meta"] == {"name": "a.bin"}
        assert got[2][0]["chunk"]["last"] is True
    finally:
        await sub.close()
        await pub.close()


async def test_bad_chunks_get_their_errors_and_the_connection_is_served_on(server) -> None:
    ws, other = await _welcomed(server.url), await _welcomed(server.url)
    try:
        # A chunk of a transfer that was never started.
        await ws.send(chunk_frame(1, "files", b"x" * 10, transfer="ghost", seq=2, at=2000))
        err = await reply(ws)
        assert (err["type"], err["id"], err["code"]) == ("error", 1, "transfer_unknown")
        # Out of order: seq 2 after seq 0, and a lying position.
        await ws.send(chunk_frame(2, "files", b"a" * 1000, transfer="o", seq=0, at=0))
        assert (await reply(ws))["type"] == "ack"
        await ws.send(chunk_frame(3, "files", b"b" * 10, transfer="o", seq=2, at=1000))
        assert (await reply(ws))["code"] == "transfer_order"
        await ws.send(chunk_frame(4, "files", b"b" * 10, transfer="o", seq=1, at=999))
        assert (await reply(ws))["code"] == "transfer_order"
        # Over max_transfer_size (2500).
        for i in range(2):
            await ws.send(chunk_frame(5 + i, "files", b"c" * 1000, transfer="big", seq=i,
                                      at=1000 * i))
            assert (await reply(ws))["type"] == "ack"
        await ws.send(chunk_frame(7, "files", b"c" * 1000, transfer="big", seq=2, at=2000,
                                  last=True, sha256=_digest(b"c" * 3000)))
        err = await reply(ws)
        assert (err["id"], err["code"]) == (7, "transfer_too_large")
        # Every other connection is served on.
        await other.send(json.dumps({"type": "ping", "t": 1}))
        assert (await reply(other))["type"] == "pong"
    finally:
        await ws.close()
        await other.close()


async def test_a_last_chunk_whose_hash_does_not_match_is_refused_and_aborted(server) -> None:
    sub, pub = await _welcomed(server.url), await _welcomed(server.url)
    try:
        await sub.send(json.dumps({"type": "sub", "id": 1, "channel": "files"}))
        assert (await reply(sub))["type"] == "ack"
        await pub.send(chunk_frame(1, "files", b"a" * 1000, transfer="h", seq=0, at=0))
        assert (await reply(pub))["type"] == "ack"
        await pub.send(chunk_frame(2, "files", b"b" * 10, transfer="h", seq=1, at=1000,
                                   last=True, sha256=_digest(b"not what was sent")))
        err = await reply(pub)
        assert (err["id"], err["code"]) == (2, "transfer_corrupt")
        first, _ = await binary_msg(sub)
        abort, payload = await binary_msg(sub)
        assert first["chunk"]["seq"] == 0
        assert abort["chunk"] == {"transfer": "h", "seq": 1, "at": 1000,
                                  "abort": "transfer_corrupt"}
        assert payload == b""
        # Nothing more of it is taken.
        await pub.send(chunk_frame(3, "files", b"b" * 10, transfer="h", seq=1, at=1000,
                                   last=True, sha256=_digest(b"a" * 1000 + b"b" * 10)))
        assert (await reply(pub))["code"] == "transfer_unknown"
    finally:
        await sub.close()
        await pub.close()


async def test_a_never_finished_transfer_is_forgotten_after_transfer_timeout(server) -> None:
    ws = await _welcomed(server.url)
    try:
        await ws.send(chunk_frame(1, "files", b"a" * 1000, transfer="idle", seq=0, at=0))
        assert (await reply(ws))["type"] == "ack"
        # transfer_timeout is 0.5 s: the time passing is what is tested.
        await asyncio.sleep(0.5 + 0.3 * T)
        await ws.send(chunk_frame(2, "files", b"b" * 10, transfer="idle", seq=1, at=1000))
        err = await reply(ws)
        assert (err["id"], err["code"]) == (2, "transfer_unknown")
    finally:
        await ws.close()
