"""The Python client with binary data (protocol v2), against real servers: it offers v2
then v1, publishes bytes in order with JSON through the one outbox (replayed after a
reset without duplicates), yields bytes to subscribers, calls RPCs with bytes, and on
a server that selected v1 reads base64 publications as bytes and refuses to send bytes."""

from __future__ import annotations

import asyncio

import pytest

from staywire.api import ApiClient
from staywire.config import Config
from staywire.exceptions import RequestError
from staywire.server.app import RpcContext, Server
from tests.client.helpers import Collector, eventually

MIXED = [{"n": 0}, b"\x00\xff", bytearray(b"\x01"), {"n": 3}, memoryview(b"\x02\x03"), b""]


def expected(items: list[object]) -> list[object]:
    return [bytes(i) if isinstance(i, bytes | bytearray | memoryview) else i for i in items]


async def test_bytes_and_json_in_one_ordered_stream(anon_server, client_factory) -> None:
    pub = client_factory(anon_server.url)
    sub_client = client_factory(anon_server.url)
    await pub.connect()
    await sub_client.connect()
    assert pub.welcome.binary["max_data_size"] == 61440
    async with sub_client.subscribe("room:1") as sub:
        collector = Collector(sub)
        offsets = [await pub.publish("room:1", item) for item in MIXED]
        await eventually(lambda: len(collector.messages) == len(MIXED), 5, "every message")
    assert collector.data() == expected(MIXED)
    assert collector.offsets() == offsets == list(range(offsets[0], offsets[0] + len(MIXED)))


async def test_binary_publishes_are_replayed_after_a_reset_exactly_once(
        anon_server, proxy_factory, client_factory) -> None:
    proxy = await proxy_factory(anon_server.port)
    watcher = client_factory(anon_server.url)
    await watcher.connect()
    client = client_factory(proxy.url)
    await client.connect()
    items = [b"\x00%d" % i if i % 2 else {"i": i} for i in range(12)]
    async with watcher.subscribe("room:2") as sub:
        collector = Collector(sub)
        proxy.pause(upstream=False)  # the publishes land, their acks do not come back
        waits = [asyncio.ensure_future(client.publish("room:2", item)) for item in items]
        await eventually(lambda: len(collector.messages) == len(items), 5, "all to land")
        proxy.reset_all()
        proxy.resume()
        offsets = await asyncio.wait_for(asyncio.gather(*waits), 10)  # acked on replay
        await asyncio.sleep(0.2)  # nothing more arrives
    assert collector.data() == items
    assert offsets == collector.offsets()
    assert client.stats["resent"] >= 1 and client.stats["duplicate_acks"] >= 1


async def test_a_server_on_v1_only_delivers_bytes_as_base64_and_refuses_to_take_them(
        server_factory, client_factory) -> None:
    srv = server_factory(no_binary=True, allow_anonymous=True, anonymous_channels=["*"],
                         api_key="k")
    client = client_factory(srv.url)
    await client.connect()
    assert client.welcome.binary is None
    async with client.subscribe("room:3") as sub:
        collector = Collector(sub)
        await asyncio.sleep(0.05)
        with ApiClient(srv.api, "k") as api:
            api.publish("room:3", b"\x00\xffraw")
        await eventually(lambda: len(collector.messages) == 1, 5, "the publication")
    assert collector.data() == [b"\x00\xffraw"]
    with pytest.raises(RequestError) as info:
        await asyncio.wait_for(client.publish("room:3", b"\x00"), 5)
    assert info.value.code == "binary_unsupported"
    assert await client.publish("room:3", {"still": "json"}) >= 1


@pytest.fixture
async def rpc_app():
    server = Server(Config(port=0, api_port=0, allow_anonymous=True, anonymous_channels=("*",)))

    @server.rpc("reverse")
    def reverse(ctx: RpcContext, params: bytes) -> bytes:
        return params[::-1]

    await server.start()
    yield server
    await server.stop()


async def test_rpc_with_bytes_params_and_result(rpc_app, client_factory) -> None:
    client = client_factory(f"ws://127.0.0.1:{rpc_app.port}/ws")
    await client.connect()
    assert await client.rpc("reverse", b"\x00\x01\xff") == b"\xff\x01\x00"
    assert await client.rpc("reverse", memoryview(b"ab")) == b"ba"
