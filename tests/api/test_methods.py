"""Every server API method on one node (memory broker), through the Python ``ApiClient``."""

from __future__ import annotations

import asyncio
import time

import pytest

from staywire.api import ApiClient, ApiError, Batch
from staywire.client import ConnectionState
from staywire.exceptions import ConnectionClosed
from tests.client.helpers import eventually, make_token
from tests.support.ws import closed_with, connect, expect, request



async def test_publish_and_broadcast_reach_subscribers(api_server, api) -> None:
    async with connect(api_server.url) as ws:
        await expect(ws, "welcome")
        for i, channel in enumerate(["a", "b"]):
            await request(ws, {"type": "sub", "id": i + 1, "channel": channel})
        first = await asyncio.to_thread(api.publish, "a", {"n": 1})
        assert (first.offset, first.duplicate) == (1, False)
        got = await expect(ws, "msg")
        assert (got["channel"], got["data"]) == ("a", {"n": 1})
        reply = await asyncio.to_thread(api.broadcast, ["a", "b"], "both", key="k-1")
        assert [(r.channel, r.offset, r.duplicate) for r in reply.results] == [
            ("a", 2, False), ("b", 1, False)]
        assert {(await expect(ws, "msg"))["channel"] for _ in range(2)} == {"a", "b"}
        # One key per channel: the repeat is a duplicate on each, and publishes nothing.
        again = await asyncio.to_thread(api.broadcast, ["a", "b"], "both", key="k-1")
        assert [(r.offset, r.duplicate) for r in again.results] == [(2, True), (1, True)]
        # The key is per channel: a new channel with the same key publishes.
        other = await asyncio.to_thread(api.broadcast, ["c"], "x", key="k-1")
        assert (other.results[0].offset, other.results[0].duplicate) == (1, False)


def test_history_since_limit_reverse(api) -> None:
    for i in range(1, 6):
        top = api.publish("h", i)
    everything = api.history("h")
    assert (everything.epoch, everything.offset) == (top.epoch, 5)
    assert [(p.offset, p.data) for p in everything.publications] == [(i, i) for i in range(1, 6)]
    assert [p.offset for p in api.history("h", limit=2).publications] == [1, 2]
    assert [p.offset for p in api.history("h", limit=2, reverse=True).publications] == [5, 4]
    assert [p.offset for p in api.history("h", since=(top.epoch, 3)).publications] == [4, 5]
    assert [p.offset for p in api.history("h", since=(top.epoch, 3), reverse=True)
            .publications] == [2, 1]
    assert api.history("h", limit=0).publications == []
    # Another epoch: nothing, and the current position to start again from.
    stale = api.history("h", since=("other", 1))
    assert (stale.publications, stale.epoch, stale.offset) == ([], top.epoch, 5)


async def test_channels_and_info_count_this_node(api_server, api) -> None:
    sockets = [await connect(api_server.url).__aenter__() for _ in range(3)]
    try:
        for i, ws in enumerate(sockets):
            await expect(ws, "welcome")
            await request(ws, {"type": "sub", "id": 1, "channel": "room:1"})
            if i == 0:
                await request(ws, {"type": "sub", "id": 2, "channel": "room:2"})
        reply = await asyncio.to_thread(api.channels, "room:*")
        assert [(c.channel, c.subscribers) for c in reply.channels] == [("room:1", 3),
                                                                        ("room:2", 1)]
        assert (reply.truncated, reply.missing) == (False, [])
        limited = await asyncio.to_thread(api.channels, "room:?", limit=1)
        assert [c.channel for c in limited.channels] == ["room:1"] and limited.truncated
        info = await asyncio.to_thread(api.info)
        assert len(info.nodes) == 1 and info.missing == []
        node = info.nodes[0]
        assert (node.connections, node.subscriptions, node.channels) == (3, 4, 2)
        assert node.version and node.uptime > 0
        for _ in range(5):  # fewer than websockets' read queue: unread, they would hold close()
            await asyncio.to_thread(api.publish, "room:1", 1)
        await eventually(lambda: api.info().nodes[0].deliveries_per_second > 0,
                         what="deliveries counted")
        assert api.info().nodes[0].publications_per_second > 0
        assert api.info().nodes[0].connects_per_second > 0  # the three, in the last 5 s
    finally:
        for ws in sockets:
            await ws.close()
    # Closes by code, totals since start (the admin page charts their rate).
    await eventually(lambda: api.info().nodes[0].closes.get("1000", 0) >= 3,
                     what="the three closes counted")


