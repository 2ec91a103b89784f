"""Faults on the server side: black-holed links, a consumer that never reads (memory
stays bounded), and wall-clock jumps in the token-expiry path."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import jwt
import pytest

from staywire.config import Config
from staywire.server import app as app_module
from staywire.server.app import Server
from tests.conftest import ANON
from tests.support.servers import metric
from tests.support.tcp_proxy import TcpProxy
from tests.support.ws import RawSocket, closed_with, connect, expect, raw_frame, request


async def test_black_holed_client_is_closed_4000_and_freed(server_factory) -> None:
    srv = server_factory(**ANON, ping_interval=0.5, pong_timeout=0.5)
    async with TcpProxy("127.0.0.1", srv.port) as proxy:
        async with connect(f"ws://127.0.0.1:{proxy.port}/ws") as ws:
            await expect(ws, "welcome")
            await request(ws, {"type": "sub", "id": 1, "channel": "bh"})
            assert metric(srv.api, "staywire_channels") == 1
            proxy.pause()  # no FIN, no RST: the link just goes silent
            started = time.monotonic()
            async with asyncio.timeout(5):  # detached from every channel at the verdict
                while metric(srv.api, "staywire_channels") != 0:
                    await asyncio.sleep(0.05)
            assert time.monotonic() - started < 0.5 + 0.5 + 0.6
            # Its close frame cannot get through either: the socket is dropped after
            # close_timeout (2 s) and the connection freed.
            async with asyncio.timeout(5):
                while metric(srv.api, "staywire_connections") != 0:
                    await asyncio.sleep(0.05)
            assert metric(srv.api, "staywire_closes_total", 'code="4000"') == 1


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


async def test_consumer_that_never_reads_keeps_server_memory_bounded(server_factory,
                                                                     tmp_path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('allow_anonymous = true\nanonymous_channels = ["*"]\napi_key = "k"\n'
                   "max_send_buffer = 1048576\nclose_timeout = 1.0\n")
    srv = server_factory(config=str(cfg))
    raw, _ = await RawSocket.open("127.0.0.1", srv.port, rcvbuf=4096)  # never reads
    await raw.read_frame()
    raw.send(raw_frame(1, b'{"type":"sub","id":1,"channel":"big"}'))
    await raw.read_frame()
    before = rss_kib(srv.pid)
    blob = "y" * 50_000
    body = json.dumps({"channel": "big", "data": blob}).encode()

    def flood() -> None:
        for _ in range(600):  # 30 MB at a client that reads nothing
            req = urllib.request.Request(f"{srv.api}/api/publish", data=body,
                                         headers={"Authorization": "Bearer k"})
            urllib.request.urlopen(req, timeout=5).read()

    await asyncio.to_thread(flood)
    growth = rss_kib(srv.pid) - before
    # Bounded by max_send_buffer (1 MiB) plus history (100 x 50 KB) plus slack,
    # far below the 30 MB that was sent its way.
    assert growth < 12 * 1024, f"server RSS grew {growth} KiB"
    assert metric(srv.api, "staywire_slow_consumer_closes_total") == 1
    raw.abort()


SECRET = "clock-secret-0123456789abcdef0123456"


@pytest.fixture
async def jwt_app():
    server = Server(Config(port=0, api_port=0, jwt_secret=SECRET, ping_interval=0.3,
                           pong_timeout=0.3))
    await server.start()
    yield server
    await server.stop()


async def test_wall_clock_jump_forward_expires_tokens(jwt_app: Server, monkeypatch) -> None:
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 3600}, SECRET)
    async with connect(f"ws://127.0.0.1:{jwt_app.port}/ws?token={token}") as ws:
        await expect(ws, "welcome")
        real = time.time
        monkeypatch.setattr(app_module.time, "time", lambda: real() + 7200)
        assert (await closed_with(ws, timeout=3))[0] == 4401


async def test_wall_clock_jump_backward_breaks_no_timer(jwt_app: Server, monkeypatch) -> None:
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 3600}, SECRET)
    async with connect(f"ws://127.0.0.1:{jwt_app.port}/ws?token={token}") as ws:
        await expect(ws, "welcome")
        real = time.time
        monkeypatch.setattr(app_module.time, "time", lambda: real() - 86400)
        # Heartbeats run on the monotonic clock: pings keep coming, answered pongs keep
        # the connection, and nothing expires early.
        for _ in range(4):
            ping = await expect(ws, "ping", timeout=2)
            await ws.send(json.dumps({"type": "pong", "t": ping["t"]}))
        assert ws.close_code is None
