"""RedisBroker against the broker contract, and what only a shared, restartable Redis shows:
several nodes, a Redis restart, and publications missed while a node's link was down."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from staywire.brokers import redis_links
from staywire.brokers.base import Publication, Position
from staywire.brokers.redis import RedisBroker
from staywire.exceptions import BrokerUnavailable, ConfigError
from staywire.protocol.recovery import is_recovered
from tests.brokers.contract import BrokerContract, MakeNode, Node, Received, eventually
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

FAST: dict[str, Any] = {"reconnect_backoff_max": 0.1}


def node_factory(server: RedisServer, query: str = "") -> tuple[MakeNode, list[Node]]:
    # One prefix per test: tests share the session's server without sharing keys
    # or pub/sub channels, and the nodes of one test share both.
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        broker = RedisBroker(server.url + query, prefix=prefix, **{**FAST, **options})
        node = Node(broker, Received())
        nodes.append(node)
        await node.broker.start(node.received)
        return node

    return make, nodes


@pytest.fixture
async def make_node(redis_server: RedisServer) -> AsyncIterator[MakeNode]:
    make, nodes = node_factory(redis_server)
    yield make
    for node in nodes:
        await node.broker.close()


@pytest.fixture
async def make_fresh_node(fresh_redis_server: RedisServer) -> AsyncIterator[MakeNode]:
    make, nodes = node_factory(fresh_redis_server)
    yield make
    for node in nodes:
        await node.broker.close()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


class TestRedisBroker(BrokerContract):
    pass


async def test_resp3_works_too(redis_server: RedisServer) -> None:
    """redis-py's own default protocol, when a URL asks for it: pub/sub replies are pushes."""
    make, nodes = node_factory(redis_server, "?protocol=3")
    try:
        a, b = await make(), await make()
        await b.broker.subscribe("c")
        first = await a.broker.publish("c", b"1", key="k")
        assert (await a.broker.publish("c", b"1", key="k")).duplicate
        await a.broker.publish("c", b"2")
        assert rows(await b.received.wait_for("c", 2)) == [
            (first.epoch, 1, b"1"),
            (first.epoch, 2, b"2"),
        ]
        h = await b.broker.history("c", Position(first.epoch, 0))
        assert [p.offset for p in h.publications] == [1, 2]
        await b.broker.ping()
    finally:
        for node in nodes:
            await node.broker.close()


def prefix_of(node: Node) -> str:
    """The node's key prefix: for tests that look at or damage its keys in Redis."""
    assert isinstance(node.broker, RedisBroker)
    return node.broker._prefix


def rows(pubs: list[Publication]) -> list[tuple[str, int, bytes]]:
    return [(p.epoch, p.offset, p.data) for p in pubs]


# -- several nodes on one Redis ---------------------------------------------------------------