def test_rates_are_over_the_last_samples_with_a_fake_clock() -> None:
    from types import SimpleNamespace

    from staywire.server.control import Rates
    from staywire.server.metrics import Stats

    now = [100.0]
    stats = Stats()
    hub = SimpleNamespace(deliveries=0, channels={})
    rates = Rates(stats, hub, clock=lambda: now[0])
    stats.publications, hub.deliveries, stats.connections_opened = 10, 50, 4
    now[0] += 2.0
    assert rates.per_second() == (25.0, 5.0, 2.0)
    rates.sample()
    for _ in range(5):  # the window holds five samples: the oldest drop out
        now[0] += 1.0
        rates.sample()
    assert rates.per_second() == (0.0, 0.0, 0.0)


async def test_disconnect_with_and_without_reconnect(api_server, api, client_factory) -> None:
    bob = client_factory(api_server.url, token=make_token("bob"))
    carol = client_factory(api_server.url, token=make_token("carol"))
    await bob.connect()
    await carol.connect()
    first = bob.welcome.client
    reply = await asyncio.to_thread(api.disconnect, "bob", reconnect=True)
    assert (reply.disconnected, reply.code, reply.reconnect) == (1, 4010, True)
    await eventually(lambda: bob.state is ConnectionState.OPEN and bob.welcome.client != first,
                     what="bob back on a new connection")
    assert bob.last_close is not None and bob.last_close.code == 4010
    assert carol.state is ConnectionState.OPEN  # another user is left alone

    reply = await asyncio.to_thread(api.disconnect, "bob", code=4503, reason="banned")
    assert (reply.disconnected, reply.code, reply.reconnect) == (1, 4503, False)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(bob.wait_closed(), 5)
    assert (closed.value.code, bob.state) == (4503, ConnectionState.CLOSED)
    assert bob.last_close.reason == "banned"
    assert (await asyncio.to_thread(api.disconnect, "nobody")).disconnected == 0
    assert carol.state is ConnectionState.OPEN


async def test_disconnect_one_connection_by_client_id(api_server, api, client_factory) -> None:
    tabs = [client_factory(api_server.url, token=make_token("dan")) for _ in range(2)]
    for tab in tabs:
        await tab.connect()
    reply = await asyncio.to_thread(api.disconnect, "dan", client=tabs[0].welcome.client)
    assert (reply.disconnected, reply.code) == (1, 4510)
    await eventually(lambda: tabs[0].state is ConnectionState.CLOSED, what="the first tab")
    assert tabs[1].state is ConnectionState.OPEN


async def test_refresh_moves_a_users_expiry(api_server, api) -> None:
    async with connect(f"{api_server.url}?token={make_token('erin', ttl=1.5)}") as ws:
        await expect(ws, "welcome")
        reply = await asyncio.to_thread(api.refresh, "erin", time.time() + 60)
        assert (reply.refreshed, reply.missing) == (1, [])
        await asyncio.sleep(2.0)  # past the token's own exp: the refreshed expiry holds
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "r"}))["type"] == "ack"
        reply = await asyncio.to_thread(api.refresh, "erin", time.time() - 1)
        assert reply.refreshed == 1
        assert (await closed_with(ws))[0] == 4401


def test_batch_runs_in_order_each_with_its_result(api) -> None:
    results = api.batch(Batch().publish("bt", 1).publish("bt", 2).history("bt", limit=1,
                                                                             reverse=True)
                        .channels("*").disconnect("nobody"))
    assert [r.offset for r in results[:2]] == [1, 2]
    assert [p.data for p in results[2].publications] == [2]
    assert isinstance(results[3], ApiError) and results[3].code == "bad_request"
    assert results[4].disconnected == 0


def test_every_bad_input_answers_an_error_code(api, api_server) -> None:
    with pytest.raises(ApiError) as bad:
        api.channels("**")
    assert (bad.value.code, bad.value.status) == ("bad_request", 400)
    with pytest.raises(ApiError) as bad:
        api.disconnect("bob", code=4503, reconnect=True)
    assert bad.value.code == "bad_request" and "4500-4999 do not" in bad.value.reason
    with pytest.raises(ApiError) as bad:
        api.disconnect("bob", code=1000)
    assert bad.value.code == "bad_request"
    with pytest.raises(ApiError) as bad:
        api.disconnect("bob", reason="x" * 200)
    assert bad.value.code == "bad_request"
    with pytest.raises(ApiError) as bad:
        api.history("bad name")
    assert bad.value.code == "bad_request"
    with pytest.raises(ApiError) as bad:
        ApiClient(api_server.api, "wrong").info()
    assert (bad.value.code, bad.value.status) == ("unauthorized", 401)
    assert api.info().nodes  # and the server serves on
