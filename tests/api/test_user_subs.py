"""The server API's subscribe/unsubscribe: a user's open connections join or leave a
channel server-side, at once (``subscribed``/``unsubscribed`` on the wire), and a
resumed session keeps what the API subscribed, on any node (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from staywire.api import ApiClient, ApiError, Batch
from staywire.client import ConnectionState, Join, Leave
from staywire.client.auth import AuthMode
from tests.api.conftest import API_KEY, NODE
from tests.client.helpers import eventually, make_token
from tests.support.ws import connect, expect

# The tokens grant room:* only: news:1 is granted by the API call, not by the token.
ROOMS = ["room:*"]


async def _next(sub, timeout: float = 5.0):
    return await asyncio.wait_for(sub.__anext__(), timeout)


async def test_subscribe_delivers_and_unsubscribe_ends(api_server, api, client_factory) -> None:
    alice = client_factory(api_server.url, token=make_token("alice", channels=ROOMS))
    bob = client_factory(api_server.url, token=make_token("bob", channels=ROOMS))
    await alice.connect()
    await bob.connect()

    reply = await asyncio.to_thread(api.subscribe, "alice", "news:1")
    assert reply.subscribed == 1 and reply.missing == []
    assert [(n.subscribed, n.refused) for n in reply.nodes] == [(1, {})]
    await eventually(lambda: "news:1" in alice.server_subscriptions, what="subscribed")
    assert bob.server_subscriptions == {}
    sub = alice.server_subscriptions["news:1"]

    await asyncio.to_thread(api.publish, "news:1", {"n": 1})
    msg = await _next(sub)
    assert (msg.channel, msg.data) == ("news:1", {"n": 1})
    # Already subscribed: counted, nothing doubles.
    assert (await asyncio.to_thread(api.subscribe, "alice", "news:1")).subscribed == 1

    reply = await asyncio.to_thread(api.unsubscribe, "alice", "news:1")
    assert reply.unsubscribed == 1 and [n.unsubscribed for n in reply.nodes] == [1]
    await eventually(lambda: "news:1" not in alice.server_subscriptions, what="unsubscribed")
    with pytest.raises(StopAsyncIteration):
        await _next(sub)  # ended, not failed
    assert (await asyncio.to_thread(api.unsubscribe, "alice", "news:1")).unsubscribed == 0
    assert (await asyncio.to_thread(api.subscribe, "nobody", "news:1")).subscribed == 0
    assert alice.state is ConnectionState.OPEN


@pytest.mark.parametrize("body", [
    {"user": "alice", "channel": "bad channel"},
    {"user": "", "channel": "news:1"},
    {"user": "alice"},
    {"user": "alice", "channel": "news:1", "extra": 1},
])
def test_bad_requests_are_bad_request(api, body) -> None:
    for method in ("subscribe", "unsubscribe"):
        with pytest.raises(ApiError) as err:
            api.call(_raw(method, body))
        assert (err.value.code, err.value.status) == ("bad_request", 400)


def _raw(method: str, body: dict):
    from staywire.api.calls import Call
    from staywire.api.schema import SubscribeReply

    return Call(method, body, SubscribeReply)


def test_batch_carries_both(api) -> None:
    sub, unsub = api.batch(Batch().subscribe("nobody", "news:1").unsubscribe("nobody", "news:1"))
    assert (sub.subscribed, unsub.unsubscribed) == (0, 0)


async def test_limits_are_counted_per_connection(server_factory, tmp_path: Path,
                                                 client_factory) -> None:
    path = tmp_path / "staywire.toml"
    path.write_text('max_subscriptions = 2\n[channels."small:*"]\nmax_subscribers = 1\n')
    srv = server_factory(**NODE, config=str(path))
    token = make_token("carol", channels=ROOMS)
    first, second = client_factory(srv.url, token=token), client_factory(srv.url, token=token)
    await first.connect()
    await second.connect()
    with ApiClient(srv.api, API_KEY) as api:
        reply = await asyncio.to_thread(api.subscribe, "carol", "small:1")
        assert (reply.subscribed, reply.nodes[0].refused) == (1, {"channel_full": 1})
        await asyncio.to_thread(api.subscribe, "carol", "news:2")
        reply = await asyncio.to_thread(api.subscribe, "carol", "news:3")
        assert (reply.subscribed, reply.nodes[0].refused) == (1, {"too_many_subscriptions": 1})
    await eventually(lambda: len(first.server_subscriptions) + len(second.server_subscriptions)
                     == 4, what="four joins: 1 + 2 + 1")


async def test_a_reconnect_keeps_it_with_nothing_missed(api_server, api, client_factory) -> None:
    # In the query: on a server that welcomes anonymous connections at once, a token sent
    # as the first message comes after the welcome that resumed (or not) the session.
    alice = client_factory(api_server.url, token=make_token("alice", channels=ROOMS),
                           auth=AuthMode.QUERY)
    await alice.connect()
    await asyncio.to_thread(api.subscribe, "alice", "news:9")
    await eventually(lambda: "news:9" in alice.server_subscriptions, what="subscribed")
    sub = alice.server_subscriptions["news:9"]
    await asyncio.to_thread(api.publish, "news:9", 1)
    assert (await _next(sub)).data == 1
    first = alice.welcome.client
    await asyncio.to_thread(api.disconnect, "alice", reconnect=True)
    await asyncio.to_thread(api.publish, "news:9", 2)  # most likely while it is away
    await eventually(lambda: alice.state is ConnectionState.OPEN
                     and alice.welcome.client != first, what="reconnected")
    assert "news:9" in [p.channel for p in alice.welcome.server_subs]
    assert alice.server_subscriptions["news:9"] is sub
    await asyncio.to_thread(api.publish, "news:9", 3)
    got = [(await _next(sub)).offset for _ in range(2)]
    assert got == [2, 3]


@pytest.mark.redis
async def test_two_nodes_join_and_a_session_resumes_on_the_other(server_factory, redis,
                                                                 client_factory) -> None:
    a, b = (server_factory(**NODE, broker=redis.url, api_node_timeout=1.0) for _ in range(2))
    token = make_token("dave", channels=ROOMS)
    on_a = client_factory(a.url, token=token, auth=AuthMode.QUERY)
    on_b = client_factory(b.url, token=token, auth=AuthMode.QUERY)
    await on_a.connect()
    await on_b.connect()
    with ApiClient(a.api, API_KEY) as api:
        reply = await asyncio.to_thread(api.subscribe, "dave", "news:5")
        assert reply.subscribed == 2 and reply.missing == []
        assert [n.subscribed for n in reply.nodes] == [1, 1]
        await eventually(lambda: "news:5" in on_a.server_subscriptions
                         and "news:5" in on_b.server_subscriptions, what="both joined")
        await asyncio.to_thread(api.publish, "news:5", "hi")
        for c in (on_a, on_b):
            assert (await _next(c.server_subscriptions["news:5"])).data == "hi"
        session = on_a.session
        await on_a.close()
        # The session, resumed on node b, is subscribed again before its welcome.
        async with connect(f"{b.url}?token={token}&session={session}") as ws:
            welcome = await expect(ws, "welcome")
            assert welcome["resumed"] is True
            assert [s["channel"] for s in welcome["server_subs"]] == ["news:5"]
            await asyncio.to_thread(api.publish, "news:5", "again")
            msg = await expect(ws, "msg")
            assert (msg["channel"], msg["data"]) == ("news:5", "again")
        reply = await asyncio.to_thread(api.unsubscribe, "dave", "news:5")
        assert reply.unsubscribed == 1
        await eventually(lambda: on_b.server_subscriptions == {}, what="b left")


async def test_a_channel_the_client_has_goes_on_and_unsubscribe_ends_it_too(
        api_server, api, client_factory) -> None:
    alice = client_factory(api_server.url, token=make_token("alice", channels=ROOMS))
    await alice.connect()
    async with alice.subscribe("room:1") as own:
        await asyncio.to_thread(api.subscribe, "alice", "room:1")
        await eventually(lambda: "room:1" in alice.server_subscriptions, what="server-side")
        server_side = alice.server_subscriptions["room:1"]
        await asyncio.to_thread(api.publish, "room:1", "x")
        assert [(await _next(s)).data for s in (own, server_side)] == ["x", "x"]
        await asyncio.to_thread(api.unsubscribe, "alice", "room:1")
        for s in (own, server_side):  # the server left the channel: both end, no error
            with pytest.raises(StopAsyncIteration):
                await _next(s)


async def test_a_token_refresh_keeps_what_the_api_subscribed(api_server, api) -> None:
    token = make_token("erin", channels=ROOMS)
    async with connect(f"{api_server.url}?token={token}") as ws:
        await expect(ws, "welcome")
        await asyncio.to_thread(api.subscribe, "erin", "news:7")
        joined = await expect(ws, "subscribed")
        assert (joined["channel"], joined["offset"]) == ("news:7", 0)
        # A fresh token that grants room:* only: news:7 was granted by the API, not by it.
        await ws.send(json.dumps({"type": "auth", "token": make_token("erin", channels=ROOMS,
                                                                      ttl=120)}))
        again = await expect(ws, "welcome")  # no error {channel: news:7} before it
        assert again["client"]
        await asyncio.to_thread(api.publish, "news:7", "still")
        msg = await expect(ws, "msg")
        assert (msg["channel"], msg["data"]) == ("news:7", "still")


async def test_after_unsubscribe_a_resumed_session_does_not_rejoin(api_server, api,
                                                                   client_factory) -> None:
    alice = client_factory(api_server.url, token=make_token("alice", channels=ROOMS),
                           auth=AuthMode.QUERY)
    await alice.connect()
    await asyncio.to_thread(api.subscribe, "alice", "news:8")
    await eventually(lambda: "news:8" in alice.server_subscriptions, what="subscribed")
    await asyncio.to_thread(api.unsubscribe, "alice", "news:8")
    await eventually(lambda: "news:8" not in alice.server_subscriptions, what="unsubscribed")
    first = alice.welcome.client
    await asyncio.to_thread(api.disconnect, "alice", reconnect=True)
    await eventually(lambda: alice.state is ConnectionState.OPEN
                     and alice.welcome.client != first, what="reconnected")
    assert alice.welcome.resumed and alice.welcome.server_subs == []
    assert alice.server_subscriptions == {}


async def test_a_user_subscribed_by_the_api_is_a_presence_member(server_factory, tmp_path: Path,
                                                                 client_factory) -> None:
    path = tmp_path / "staywire.toml"
    path.write_text('[channels."room:*"]\npresence = true\njoin_leave = true\n')
    srv = server_factory(config=str(path), **NODE)
    bob = client_factory(srv.url, token=make_token("bob", channels=ROOMS))
    alice = client_factory(srv.url, token=make_token("alice", channels=ROOMS))
    await asyncio.gather(bob.connect(), alice.connect())
    async with bob.subscribe("room:api") as room:
        assert isinstance(await _next(room), Join)  # bob's own join
        with ApiClient(srv.api, API_KEY) as api:
            await asyncio.to_thread(api.subscribe, "alice", "room:api")
            join = await _next(room)
            assert (type(join), join.user) == (Join, "alice")
            assert (await room.presence()).users == 2
            await asyncio.to_thread(api.unsubscribe, "alice", "room:api")
            leave = await _next(room)  # after the unsub window (1 s)
            assert (type(leave), leave.user) == (Leave, "alice")
        assert await room.presence_stats() == (1, 1)
