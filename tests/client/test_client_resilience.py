"""The failures the client exists for: resets, restarts, black holes, herds.

Real ``staywire serve`` processes; a TCP proxy in this process (tests/support/tcp_proxy.py)
between clients and server breaks links on command."""

from __future__ import annotations

import asyncio
import signal
import statistics
import time

from staywire.client import ConnectionState, Message
from tests.client.helpers import Collector, eventually


def assert_exactly_once_in_order(collector: Collector, acked: dict[int, object]) -> None:
    offsets = collector.offsets()
    assert offsets == sorted(offsets), "delivered out of order"
    assert len(offsets) == len(set(offsets)), "delivered twice"
    assert set(offsets) == set(acked), "an acknowledged publication was not delivered"
    assert {m.offset: m.data for m in collector.messages} == acked


async def test_resets_lose_nothing_and_duplicate_nothing(anon_server, proxy_factory,
                                                         client_factory):
    """Three clients publish and subscribe through a proxy that resets every connection
    again and again: every acknowledged publication reaches every subscriber once, in order."""
    proxy = await proxy_factory(anon_server.port)
    clients = [client_factory(proxy.url) for _ in range(3)]
    await asyncio.gather(*(c.connect() for c in clients))
    subs = [c.subscribe("room:1") for c in clients]
    for sub in subs:
        await sub.__aenter__()
    collectors = [Collector(s) for s in subs]
    acked: dict[int, object] = {}
    per_client = 40

    async def publisher(n: int) -> None:
        client = clients[n]
        for batch in range(per_client // 5):
            # five in flight at once, so resets catch publishes between write and ack
            data = [{"client": n, "i": batch * 5 + k} for k in range(5)]
            offsets = await asyncio.gather(*(client.publish("room:1", d) for d in data))
            acked.update(zip(offsets, data))
            await asyncio.sleep(0.01)

    async def resetter() -> int:
        resets = 0
        for _ in range(8):
            await asyncio.sleep(0.12)
            resets += proxy.reset_all()
        return resets

    results = await asyncio.wait_for(
        asyncio.gather(resetter(), *(publisher(n) for n in range(3))), 20
    )
    assert results[0] >= 8  # connections were really reset, several times each
    total = 3 * per_client
    assert len(acked) == total and sorted(acked) == list(range(1, total + 1)), \
        "a publication landed twice or not at all"
    await eventually(lambda: all(len(c.messages) >= total for c in collectors), 10,
                     "every subscriber to catch up")
    for collector in collectors:
        assert_exactly_once_in_order(collector, acked)
        assert collector.recoveries == []  # history held everything: always recovered
        for n in range(3):  # each publisher's messages keep their publish order
            mine = [m.data["i"] for m in collector.messages if m.data["client"] == n]
            assert mine == list(range(per_client))
    print(f"\nresets: {results[0]} connections reset in 8 rounds; connects per client "
          f"{[c.stats['connects'] for c in clients]}; publishes sent again "
          f"{[c.stats['resent'] for c in clients]}, of which the server had already published "
          f"{[c.stats['duplicate_acks'] for c in clients]}; replayed msgs dropped by dedupe "
          f"{[c.stats['duplicates_dropped'] for c in clients]}")
    assert all(c.stats["connects"] >= 3 for c in clients)
    assert all(c.stats["gaps"] == 0 and c.stats["missing"] == 0 for c in clients)


async def test_server_restart_recovers_with_backoff_and_reports_unrecovered(
    anon_server, client_factory
):
    """Memory broker: a restart loses history. Clients come back with backoff, resubscribe,
    are told recovered=False, and publishes queued meanwhile land once and reach everyone."""
    srv = anon_server
    changes: list[list] = [[], [], []]
    clients = [client_factory(srv.url, on_state_change=changes[n].append) for n in range(3)]
    await asyncio.gather(*(c.connect() for c in clients))
    subs = [c.subscribe("room:1") for c in clients]
    for sub in subs:
        await sub.__aenter__()
    collectors = [Collector(s) for s in subs]
    before = [await clients[0].publish("room:1", {"phase": 1, "i": i}) for i in range(3)]
    assert before == [1, 2, 3]
    await eventually(lambda: all(len(c.messages) == 3 for c in collectors))

    srv.kill()
    await eventually(lambda: all(c.state is ConnectionState.RECONNECTING for c in clients))
    queued = [asyncio.create_task(c.publish("room:1", {"phase": 2, "client": n}))
              for n, c in enumerate(clients)]
    await asyncio.sleep(0.3)  # down for a while: several backoff attempts fail
    assert not any(t.done() for t in queued)
    assert all(c.buffered_amount > 0 for c in clients)  # the queued publishes count
    await asyncio.to_thread(srv.start)
    queued_offsets = await asyncio.wait_for(asyncio.gather(*queued), 10)
    after = [await clients[1].publish("room:1", {"phase": 3, "i": i}) for i in range(3)]

    assert sorted(queued_offsets) == [1, 2, 3]  # the new stream: each queued publish once
    assert after == [4, 5, 6]
    await eventually(lambda: all(len(c.messages) == 9 for c in collectors), 10,
                     "queued and later publications to arrive")
    for n, collector in enumerate(collectors):
        # old stream, then the recovery event, then the whole new stream in order
        kinds = ["msg" if isinstance(i, Message) else "recovery" for i in collector.items]
        assert kinds == ["msg"] * 3 + ["recovery"] + ["msg"] * 6
        (event,) = collector.recoveries
        assert event.recovered is False and event.epoch_changed
        assert event.previous is not None and event.previous.offset == 3
        new = collector.messages[3:]
        assert [m.offset for m in new] == [1, 2, 3, 4, 5, 6]
        assert new[0].epoch != collector.messages[0].epoch
        assert sorted(m.data["client"] for m in new[:3]) == [0, 1, 2]
        assert [m.data for m in new[3:]] == [{"phase": 3, "i": i} for i in range(3)]
        # backoff: several attempts while the server was down, delays growing
        attempts = [c for c in changes[n] if c.state is ConnectionState.RECONNECTING]
        assert len(attempts) >= 3
        assert [a.attempt for a in attempts] == list(range(1, len(attempts) + 1))
        for a in attempts:
            nominal = min(0.5, 0.05 * 2 ** (a.attempt - 1))
            assert 0.5 * nominal <= a.delay < 1.5 * nominal
        assert changes[n][-1].state is ConnectionState.OPEN


async def test_black_holed_link_is_detected_and_left(anon_server, proxy_factory,
                                                     client_factory):
    """No FIN, no RST: the proxy stops forwarding. With 0.5 s ping and 0.5 s pong timeout
    the client drops the link within 1 s of the last arrival and comes back on resume."""
    proxy = await proxy_factory(anon_server.port)
    watcher = client_factory(anon_server.url)  # direct: sees what lands
    client = client_factory(proxy.url, ping_interval=0.5, pong_timeout=0.5, connect_timeout=0.5)
    await asyncio.gather(client.connect(), watcher.connect())
    async with watcher.subscribe("room:1") as sub:
        collector = Collector(sub)
        await asyncio.sleep(0.6)  # a ping/pong round: the heartbeat is running
        proxy.pause()
        paused_at = time.monotonic()
        await eventually(lambda: client.state is ConnectionState.RECONNECTING, 3, "detection")
        detected = time.monotonic() - paused_at
        assert client.last_close is not None and client.last_close.code == 4000
        assert detected <= 1.0 + 0.25, f"took {detected:.2f} s to see the link dead"
        pending = asyncio.create_task(client.publish("room:1", "during the outage"))
        await asyncio.sleep(1.0)  # attempts through the black hole time out meanwhile
        assert client.state is ConnectionState.RECONNECTING and not pending.done()
        proxy.resume()
        resumed_at = time.monotonic()
        await eventually(lambda: client.state is ConnectionState.OPEN, 5, "reconnect")
        reopened = time.monotonic() - resumed_at
        await asyncio.wait_for(pending, 5)
        await eventually(lambda: collector.data() == ["during the outage"])
        await asyncio.sleep(0.2)
        assert collector.data() == ["during the outage"]
    print(f"\nblack hole: detected in {detected:.3f} s, reopened {reopened:.3f} s after resume")


async def test_herd_of_500_reconnects_spread_over_the_jitter_window(anon_server,
                                                                    client_factory):
    """After a restart, 500 clients with a 1 s base delay come back spread over
    [0.5 s, 1.5 s), not all at once: both when they try and when they arrive."""
    srv = anon_server
    count, base = 500, 1.0
    planned: dict[int, float] = {}  # when each client's first reconnect attempt is due
    opened: dict[int, float] = {}  # when it was welcomed again
    lost_at: dict[int, float] = {}

    def watch(n: int):
        def on_change(change) -> None:
            now = time.monotonic()
            if change.state is ConnectionState.RECONNECTING and n not in lost_at:
                lost_at[n] = now
                planned[n] = change.delay
            elif change.state is ConnectionState.OPEN and n in lost_at and n not in opened:
                opened[n] = now
        return on_change

    clients = [client_factory(srv.url, backoff_base=base, backoff_cap=4.0, ping_interval=None,
                              on_state_change=watch(n)) for n in range(count)]
    await asyncio.wait_for(asyncio.gather(*(c.connect() for c in clients)), 20)
    srv.kill()
    killed = time.monotonic()
    await asyncio.to_thread(srv.start)  # up again before the earliest delay (0.5 s)
    up = time.monotonic() - killed
    await eventually(lambda: len(opened) == count, 15, "every client to reconnect")

    def quarters(times: list[float]) -> list[int]:
        return [sum(1 for t in times if lo <= t < lo + 0.25 * base)
                for lo in (0.5 * base, 0.75 * base, base, 1.25 * base)]

    tries = sorted(planned.values())
    arrivals = sorted(opened[n] - lost_at[n] for n in range(count))
    lag = sorted(opened[n] - lost_at[n] - planned[n] for n in range(count))
    spread = arrivals[-1] - arrivals[0]
    detect = max(lost_at.values()) - killed
    print(f"\nherd: server up {up:.2f} s after kill; all saw the loss within {detect:.3f} s; "
          f"first attempts per quarter of [0.5, 1.5) s: {quarters(tries)}; arrivals "
          f"{arrivals[0]:.3f}..{arrivals[-1]:.3f} s after loss (spread {spread:.3f} s, stdev "
          f"{statistics.pstdev(arrivals):.3f} s, per quarter {quarters(arrivals)}); "
          f"arrival after the attempt was due: p50 {lag[count // 2] * 1000:.0f} ms, "
          f"p90 {lag[count * 9 // 10] * 1000:.0f} ms")
    assert detect < 0.5
    # when they try: uniform over the window (125 expected per quarter; 3 sigma is ~30)
    assert tries[0] >= 0.5 * base and tries[-1] < 1.5 * base
    for n in quarters(tries):
        assert 0.15 * count <= n <= 0.35 * count
    # when they arrive: spread over the window, not a spike (a loaded machine adds lag,
    # which only spreads them further)
    assert arrivals[0] >= 0.5 * base - 0.01
    assert spread >= 0.8 * base
    assert statistics.pstdev(arrivals) >= 0.2 * base  # uniform over 1 s: 0.29


async def test_drain_reconnects_after_reconnect_in_ms_to_the_next_server(server_factory,
                                                                         client_factory):
    """SIGTERM: the server sends ``drain`` and closes each connection within its window;
    the client leaves at about ``reconnect_in_ms`` (jittered) and finds the next server."""
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], drain_window=0.4)
    changes = []
    client = client_factory(srv.url, on_state_change=changes.append, backoff_base=0.1)
    await client.connect()
    async with client.subscribe("room:1") as sub:
        collector = Collector(sub)
        await client.publish("room:1", "before")
        srv.signal(signal.SIGTERM)
        await eventually(lambda: client.state is ConnectionState.RECONNECTING, 3, "drain close")
        assert client.stats["drains"] == 1
        lost = next(c for c in changes if c.state is ConnectionState.RECONNECTING)
        assert lost.close is not None and lost.close.code in (1001, 1012)
        assert lost.delay is not None and lost.delay < 1.5 * 0.4  # the drain time, not backoff
        await asyncio.to_thread(srv.wait, 10)
        pending = asyncio.create_task(client.publish("room:1", "while away"))
        await asyncio.to_thread(srv.start)  # "the next server", on the same port
        await asyncio.wait_for(pending, 10)
        await eventually(lambda: collector.data() == ["before", "while away"], 5)
        assert [r.epoch_changed for r in collector.recoveries] == [True]
