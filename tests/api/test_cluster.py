"""Two nodes on one real Redis: the cluster-wide methods reach both, answered by either.

``info`` lists both nodes, ``channels`` adds up the subscribers of both, ``disconnect``
and ``refresh`` act on a user's connections wherever they are, and the Python client
reconnects (4010) or stops (4510) as the close code says. A node killed with ``kill -9``
is named in ``missing`` within ``api_node_timeout``, and is forgotten once its
heartbeat key expires.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from staywire.api import ApiClient, ApiError
from staywire.client import ConnectionState
from staywire.exceptions import ConnectionClosed
from tests.api.conftest import API_KEY, NODE
from tests.client.helpers import eventually, make_token
from tests.support.ws import closed_with, connect, expect, request

pytestmark = pytest.mark.redis


@pytest.fixture
def nodes(server_factory, redis):
    return [server_factory(**NODE, broker=redis.url, api_node_timeout=1.0) for _ in range(2)]


def api_of(srv) -> ApiClient:
    return ApiClient(srv.api, API_KEY)


async def test_info_lists_both_nodes_from_either(nodes) -> None:
    a, b = nodes
    async with connect(a.url) as ws:
        await expect(ws, "welcome")
        infos = [await asyncio.to_thread(api_of(srv).info) for srv in nodes]
    for info in infos:
        assert len(info.nodes) == 2 and info.missing == []
        assert len({n.node for n in info.nodes}) == 2
    assert sorted(n.connections for n in infos[0].nodes) == [0, 1]


async def test_channels_counts_subscribers_on_both_nodes(nodes) -> None:
    a, b = nodes
    sockets = []
    try:
        for srv, count in ((a, 2), (b, 3)):
            for _ in range(count):
                ws = await connect(srv.url).__aenter__()
                sockets.append(ws)
                await expect(ws, "welcome")
                await request(ws, {"type": "sub", "id": 1, "channel": "game:1"})
        ws = await connect(b.url).__aenter__()
        sockets.append(ws)
        await expect(ws, "welcome")
        await request(ws, {"type": "sub", "id": 1, "channel": "game:2"})
        for srv in nodes:
            reply = await asyncio.to_thread(api_of(srv).channels, "game:*")
            assert [(c.channel, c.subscribers) for c in reply.channels] == [("game:1", 5),
                                                                            ("game:2", 1)]
            assert reply.missing == []
    finally:
        for ws in sockets:
            await ws.close()


async def test_disconnect_closes_a_users_connections_on_both_nodes(nodes,
                                                                   client_factory) -> None:
    a, b = nodes
    # Raw sockets see the exact close code; Python clients show what they do about it.
    raw = [await connect(f"{srv.url}?token={make_token('mallory')}").__aenter__()
           for srv in nodes]
    for ws in raw:
        await expect(ws, "welcome")
    stays = client_factory(b.url, token=make_token("mallory"))
    await stays.connect()
    first = stays.welcome.client
    other = client_factory(a.url, token=make_token("trent"))
    await other.connect()

    reply = await asyncio.to_thread(api_of(a).disconnect, "mallory", reconnect=True)
    assert (reply.disconnected, reply.code, reply.missing) == (3, 4010, [])
    assert [(await closed_with(ws))[0] for ws in raw] == [4010, 4010]
    await eventually(lambda: stays.state is ConnectionState.OPEN
                     and stays.welcome.client != first, what="the client back (4010)")
    assert other.state is ConnectionState.OPEN

    reply = await asyncio.to_thread(api_of(a).disconnect, "mallory")  # 4510, from node a
    assert (reply.disconnected, reply.code, reply.reconnect) == (1, 4510, False)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(stays.wait_closed(), 5)
    assert closed.value.code == 4510 and stays.state is ConnectionState.CLOSED
    assert other.state is ConnectionState.OPEN


async def test_refresh_reaches_the_other_node(nodes) -> None:
    a, b = nodes
    async with connect(f"{b.url}?token={make_token('peggy')}") as ws:
        await expect(ws, "welcome")
        reply = await asyncio.to_thread(api_of(a).refresh, "peggy", time.time() - 1)
        assert (reply.refreshed, reply.missing) == (1, [])
        assert (await closed_with(ws))[0] == 4401


async def node_ids(srv) -> tuple[str, str]:
    """(this node's id, the other's), from the first node's info."""
    async with connect(srv.url) as ws:  # one connection tells which node is ``srv``
        await expect(ws, "welcome")
        info = await asyncio.to_thread(api_of(srv).info)
    ids = sorted(info.nodes, key=lambda n: -n.connections)
    return ids[0].node, ids[1].node


async def test_a_stopped_node_is_missing_after_the_timeout_not_later(nodes) -> None:
    a, b = nodes
    a_id, b_id = await node_ids(a)
    b.signal(signal.SIGSTOP)  # alive for Redis (subscribed), but it answers nothing
    try:
        started = time.monotonic()
        info = await asyncio.to_thread(api_of(a).info)
        took = time.monotonic() - started
    finally:
        b.signal(signal.SIGCONT)
    assert [n.node for n in info.nodes] == [a_id] and info.missing == [b_id]
    assert 1.0 <= took < 3.0, took  # api_node_timeout is 1 s
    again = await asyncio.to_thread(api_of(a).info)  # and b answers again
    assert len(again.nodes) == 2 and again.missing == []


async def test_a_killed_node_is_missing_at_once_then_forgotten(nodes) -> None:
    a, b = nodes
    a_id, b_id = await node_ids(a)
    b.kill()  # SIGKILL: no goodbye, its heartbeat key lives on for its TTL
    started = time.monotonic()
    info = await asyncio.to_thread(api_of(a).info)
    took = time.monotonic() - started
    # PUBLISH counted one listener fewer: the run ended without waiting out the timeout,
    # and the node whose key still lives is named.
    assert [n.node for n in info.nodes] == [a_id] and info.missing == [b_id]
    assert took < 1.0, took

    async def forgotten() -> None:
        while (await asyncio.to_thread(api_of(a).info)).missing:
            await asyncio.sleep(0.2)

    await asyncio.wait_for(forgotten(), 10)  # the heartbeat TTL (5 s) and a beat


async def test_history_on_redis_both_ways_and_at_the_offset_bound(nodes) -> None:
    a, b = nodes
    for i in range(1, 5):
        await asyncio.to_thread(api_of(a).publish, "hist", i)
    h = await asyncio.to_thread(api_of(b).history, "hist", limit=3, reverse=True)
    assert [p.offset for p in h.publications] == [4, 3, 2] and h.offset == 4
    older = await asyncio.to_thread(api_of(b).history, "hist", since=(h.epoch, 2),
                                    reverse=True)
    assert [p.data for p in older.publications] == [1]
    top = await asyncio.to_thread(api_of(b).history, "hist", since=(h.epoch, 2**53 - 1))
    assert top.publications == []
    with pytest.raises(ApiError) as bad:
        await asyncio.to_thread(api_of(b).history, "hist", since=(h.epoch, 2**60))
    assert bad.value.code == "bad_request"
