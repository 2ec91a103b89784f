"""Redis Cluster under traffic: busy channels' slots move, and a primary restarts, while
60 clients publish.

Real servers on loopback: a 3-primary cluster (tests/support/redis_cluster.py), two
Staywire nodes on its ``redis+cluster://`` URL, 60 Python clients (half on each node),
each subscribed to one of six channels and publishing to it, every publish acknowledged
before the next. Mid-traffic each channel's slot is moved to another primary the way
``redis-cli --cluster reshard`` does it (SETSLOT IMPORTING/MIGRATING, MIGRATE of the
keys, SETSLOT NODE): publishes meet TRYAGAIN, ASK and MOVED and are sent again where the
slot lives; the nodes' shard subscriptions are dropped by Redis and made again on the
new owner. Then the tally, as for a Sentinel failover (test_sentinel.py): each channel's
history, read from its new primary, against what was acknowledged, and what each
subscriber saw. A slot move loses nothing: every count must be 0, and the nodes stay
ready throughout.

The second test SIGKILLs the primary of two of the channels and starts it again on its
port, with its nodes.conf, within the cluster's node timeout (no failover: the cluster
has no replicas). Meanwhile the nodes are not ready and publishes to its slots are
refused ``unavailable`` and retried by the clients with their keys, as in any Redis
outage. With ``appendfsync always`` on that primary, an acknowledged publication is on
disk, so again nothing may be lost, duplicated or reordered.

The cluster is the session's (shared with tests/brokers); both tests leave it whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import redis
from redis.crc import key_slot

from staywire.client import Client
from tests.client.helpers import FAST, Collector
from tests.conftest import ANON
from tests.deploy.test_sentinel import Tally, _wait_ready, readyz, tally
from tests.support.redis_cluster import RedisClusterGroup
from tests.support.redis_server import TIMEOUT_FACTOR, RedisServer

pytestmark = [pytest.mark.redis]

CLIENTS = 60
CHANNELS = 6
PUBLISH_EVERY = 0.05  # s between a client's ack and its next publish
TRAFFIC = 0.7  # s of traffic before the moves, and again after


@dataclass
class Run:
    acked: dict[str, dict[tuple[int, int], int]] = field(default_factory=dict)
    not_ready: int = 0  # /readyz answers other than 200 during the run
    counters: dict[str, int] = field(default_factory=dict)


async def _watch(nodes: list[object], run: Run, stop: asyncio.Event) -> None:
    deadline = time.monotonic() + 60 * TIMEOUT_FACTOR
    while not stop.is_set() and time.monotonic() < deadline:
        codes = await asyncio.gather(*(asyncio.to_thread(readyz, n) for n in nodes))
        run.not_ready += sum(1 for code in codes if code != 200)
        await asyncio.sleep(0.05)


async def traffic_run(cluster: RedisClusterGroup, server_factory, tag: str,
                      disturb: Callable[[list[str]], Awaitable[str]]) -> Run:
    """Traffic, ``disturb(channels)`` (what it did, for the report), more traffic; then
    every tally is checked to be 0."""
    nodes = [server_factory(**ANON, broker=cluster.url, history_size=5000) for _ in range(2)]
    for node in nodes:
        await asyncio.to_thread(_wait_ready, node)
    channels = [f"{tag}:{c}" for c in range(CHANNELS)]
    clients = [Client(nodes[n % 2].url, **{**FAST, "max_retries": 50}) for n in range(CLIENTS)]
    run = Run(acked={ch: {} for ch in channels})
    stop_traffic, stop_watch = asyncio.Event(), asyncio.Event()
    collectors: list[Collector] = []
    watcher = asyncio.create_task(_watch(nodes, run, stop_watch))
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        subs = [c.subscribe(channels[n % CHANNELS]) for n, c in enumerate(clients)]
        await asyncio.gather(*(s.__aenter__() for s in subs))
        collectors = [Collector(s) for s in subs]

        async def publisher(n: int) -> None:
            channel, seq = channels[n % CHANNELS], 0
            while not stop_traffic.is_set():
                offset = await clients[n].publish(channel, {"c": n, "i": seq}, timeout=30)
                run.acked[channel][(n, seq)] = offset
                seq += 1
                await asyncio.sleep(PUBLISH_EVERY)

        pubs = [asyncio.create_task(publisher(n)) for n in range(CLIENTS)]
        await asyncio.sleep(TRAFFIC)
        assert not any(p.done() for p in pubs), [p.exception() for p in pubs if p.done()]
        what = await disturb(channels)
        await asyncio.to_thread(_wait_ready_all, nodes)
        await asyncio.sleep(TRAFFIC)
        stop_traffic.set()
        await asyncio.wait_for(asyncio.gather(*pubs), 30 * TIMEOUT_FACTOR)  # none failed

        tops = {ch: max(acked.values()) for ch, acked in run.acked.items()}
        deadline = time.monotonic() + 10 * TIMEOUT_FACTOR
        while time.monotonic() < deadline and not all(
                col.offsets() and max(col.offsets()) >= tops[channels[n % CHANNELS]]
                for n, col in enumerate(collectors)):
            await asyncio.sleep(0.05)

        history, subscribers = Tally(), Tally()
        final: dict[str, set[tuple[int, tuple[int, int]]]] = {}
        for ch in channels:
            with redis.Redis(port=cluster.owner_of(f"{{{ch}}}").port) as primary:
                entries = primary.xrange(f"staywire:{{{ch}}}:stream")
            seen = []
            for entry_id, fields in entries:
                data = json.loads(fields[b"d"])
                seen.append((int(entry_id.split(b"-")[0]), (data["c"], data["i"])))
            history.add(tally(run.acked[ch], seen))
            final[ch] = set(seen)
        for n, col in enumerate(collectors):
            ch = channels[n % CHANNELS]
            seen = [(m.offset, (m.data["c"], m.data["i"])) for m in col.messages]
            subscribers.add(tally(run.acked[ch], seen, final[ch]))
        total = sum(len(a) for a in run.acked.values())
        run.counters = {"refused_retried": sum(c.stats.get("refused_retried", 0)
                                               for c in clients),
                        "resent": sum(c.stats["resent"] for c in clients)}
        print(f"\n[cluster: {what}] {total} publications acknowledged; history {history}; "
              f"subscribers {subscribers}; /readyz not 200: {run.not_ready}; "
              f"clients {run.counters}")
        assert total > CLIENTS * 2
        assert history == Tally(), "an acknowledged publication was lost"
        if subscribers != Tally():
            for node in nodes:
                print(node.log()[-6000:])  # type: ignore[attr-defined]
        assert subscribers == Tally(), "a subscriber missed or repeated a publication"
        return run
    finally:
        stop_traffic.set()
        stop_watch.set()
        await asyncio.gather(watcher, return_exceptions=True)
        for col in collectors:
            await col.stop()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def _wait_ready_all(nodes: list[object]) -> None:
    for node in nodes:
        _wait_ready(node)


async def test_slots_moving_under_traffic_lose_no_acknowledged_publication(
        redis_cluster: RedisClusterGroup, server_factory) -> None:
    async def move(channels: list[str]) -> str:
        moved = 0
        for ch in channels:
            source = redis_cluster.owner_of(f"{{{ch}}}")
            target = redis_cluster.servers[(redis_cluster.servers.index(source) + 1) % 3]
            moved += await asyncio.to_thread(
                redis_cluster.migrate_slot, key_slot(f"{{{ch}}}".encode()), target)
            assert redis_cluster.owner_of(f"{{{ch}}}") is target
        return f"{len(channels)} slots moved ({moved} keys)"

    run = await traffic_run(redis_cluster, server_factory, "move", move)
    assert run.not_ready == 0  # a slot move is no outage


async def test_a_primary_restarting_under_traffic_loses_no_acknowledged_publication(
        redis_cluster: RedisClusterGroup, server_factory) -> None:
    # Channels named so that two of the six live on the primary that restarts.
    victim = redis_cluster.owner_of("{restart:0}")
    with redis_cluster.client(victim) as admin:
        admin.config_set("appendonly", "yes")
        deadline = time.monotonic() + 10 * TIMEOUT_FACTOR
        while (admin.info("persistence")["aof_rewrite_in_progress"]
               or admin.info("persistence")["aof_rewrite_scheduled"]):
            assert time.monotonic() < deadline, "the AOF rewrite did not end"
            time.sleep(0.02)
        admin.config_set("appendfsync", "always")
    saved = victim.extra
    victim.extra = (*saved, "--appendonly", "yes", "--appendfsync", "always")

    async def restart(channels: list[str]) -> str:
        on_victim = [ch for ch in channels if redis_cluster.owner_of(f"{{{ch}}}") is victim]
        assert on_victim
        started = time.monotonic()
        await asyncio.to_thread(_kill_and_start, victim)
        await asyncio.to_thread(redis_cluster.wait_ok)
        return (f"primary :{victim.port} of {len(on_victim)} channels killed and back in "
                f"{time.monotonic() - started:.2f} s")

    try:
        run = await traffic_run(redis_cluster, server_factory, "restart", restart)
    finally:
        victim.extra = saved
        with redis_cluster.client(victim) as admin:
            admin.config_set("appendonly", "no")
    # The outage was seen: not ready for a while, publishes refused and retried.
    assert run.not_ready > 0
    assert run.counters["refused_retried"] > 0


def _kill_and_start(server: RedisServer) -> None:
    server.stop()  # SIGKILL by PID
    time.sleep(0.5)  # down for a moment: the nodes' links and publishes meet it closed
    server.start()


async def test_the_api_control_plane_and_presence_run_on_the_cluster(
        redis_cluster: RedisClusterGroup, server_factory, tmp_path) -> None:
    # Beside the broker, the server API's control plane (sharded pub/sub on one tag) and
    # the presence store take the cluster URL: two nodes see each other and the members.
    from staywire.api import ApiClient
    from tests.client.helpers import eventually

    config = tmp_path / "staywire.toml"
    config.write_text('[channels."room:*"]\npresence = true\n')
    nodes = [server_factory(**ANON, broker=redis_cluster.url, api_key="cluster-key",
                            config=str(config)) for _ in range(2)]
    for node in nodes:
        await asyncio.to_thread(_wait_ready, node)
    clients = [Client(node.url, **FAST) for node in nodes]
    try:
        for client in clients:
            await client.connect()
        async with clients[0].subscribe("room:c"), clients[1].subscribe("room:c"):
            with ApiClient(nodes[0].api, "cluster-key") as api:
                info = await asyncio.to_thread(api.info)
                # Both nodes answer (nodes of earlier tests, killed less than the heartbeat
                # TTL ago, may still be named in ``missing``).
                assert sorted(n.connections for n in info.nodes) == [1, 1]
                await eventually(lambda: api.presence_stats("room:c").clients == 2,
                                 what="both subscribers present, through the cluster")
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
