"""Failover with Staywire clients: two nodes on a real Redis behind a real nginx.

A node dies (kill -9) or is drained (SIGTERM) while 200 clients publish and subscribe
through nginx. Every client ends up on the surviving node, recovers from the shared
history, and the final tally shows no acknowledged publication lost, none doubled, and
the order kept per channel."""

from __future__ import annotations

import asyncio
import signal
import statistics
import time

import pytest

from staywire.client import Client, ConnectionState
from tests.client.helpers import FAST, Collector, eventually
from tests.conftest import ANON
from tests.support.nginx import NGINX, start_nginx
from tests.support.redis_server import RedisServer
from tests.support.servers import metric

pytestmark = [pytest.mark.redis, pytest.mark.nginx,
              pytest.mark.skipif(NGINX is None, reason="nginx is not installed")]

CLIENTS = 200
CHANNELS = 10


async def run_traffic(url: str, event) -> tuple[list[Client], list[Collector], dict]:
    """200 clients, each subscribed to one of 10 channels and publishing to it; `event`
    (a coroutine function) runs in the middle of the traffic."""
    opened: dict[int, list[float]] = {n: [] for n in range(CLIENTS)}

    def track(n: int):
        def on_change(change) -> None:
            if change.state is ConnectionState.OPEN:
                opened[n].append(time.monotonic())
        return on_change

    clients = [Client(url, **{**FAST, "max_retries": 50}, on_state_change=track(n))
               for n in range(CLIENTS)]
    for n, c in enumerate(clients):
        c.opened_at = opened[n]  # type: ignore[attr-defined]
    for i in range(0, CLIENTS, 50):
        await asyncio.gather(*(c.connect() for c in clients[i:i + 50]))
    subs = [c.subscribe(f"room:{n % CHANNELS}") for n, c in enumerate(clients)]
    await asyncio.gather(*(s.__aenter__() for s in subs))
    collectors = [Collector(s) for s in subs]
    acked: dict[str, dict[int, object]] = {f"room:{c}": {} for c in range(CHANNELS)}

    async def publisher(n: int) -> None:
        channel = f"room:{n % CHANNELS}"
        for i in range(5):
            data = {"client": n, "i": i}
            offset = await clients[n].publish(channel, data)
            acked[channel][offset] = data
            await asyncio.sleep(0.1)

    pubs = [asyncio.create_task(publisher(n)) for n in range(CLIENTS)]
    await asyncio.sleep(0.25)
    await event()
    await asyncio.wait_for(asyncio.gather(*pubs), 60)
    return clients, collectors, acked


def tally(collectors: list[Collector], acked: dict[str, dict[int, object]]) -> dict:
    lost = doubled = disorder = 0
    for n, col in enumerate(collectors):
        channel = f"room:{n % CHANNELS}"
        offsets = col.offsets()
        doubled += len(offsets) - len(set(offsets))
        disorder += sum(1 for a, b in zip(offsets, offsets[1:]) if b <= a)
        lost += len(set(acked[channel]) - set(offsets))
        assert {m.offset: m.data for m in col.messages if m.offset in acked[channel]} == \
            {o: acked[channel][o] for o in offsets if o in acked[channel]}
    return {"lost": lost, "doubled": doubled, "disorder": disorder}


@pytest.fixture
def cluster(server_factory):
    with RedisServer() as redis:
        a = server_factory(**ANON, broker=redis.url, drain_window=2.0, shutdown_timeout=10,
                           ping_interval=1.0, pong_timeout=1.0)
        b = server_factory(**ANON, broker=redis.url, drain_window=2.0,
                           ping_interval=1.0, pong_timeout=1.0)
        with start_nginx([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as ngx:
            ngx.wait_ready()
            yield a, b, ngx


async def test_kill_9_one_node_loses_nothing(cluster) -> None:
    a, b, ngx = cluster
    on_a: list[float] = []

    async def kill_a() -> None:
        on_a.append(metric(a.api, "staywire_connections"))
        a.kill()

    clients, collectors, acked = await run_traffic(ngx.url, kill_a)
    try:
        total = sum(len(v) for v in acked.values())
        assert total == CLIENTS * 5
        for channel, offsets in acked.items():  # each landed exactly once: dense offsets
            assert sorted(offsets) == list(range(1, len(offsets) + 1)), channel
        await eventually(lambda: all(len(c.messages) >= len(acked[f"room:{n % CHANNELS}"])
                                     for n, c in enumerate(collectors)), 30,
                         "every subscriber to receive every acknowledged publication")
        result = tally(collectors, acked)
        moved = sum(1 for c in clients if c.stats["connects"] >= 2)
        print(f"\nkill -9: {on_a[0]:.0f} clients on the killed node, {moved} reconnected; "
              f"{total} publications acknowledged; tally {result}")
        assert result == {"lost": 0, "doubled": 0, "disorder": 0}
        assert on_a[0] > 0 and moved >= on_a[0]
        assert metric(b.api, "staywire_connections") == CLIENTS
    finally:
        for col in collectors:
            await col.stop()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_sigterm_drains_clients_to_the_other_node_spread_over_the_window(cluster) -> None:
    a, b, ngx = cluster
    drained_at: list[float] = []
    on_a: list[float] = []

    async def drain_a() -> None:
        on_a.append(metric(a.api, "staywire_connections"))
        drained_at.append(time.monotonic())
        a.signal(signal.SIGTERM)

    clients, collectors, acked = await run_traffic(ngx.url, drain_a)
    try:
        await eventually(lambda: all(len(c.messages) >= len(acked[f"room:{n % CHANNELS}"])
                                     for n, c in enumerate(collectors)), 30,
                         "every subscriber to catch up")
        result = tally(collectors, acked)
        # Every client open again (the node's count alone can include a connection that
        # is still closing), and all of them on the surviving node.
        await eventually(lambda: all(c.state is ConnectionState.OPEN for c in clients)
                         and metric(b.api, "staywire_connections") == CLIENTS, 15,
                         "every drained client to reconnect to the other node")
        drained = [c for c in clients if c.stats["drains"] >= 1]
        assert len(drained) == on_a[0] > 0
        # When did they come back? Their reconnects are spread over the drain window.
        back = sorted(c.opened_at[-1] - drained_at[0] for c in drained)  # type: ignore[attr-defined]
        print(f"\nSIGTERM: {len(drained)} clients drained; reconnects {back[0]:.2f}..{back[-1]:.2f}"
              f" s after the signal (stdev {statistics.pstdev(back):.2f} s); tally {result}")
        assert result == {"lost": 0, "doubled": 0, "disorder": 0}
        assert back[0] > 0 and back[-1] - back[0] > 0.8  # spread over the 2 s window
        assert a.wait(15) == 0
    finally:
        for col in collectors:
            await col.stop()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
