"""Bugs found in review, each with the test that failed before its fix."""

from __future__ import annotations

import asyncio
import json

import pytest

from staywire.brokers.memory import MemoryBroker
from staywire.config import Config
from staywire.exceptions import BrokerUnavailable
from staywire.server.app import RpcContext, Server
from tests.support.ws import RawSocket, connect, expect, raw_frame, request


async def test_recovery_larger_than_the_send_buffer_still_recovers(server_factory) -> None:
    # 60 x 30 KB of history against a 128 KiB send-buffer bound: the replay used to trip
    # the slow-consumer close (4008) and then fail with an AttributeError.
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"],
                         max_send_buffer=128 * 1024, history_size=100)
    async with connect(srv.url) as pub:
        await expect(pub, "welcome")
        first = await request(pub, {"type": "pub", "id": 1, "channel": "big", "data": "x"})
        for i in range(60):
            await request(pub, {"type": "pub", "id": i + 2, "channel": "big",
                                "data": {"i": i, "pad": "y" * 30_000}})
    async with connect(srv.url) as ws:
        await expect(ws, "welcome")
        await ws.send(json.dumps({"type": "sub", "id": 1, "channel": "big", "since": {
            "epoch": first["epoch"], "offset": first["offset"]}}))
        got = [await expect(ws, "msg", timeout=10) for _ in range(60)]
        assert [m["data"]["i"] for m in got] == list(range(60))
        ack = await expect(ws, "ack")
        assert ack["recovered"] is True and ack["offset"] == 61
        assert (await request(ws, {"type": "sub", "id": 2, "channel": "other"}))["type"] == "ack"


async def test_nothing_is_written_after_the_close_frame() -> None:
    server = Server(Config(port=0, api_port=0, allow_anonymous=True))
    started = asyncio.Event()

    @server.rpc("slow")
    async def slow(ctx: RpcContext) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "late"

    await server.start()
    try:
        sock, _ = await RawSocket.open("127.0.0.1", server.port)
        await sock.read_frame()  # welcome
        sock.send(raw_frame(1, b'{"type":"rpc","id":1,"method":"slow"}'))
        await asyncio.wait_for(started.wait(), 5)
        (conn,) = server.connections
        conn.close(4000)  # closed while its worker is still in the handler
        assert await sock.close_code() == 4000
        await asyncio.sleep(0.5)  # the handler returns meanwhile
        with pytest.raises((asyncio.IncompleteReadError, TimeoutError, ConnectionError)):
            op, payload = await sock.read_frame(timeout=0.5)
            raise AssertionError(f"frame after close: {op} {payload!r}")
        sock.abort()
    finally:
        await server.stop()


class SlowBroker(MemoryBroker):
    """A memory broker whose node subscription takes time and can fail: the window in
    which a second subscriber used to skip waiting for the first one's subscription."""

    def __init__(self, fail: bool) -> None:
        super().__init__()
        self.fail = fail

    async def subscribe(self, channel: str) -> None:
        await asyncio.sleep(0.3)
        if self.fail:
            raise BrokerUnavailable("subscribe failed")
        await super().subscribe(channel)


@pytest.mark.parametrize("fail", [True, False])
async def test_concurrent_subscribers_share_the_node_subscription(fail: bool) -> None:
    server = Server(Config(port=0, api_port=0, allow_anonymous=True,
                           anonymous_channels=("*",)), broker=SlowBroker(fail))
    await server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with connect(url) as a, connect(url) as b:
            await expect(a, "welcome")
            await expect(b, "welcome")
            acks = await asyncio.gather(
                request(a, {"type": "sub", "id": 1, "channel": "c"}),
                request(b, {"type": "sub", "id": 1, "channel": "c"}))
            if fail:  # neither is left subscribed at the hub without a broker subscription
                assert [x.get("code") for x in acks] == ["unavailable", "unavailable"]
                assert server.hub.subscribers("c") == 0
                return
            assert [x["type"] for x in acks] == ["ack", "ack"]
            await server.publish("c", "live")
            assert (await expect(a, "msg"))["data"] == "live"
            assert (await expect(b, "msg"))["data"] == "live"
    finally:
        await server.stop()
