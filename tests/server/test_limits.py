"""Limits and validation over real sockets: every bad input gets its documented answer,
and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.request

import pytest

from tests.support.servers import metric
from tests.support.ws import RawSocket, closed_with, connect, expect, raw_frame, request

pytestmark = pytest.mark.asyncio


def write_config(tmp_path, **options: object) -> str:
    path = tmp_path / "staywire.toml"
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + "\n")
    return str(path)


async def raw_open(srv) -> RawSocket:
    sock, head = await RawSocket.open("127.0.0.1", srv.port)
    assert head.startswith(b"HTTP/1.1 101")
    op, payload = await sock.read_frame()
    assert json.loads(payload)["type"] == "welcome"
    return sock


async def test_message_over_max_size_closes_1009(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, max_message_size=1024)
    async with connect(srv.url) as ws:
        await expect(ws, "welcome")
        await ws.send(json.dumps({"type": "ping", "t": 1, "pad": "x" * 2000}))
        assert (await closed_with(ws))[0] == 1009


async def test_fragmented_messages_are_reassembled_and_bounded(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, max_message_size=1024)
    sock = await raw_open(srv)
    msg = json.dumps({"type": "ping", "t": 42}).encode()
    sock.send(raw_frame(0x1, msg[:5], fin=False) + raw_frame(0x0, msg[5:9], fin=False)
              + raw_frame(0x9, b"hb")  # a control frame may come between fragments
              + raw_frame(0x0, msg[9:]))
    frames = [await sock.read_frame(), await sock.read_frame()]
    assert (0xA, b"hb") in frames  # protocol-level ping answered with pong
    assert any(op == 1 and json.loads(p) == {"type": "pong", "t": 42} for op, p in frames)
    sock.send(raw_frame(0x1, b"x" * 600, fin=False) + raw_frame(0x0, b"x" * 600))
    assert await sock.close_code() == 1009
    sock.abort()


async def test_invalid_utf8_closes_1007(anon_server) -> None:
    sock = await raw_open(anon_server)
    sock.send(raw_frame(0x1, b'{"type":"ping","t":"\xc3\x28"}'))
    assert await sock.close_code() == 1007
    sock.abort()


async def test_rsv_bits_close_1002(anon_server) -> None:
    sock = await raw_open(anon_server)
    sock.send(raw_frame(0x1, b'{"type":"ping"}', rsv=0b100))
    assert await sock.close_code() == 1002
    sock.abort()


async def test_close_is_answered_with_the_same_code(anon_server) -> None:
    sock = await raw_open(anon_server)
    sock.send(raw_frame(0x8, struct.pack("!H", 4321) + b"bye"))
    assert await sock.close_code() == 4321
    sock.abort()
    async with connect(anon_server.url) as ws:
        await expect(ws, "welcome")
    await asyncio.sleep(0.2)
    assert metric(anon_server.api, "staywire_closes_total", 'code="1000"') >= 1


async def test_invalid_messages_get_errors_then_4500(anon_server) -> None:
    async with connect(anon_server.url) as ws:
        await expect(ws, "welcome")
        cases = [b"not json", b"[1]", b'{"type":"what"}', b'{"type":"sub","id":1}',
                 b'{"type":"sub","id":-1,"channel":"a"}', b'{"a":' * 200 + b"1" + b"}" * 200]
        codes = []
        for raw in cases:
            await ws.send(raw.decode())
            codes.append((await expect(ws, "error"))["code"])
        assert codes == ["bad_request", "bad_request", "unknown_type", "bad_request",
                         "bad_request", "bad_request"]
        await ws.send(b"\x00\x01binary")
        assert (await expect(ws, "error"))["code"] == "binary_unsupported"
        for _ in range(3):
            await ws.send("nope")
        code, reason = await closed_with(ws)
        assert code == 4500 and "invalid" in reason


async def test_rate_limit_errors_then_closes_4029(server_factory, tmp_path) -> None:
    cfg = write_config(tmp_path, allow_anonymous=True, anonymous_channels=["*"],
                       rate_messages=5.0, rate_burst=5.0,
                       rate_max_violations=20)
    srv = server_factory(config=cfg)
    async with connect(srv.url) as ws, connect(srv.url) as bystander:
        await expect(ws, "welcome")
        await expect(bystander, "welcome")
        for i in range(40):
            await ws.send(json.dumps({"type": "ping", "t": i}))
        kinds = []
        try:
            while True:
                kinds.append((await expect(ws, timeout=5))["type"])
        except Exception:
            pass
        assert kinds.count("pong") == 5 and "error" in kinds
        assert ws.close_code == 4029
        # The well-behaved client is untouched.
        assert (await request(bystander, {"type": "sub", "id": 1, "channel": "a"}))["type"] == "ack"
    assert metric(srv.api, "staywire_rate_limited_total") >= 19


async def test_silent_client_is_pinged_then_closed_4000(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], ping_interval=0.4,
                         pong_timeout=0.4)
    async with connect(srv.url) as quiet, connect(srv.url) as alive:
        await expect(quiet, "welcome")
        await expect(alive, "welcome")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):  # the live client answers every ping and stays
            ping = await expect(alive, "ping", timeout=3)
            await alive.send(json.dumps({"type": "pong", "t": ping["t"]}))
        code, _ = await closed_with(quiet, timeout=5)
        assert code == 4000
        assert loop.time() - started < 0.4 + 0.4 + 1.0
        assert (await request(alive, {"type": "sub", "id": 1, "channel": "a"}))["type"] == "ack"


async def test_slow_consumer_closed_4008_and_others_unaffected(server_factory, tmp_path) -> None:
    cfg = write_config(tmp_path, allow_anonymous=True, anonymous_channels=["*"],
                       max_send_buffer=256 * 1024, api_key="k", close_timeout=5.0)
    srv = server_factory(config=cfg)
    # A client with a tiny receive window that never reads.
    slow, _ = await RawSocket.open("127.0.0.1", srv.port, rcvbuf=4096)
    await slow.read_frame()
    slow.send(raw_frame(0x1, b'{"type":"sub","id":1,"channel":"flood"}'))
    await slow.read_frame()
    async with connect(srv.url) as good:
        await expect(good, "welcome")
        assert (await request(good, {"type": "sub", "id": 1, "channel": "flood"}))["type"] == "ack"
        blob = "x" * 8000
        # Against a 256 KiB bound, until the slow client is closed: the kernel's send buffer
        # takes up to tcp_wmem's maximum (4 MiB by default) before the server's own buffer
        # grows, and how fast it grows there depends on the congestion control. Bounded:
        # 1,600 publications are 12.8 MB.
        n = 0
        got: list[int] = []
        while n < 1600 and metric(srv.api, "staywire_slow_consumer_closes_total") == 0:
            for i in range(n, n + 100):
                body = json.dumps({"channel": "flood", "data": {"i": i, "blob": blob}}).encode()
                req = urllib.request.Request(f"{srv.api}/api/publish", data=body,
                                             method="POST",
                                             headers={"Authorization": "Bearer k"})
                await asyncio.to_thread(urllib.request.urlopen, req)
            got += [(await expect(good, "msg", timeout=10))["data"]["i"] for _ in range(100)]
            n += 100
        assert got == list(range(n))  # the good client got everything, in order
    assert metric(srv.api, "staywire_slow_consumer_closes_total") == 1
    assert metric(srv.api, "staywire_closes_total", 'code="4008"') + \
        metric(srv.api, "staywire_connections") >= 1
    # Reading now, the slow client finds the close frame behind its backlog.
    code = await slow.close_code(timeout=10)
    assert code == 4008
    slow.abort()


async def test_invalid_close_code_is_answered_1002(anon_server) -> None:
    sock = await raw_open(anon_server)
    sock.send(raw_frame(0x8, struct.pack("!H", 1006)))  # reserved: never on the wire
    assert await sock.close_code() == 1002
    sock.abort()


async def test_ping_frames_are_answered_until_close(anon_server) -> None:
    sock = await raw_open(anon_server)
    sock.send(raw_frame(0x9, b"p1"))
    assert await sock.read_frame() == (0xA, b"p1")
    sock.send(raw_frame(0x8, struct.pack("!H", 1000)) + raw_frame(0x9, b"late"))
    assert await sock.close_code() == 1000
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError, TimeoutError)):
        op, payload = await sock.read_frame(timeout=1)  # no pong after the close
        assert op != 0xA
        raise ConnectionError
    sock.abort()