async def test_a_publish_on_one_node_reaches_the_others(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    await b.broker.subscribe("room")
    results = [await a.broker.publish("room", b"%d" % i) for i in range(1, 4)]
    delivered = await b.received.wait_for("room", 3)
    assert rows(delivered) == [(r.epoch, r.offset, b"%d" % r.offset) for r in results]
    assert a.received.publications == []  # a did not subscribe
    # history and positions are shared: b sees what a published
    h = await b.broker.history("room", Position(results[0].epoch, 1))
    assert [p.offset for p in h.publications] == [2, 3]


async def test_dedupe_holds_across_nodes(make_node: MakeNode) -> None:
    a, b, watcher = await make_node(), await make_node(), await make_node()
    await watcher.broker.subscribe("c")
    first = await a.broker.publish("c", b'"from a"', key="k-7")
    again = await b.broker.publish("c", b'"from b"', key="k-7")
    assert (again.epoch, again.offset, again.duplicate) == (first.epoch, first.offset, True)
    await b.broker.publish("c", b'"marker"')
    delivered = await watcher.received.wait_for("c", 2)
    assert [p.data for p in delivered] == [b'"from a"', b'"marker"']


async def test_keys_expire_in_redis(make_node: MakeNode, admin: Redis) -> None:
    """Nothing is kept forever: every key the broker writes has a TTL."""
    node = await make_node(history_ttl=30, dedupe_window=10)
    await node.broker.publish("c", b"1", key="k")
    await node.broker.save_session("s", b"r", 20)
    prefix = prefix_of(node)
    keys = [k async for k in admin.scan_iter(match=f"{prefix}*")]
    assert len(keys) == 4  # meta, stream, idempotency key, session
    ttls = {k.decode().rsplit(":", 1)[-1]: await admin.pttl(k) for k in keys}
    assert 0 < ttls["k"] <= 10_000
    assert 0 < ttls["stream"] <= 30_000
    assert 30_000 < ttls["meta"] <= 300_000  # outlives the stream
    assert 0 < ttls["s"] <= 20_000


async def test_an_approximate_trim_still_reads_exactly_the_newest_entries(
        make_node: MakeNode, admin: Redis) -> None:
    """The publish trims with ``MAXLEN ~`` (whole stream nodes), so the stream holds more
    than history_size; history, recovery and reverse reads still see only the newest
    ``size``, and a position older than them is not recoverable."""
    size, count = 5, 357  # past several 100-entry stream nodes
    node = await make_node(history_size=size)
    b = node.broker
    for i in range(1, count + 1):
        top = await b.publish("c", b"%d" % i)
    stored = await admin.xlen(f"{prefix_of(node)}{{c}}:stream")
    assert size < stored <= size + 100  # trimmed, by whole nodes (stream-node-max-entries)
    newest = list(range(count - size + 1, count + 1))
    for since in (0, count - size - 1, count - size):  # too old, too old, just in time
        h = await b.history("c", Position(top.epoch, since))
        assert [p.offset for p in h.publications] == newest
        assert [p.data for p in h.publications] == [b"%d" % o for o in newest]
        assert is_recovered(Position(top.epoch, since), h.position,
                            h.publications) == (since == count - size)
    h = await b.history("c", Position(top.epoch, count - 2))
    assert [p.offset for p in h.publications] == [count - 1, count]
    back = await b.history("c", Position(top.epoch, count + 1), limit=size + 3, reverse=True)
    assert [p.offset for p in back.publications] == newest[::-1]
    assert (await b.history("c", Position(top.epoch, count - 1), limit=2,
                            reverse=True)).publications[-1].offset == count - 3


# -- Redis down, Redis restarted ------------------------------------------------------------------


async def test_unreachable_redis_raises_broker_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = RedisBroker(f"redis://127.0.0.1:{port}/0", **FAST)
    try:
        await asyncio.wait_for(broker.start(Received()), 5)  # does not raise: reconnects
        assert not broker.available
        calls = [
            broker.publish("c", b"1"),
            broker.history("c", None),
            broker.subscribe("c"),
            broker.ping(),
            broker.save_session("s", b"r", 1),
            broker.load_session("s"),
            broker.delete_session("s"),
        ]
        for call in calls:
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(call, 5)
    finally:
        await asyncio.wait_for(broker.close(), 5)


async def test_redis_restart_unavailable_then_back_with_a_new_epoch(
    fresh_redis_server: RedisServer, make_fresh_node: MakeNode
) -> None:
    node = await make_fresh_node()
    b = node.broker
    await b.subscribe("c")
    before = [await b.publish("c", b"old") for _ in range(2)]
    await node.received.wait_for("c", 2)

    await asyncio.to_thread(fresh_redis_server.stop)
    await eventually(lambda: not b.available)
    for call in [
        b.publish("c", b"lost?"),
        b.ping(),
        b.history("c", None),
        b.subscribe("other"),
        b.save_session("s", b"r", 5),
    ]:
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(call, 5)

    await asyncio.to_thread(fresh_redis_server.start)
    await eventually(lambda: b.available)
    after = await b.publish("c", b"new")
    assert after.epoch != before[0].epoch
    assert after.offset == 1
    delivered = await node.received.wait_for("c", 3)
    assert rows(delivered) == [
        (before[0].epoch, 1, b"old"),
        (before[0].epoch, 2, b"old"),
        (after.epoch, 1, b"new"),
    ]
    h = await b.history("c", Position(before[0].epoch, 2))
    assert h.position == Position(after.epoch, 1)
    assert h.publications == []
    await b.ping()


async def test_a_silent_link_is_noticed_and_replaced(
    fresh_redis_server: RedisServer, make_fresh_node: MakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No FIN, no RST (a partition, a frozen Redis): the idle PING finds out."""
    monkeypatch.setattr(redis_links, "IDLE_PING", 0.1)
    node = await make_fresh_node()
    await node.broker.subscribe("c")
    fresh_redis_server.pause()
    try:
        await eventually(lambda: not node.broker.available)
    finally:
        fresh_redis_server.resume()
    await eventually(lambda: node.broker.available)
    r = await node.broker.publish("c", b"1")
    assert rows(await node.received.wait_for("c", 1)) == [(r.epoch, 1, b"1")]


async def test_publications_missed_while_the_link_was_cut_are_delivered_once_in_order(
    make_node: MakeNode, admin: Redis
) -> None:
    subscriber, publisher = await make_node(), await make_node()
    await subscriber.broker.subscribe("c")
    first = await publisher.broker.publish("c", b"0")
    await subscriber.received.wait_for("c", 1)

    # Cut the subscriber's pub/sub link and keep it from reconnecting (new
    # connections are refused authentication; established ones stay usable) while
    # the publisher goes on.
    await admin.config_set("requirepass", "gate")
    try:
        assert await admin.client_kill_filter(_type="pubsub") == 1
        await eventually(lambda: not subscriber.broker.available)
        for i in range(1, 4):
            await publisher.broker.publish("c", b"%d" % i)
        await asyncio.sleep(0.2)  # a few reconnect attempts fail meanwhile
        assert subscriber.received.offsets("c") == [1]
    finally:
        await admin.config_set("requirepass", "")

    await eventually(lambda: subscriber.broker.available)
    await publisher.broker.publish("c", b"4")
    delivered = await subscriber.received.wait_for("c", 5)
    await asyncio.sleep(0.05)
    assert rows(subscriber.received.on("c")) == [(first.epoch, i + 1, b"%d" % i) for i in range(5)]
    assert delivered[0].epoch == first.epoch


async def test_a_live_gap_is_filled_from_the_stream(
    make_node: MakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publications lost between Redis and the reader are taken from the stream
    when the next one shows the gap, before it, once each."""
    subscriber, publisher = await make_node(), await make_node()
    broker = subscriber.broker
    assert isinstance(broker, RedisBroker)
    await broker.subscribe("c")
    on_message = broker._on_message
    lost: list[int] = []

    async def lossy(pub: Publication) -> None:
        if pub.offset in (2, 3):
            lost.append(pub.offset)
            return
        await on_message(pub)

    monkeypatch.setattr(broker, "_on_message", lossy)
    for i in range(1, 6):
        await publisher.broker.publish("c", b"%d" % i)
    await subscriber.received.wait_for("c", 5)
    await asyncio.sleep(0.05)
    assert lost == [2, 3]
    assert subscriber.received.offsets("c") == [1, 2, 3, 4, 5]


async def test_a_stream_recreated_while_subscribed_delivers_only_the_new_one(
    make_node: MakeNode, admin: Redis
) -> None:
    subscriber, publisher = await make_node(), await make_node()
    await subscriber.broker.subscribe("c")
    old = await publisher.broker.publish("c", b"old")
    await subscriber.received.wait_for("c", 1)
    prefix = prefix_of(subscriber)
    await admin.delete(*[k async for k in admin.scan_iter(match=f"{prefix}{{c}}:*")])
    new = [await publisher.broker.publish("c", b"new%d" % i) for i in (1, 2)]
    assert new[0].epoch != old.epoch and [r.offset for r in new] == [1, 2]
    await subscriber.received.wait_for("c", 3)
    await asyncio.sleep(0.05)
    assert rows(subscriber.received.on("c")) == [
        (old.epoch, 1, b"old"),
        (new[0].epoch, 1, b"new1"),
        (new[0].epoch, 2, b"new2"),
    ]


async def test_close_stops_the_background_task(make_node: MakeNode) -> None:
    node = await make_node()
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    tasks = list(broker._links._tasks.values())
    assert len(tasks) == 1 and not tasks[0].done()
    await broker.close()
    assert tasks[0].done()
    with pytest.raises(BrokerUnavailable):
        await broker.publish("c", b"1")


@pytest.mark.parametrize(
    ("url", "options"),
    [("http://127.0.0.1:6379", {}), ("redis://127.0.0.1:6379", {"history_ttl": 0})],
)
def test_bad_configuration_is_refused_at_construction(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RedisBroker(url, **options)
