"""One contract for both presence stores (brokers/presence.py, presence_redis.py): counts
per client and per user, events at a user's first join and last leave, the limit of a
snapshot, and (Redis) a node that stops beating is swept with its leaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from staywire.brokers.presence import Member, MemoryPresence, PresenceEvent, PresenceStore, member_json
from staywire.brokers.presence_redis import RedisPresence, decode_event

pytestmark = pytest.mark.asyncio


def member(client: str, user: str) -> Member:
    return Member(client, user, member_json(client, user, None))


async def settle(events: list[PresenceEvent], n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(events) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and nothing more arrives
    assert len(events) == n, events


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
async def store(request) -> AsyncIterator[tuple[PresenceStore, list[PresenceEvent]]]:
    if request.param == "memory":
        s: PresenceStore = MemoryPresence()
    else:
        redis = request.getfixturevalue("redis_server" if request.param == "redis"
                                        else "redis_cluster")
        s = RedisPresence(redis.url, prefix=f"t{time.monotonic_ns()}:", ttl=1.0)
    events: list[PresenceEvent] = []
    await s.start(events.append)
    yield s, events
    await s.close()


async def test_counts_and_events_per_user(store) -> None:
    s, events = store
    await s.join("room", member("a1", "alice"))
    await s.join("room", member("a2", "alice"))
    await s.join("room", member("a2", "alice"))  # idempotent
    await s.join("room", member("b1", "bob"))
    await settle(events, 2)
    assert [(e.kind, e.clients) for e in events] == [("join", 1), ("join", 3)]
    snap = await s.snapshot("room", 10)
    assert (snap.clients, snap.users) == (3, 2)
    assert sorted(snap.members or []) == sorted(member(c, u).json for c, u in
                                                [("a1", "alice"), ("a2", "alice"), ("b1", "bob")])
    assert (await s.snapshot("room", 2)).members is None  # over the limit: counts only
    await s.leave("room", member("a1", "alice"))
    await s.leave("room", member("a1", "alice"))  # idempotent
    await settle(events, 2)
    await s.leave("room", member("a2", "alice"))
    await settle(events, 3)
    assert (events[2].kind, events[2].member, events[2].clients) == (
        "leave", member("a2", "alice").json, 1)
    snap = await s.snapshot("room", 10)
    assert (snap.clients, snap.users) == (1, 1)
    assert (await s.snapshot("nobody", 10)).clients == 0


@pytest.mark.redis
@pytest.mark.parametrize("where", ["redis_server", "redis_cluster"])
async def test_a_node_that_stops_beating_is_swept_with_its_leaves(
        where: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(where).url  # on Cluster: the channels in other slots
    prefix = f"t{time.monotonic_ns()}:"
    alive = RedisPresence(url, prefix=prefix, ttl=1.0)
    dead = RedisPresence(url, prefix=prefix, ttl=1.0)
    events: list[PresenceEvent] = []
    await alive.start(events.append)
    await dead.start(lambda e: None)
    try:
        await dead.join("room:1", member("d1", "dora"))
        await dead.join("room:2", member("d2", "dora"))
        await alive.join("room:1", member("a1", "dora"))  # dora is on both nodes in room:1
        await settle(events, 2)
        await dead.close(grace=0.0)  # as kill -9, from Redis's point of view: no more beats
        started = time.monotonic()
        while len(events) < 3 and time.monotonic() - started < 5:
            await alive.tick()  # what the node's timer does every ttl / 3
            await asyncio.sleep(0.1)
        await settle(events, 3)
        # room:2 had only the dead node's client of dora; room:1 keeps her other one.
        assert [(e.channel, e.kind) for e in events[2:]] == [("room:2", "leave")]
        assert (await alive.snapshot("room:1", 10)).clients == 1
        assert (await alive.snapshot("room:2", 10)).clients == 0
    finally:
        await alive.close()


async def test_event_payloads_round_trip() -> None:
    e = decode_event(b'j12:6:room:1{"client":"c","user":"u:x"}')
    assert (e.kind, e.clients, e.channel, e.member) == ("join", 12, "room:1",
                                                        b'{"client":"c","user":"u:x"}')


@pytest.mark.redis
async def test_a_leave_redis_could_not_take_is_made_at_the_next_heartbeat(redis_server) -> None:
    from staywire.exceptions import BrokerUnavailable
    from tests.support.servers import free_port
    from tests.support.tcp_proxy import TcpProxy

    proxy = await TcpProxy("127.0.0.1", redis_server.port).start()
    prefix = f"t{time.monotonic_ns()}:"
    node = RedisPresence(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, ttl=5.0)
    watcher = RedisPresence(redis_server.url, prefix=prefix, ttl=5.0)
    events: list[PresenceEvent] = []
    await watcher.start(events.append)
    await node.start(lambda e: None)
    try:
        await node.join("room:1", member("a1", "alice"))
        await settle(events, 1)
        proxy.upstream_port = free_port()  # nothing listens there: Redis is unreachable
        proxy.reset_all()
        with pytest.raises(BrokerUnavailable):
            await node.leave("room:1", member("a1", "alice"))
        assert (await watcher.snapshot("room:1", 10)).clients == 1  # still there
        proxy.upstream_port = redis_server.port  # back
        deadline = time.monotonic() + 5
        while len(events) < 2 and time.monotonic() < deadline:
            try:
                await node.tick()
            except BrokerUnavailable:
                pass  # the pool may hand out one more dead connection
            await asyncio.sleep(0.05)
        await settle(events, 2)
        assert events[1].kind == "leave"
        assert (await watcher.snapshot("room:1", 10)).clients == 0
    finally:
        await node.close()
        await watcher.close()
        await proxy.close()
