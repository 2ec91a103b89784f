"""Several nodes on one real Redis (and behind a real nginx): state lives in the broker."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest

from tests.conftest import ANON
from tests.support.nginx import NGINX, start_nginx
from tests.support.redis_server import RedisServer
from tests.support.ws import connect, expect, request

pytestmark = [pytest.mark.asyncio, pytest.mark.redis]


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


def ready(srv) -> int:
    try:
        with urllib.request.urlopen(f"{srv.http}/readyz", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def redis_cmd(port: int, *args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        parts.append(f"${len(a.encode())}\r\n{a}\r\n".encode())
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"".join(parts))
        return s.recv(4096)


async def test_publication_on_one_node_reaches_subscribers_on_the_other(server_factory,
                                                                        redis) -> None:
    a = server_factory(**ANON, broker=redis.url)
    b = server_factory(**ANON, broker=redis.url)
    subs = [await connect(a.url).__aenter__() for _ in range(5)] + \
        [await connect(b.url).__aenter__() for _ in range(5)]
    try:
        for ws in subs:
            await expect(ws, "welcome")
            assert (await request(ws, {"type": "sub", "id": 1, "channel": "x"}))["type"] == "ack"
        # Each node subscribes to Redis once per channel, not once per client.
        reply = redis_cmd(redis.port, "PUBSUB", "NUMSUB", "staywire:pub:x")
        assert reply.endswith(b":2\r\n"), reply
        async with connect(b.url) as pub:
            await expect(pub, "welcome")
            for i in range(3):
                await request(pub, {"type": "pub", "id": i + 1, "channel": "x", "data": i,
                                    "key": f"k{i}"})
        for ws in subs:
            got = [await expect(ws, "msg") for _ in range(3)]
            assert [m["offset"] for m in got] == [1, 2, 3]
    finally:
        for ws in subs:
            await ws.close()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
async def test_two_nodes_behind_nginx_share_history_and_dedupe(server_factory, redis) -> None:
    a = server_factory(**ANON, broker=redis.url)
    b = server_factory(**ANON, broker=redis.url)
    with start_nginx([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as ngx:
        ngx.wait_ready()
        async with connect(a.url) as on_a:
            await expect(on_a, "welcome")
            first = await request(on_a, {"type": "pub", "id": 1, "channel": "h", "data": "one",
                                         "key": "same"})
        async with connect(b.url) as on_b:
            await expect(on_b, "welcome")
            again = await request(on_b, {"type": "pub", "id": 1, "channel": "h", "data": "one",
                                         "key": "same"})
            assert again["duplicate"] is True and again["offset"] == first["offset"]
        # Whichever node nginx picks, history after offset 0 holds the one publication.
        for _ in range(4):
            async with connect(ngx.url) as ws:
                await expect(ws, "welcome")
                await ws.send(json.dumps({"type": "sub", "id": 1, "channel": "h", "since": {
                    "epoch": first["epoch"], "offset": 0}}))
                msg = await expect(ws)
                assert msg["type"] == "msg" and msg["data"] == "one"
                assert (await expect(ws, "ack"))["recovered"] is True


async def test_redis_down_means_not_ready_and_errors_then_recovery_with_new_epoch(
        server_factory, redis) -> None:
    node = server_factory(**ANON, broker=redis.url)
    async with connect(node.url) as ws:
        await expect(ws, "welcome")
        ack = await request(ws, {"type": "sub", "id": 1, "channel": "r"})
        pub = await request(ws, {"type": "pub", "id": 2, "channel": "r", "data": 1})
        await expect(ws, "msg")
        assert ready(node) == 200
        redis.stop()
        async with asyncio.timeout(10):
            while ready(node) != 503:
                await asyncio.sleep(0.1)
        err = await request(ws, {"type": "pub", "id": 3, "channel": "r", "data": 2})
        assert err["type"] == "error" and err["code"] == "unavailable"
        err = await request(ws, {"type": "sub", "id": 4, "channel": "other"})
        assert err["code"] == "unavailable"
        redis.start()
        async with asyncio.timeout(15):
            while ready(node) != 200:
                await asyncio.sleep(0.1)
        # Redis kept nothing: the stream has a new epoch, and recovery says so.
        again = await request(ws, {"type": "unsub", "id": 5, "channel": "r"})
        assert again["type"] == "ack"
        rec = await request(ws, {"type": "sub", "id": 6, "channel": "r", "since": {
            "epoch": pub["epoch"], "offset": pub["offset"]}})
        assert rec["recovered"] is False and rec["epoch"] != ack["epoch"]
        ok = await request(ws, {"type": "pub", "id": 7, "channel": "r", "data": 3})
        assert ok["type"] == "ack" and ok["offset"] == 1
        assert (await expect(ws, "msg"))["data"] == 3
