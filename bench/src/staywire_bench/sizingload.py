"""The load generator's side of the ``sizing`` workload (Staywire only).

One generator process per topology: ``n`` nodes on one Redis (``staywire_bench.sizing``
starts them and this process with ``"plan": "sizing"``). Subscribers connect straight
to the nodes, spread evenly (the k-th of a node subscribes to ``bench``, the fan-out
channel, and to ``sizing-<k mod C>``, so every channel has subscribers on every
node). For each subscriber count of ``levels`` (ascending: the connections of one
level stay open for the next):

* ``publish``: ``pubs`` acked publications from ``publishers`` connections (spread
  over the nodes, one publication in flight each) to the ``C`` channels in turn;
  the window ends when every ack and every delivery has arrived. Redis CPU µs and
  node CPU µs per publication.
* ``publish1``: the same from one connection (on node A), a quarter as many: every
  publication a round trip of its own to Redis, nothing batched (the dear case).
* ``fanout`` (when there are subscribers): publications back to back to ``bench``
  from a publisher on node A, as many as make ``M`` x the largest level deliveries;
  the window ends at the last delivery. Node CPU µs per delivery.
* ``paced``: the same, each publication sent when the last one has reached every
  subscriber: no publications batched into one write (the dearest case).

Before each level, the nodes' idle CPU with that many connections open (heartbeats,
timers). CPU figures: ``staywire_bench.sizing_cpu``. Every wait is bounded; every
connection is closed before the process exits.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from staywire_bench import procfs
from staywire_bench.generator import Conn, Generator
from staywire_bench.redis_cpu import RedisCpu
from staywire_bench.sizing_cpu import per_unit, snapshot

__all__ = ["run_sizing"]

perf_counter = time.perf_counter
monotonic = time.monotonic
FANOUT_CHANNEL = b"bench"


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return ""


class Sizing:
    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        p = gen.params
        self.nodes: list[dict[str, Any]] = gen.spec["nodes"]
        self.pids = [int(n["pid"]) for n in self.nodes]
        self.channels = int(p["sizing_channels"])
        self.timeout = float(p["phase_timeout"])
        # Subscribers per node, in order of opening; per channel (sizing-<c>) their count.
        self.subs: list[list[Conn]] = [[] for _ in self.nodes]
        self.per_channel = [0] * self.channels
        self.publishers: list[Conn] = []
        # A connection of its own to ask Redis, kept open (see RedisCpu).
        self.redis = RedisCpu(int(gen.spec["redis_port"]))
        self.delivered = 0
        self.target = 0
        self.done: asyncio.Future[None] | None = None
        prefix = gen.proto.msg_prefix
        control = gen.proto.control

        def h_msg(c: Conn, payload: bytes) -> None:
            if not payload.startswith(prefix):
                control(c, payload)
                return
            self.delivered += 1
            if self.delivered >= self.target and self.done is not None \
                    and not self.done.done():
                self.done.set_result(None)

        self.h_msg = h_msg

    def url(self, i: int) -> str:
        return str(self.nodes[i]["url"]).rstrip("/") + self.gen.proto.path

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.subs)

    # ------------------------------------------------------------------ connections

    async def open_publishers(self, n: int) -> None:
        timeout = float(self.gen.params.get("connect_timeout", 10.0))
        for j in range(n):
            self.publishers.append(await self.gen.connect(-1 - j, timeout,
                                                          self.url(j % len(self.nodes))))

    def rss_kib(self) -> int | None:
        values = [procfs.rss_kib(pid) for pid in self.pids]
        return None if None in values else sum(v for v in values if v is not None)

    async def grow(self, total: int) -> dict[str, Any]:
        """Open subscribers up to ``total``, spread over the nodes, and subscribe them;
        the seconds it took, and the nodes' resident memory per connection added."""
        t0 = perf_counter()
        rss0 = self.rss_kib()
        n = len(self.nodes)
        want = [total // n + (1 if r < total % n else 0) for r in range(n)]
        conc = int(self.gen.params["concurrency"])
        opened: list[Conn] = []
        for r in range(n):
            new = want[r] - len(self.subs[r])
            if new <= 0:
                continue
            conns, _, err = await self.gen.open_many(new, conc, f"open node {r + 1}",
                                                     self.url(r))
            if len(conns) < new:
                raise RuntimeError(f"only {len(conns)} of {new} subscribers opened on node "
                                   f"{r + 1} ({err})")
            for c in conns:
                channel = len(self.subs[r]) % self.channels
                self.per_channel[channel] += 1
                c.position = (f"sizing-{channel}", 0)  # its channel, for the subscribe
                self.subs[r].append(c)
                opened.append(c)
        await self.subscribe(opened)
        took = perf_counter() - t0
        await asyncio.sleep(0.2)  # let the nodes finish the subscriptions' bookkeeping
        rss1 = self.rss_kib()
        return {"open_subscribe_s": took, "added": len(opened),
                "rss_kib": rss1, "rss_kib_per_conn": (rss1 - rss0) / len(opened)
                if opened and rss0 is not None and rss1 is not None else None}

    async def subscribe(self, conns: list[Conn]) -> None:
        """Each connection joins ``bench`` and its own ``sizing-<c>``; at most
        ``concurrency`` connections waiting for their two acks at a time."""
        gen = self.gen
        proto = gen.proto
        ack, msg = proto.ack_prefix, proto.msg_prefix
        pending = iter(conns)
        acked = failed = 0
        errors: list[str] = []
        done: asyncio.Future[None] = gen.loop.create_future()
        total = len(conns)

        def send_next() -> None:
            c = next(pending, None)
            if c is None:
                return
            assert c.position is not None
            c.retries = 0  # acks received
            c.on_text = handler
            c.send_text(b'{"type":"sub","id":1,"channel":"%s"}' % FANOUT_CHANNEL)
            c.send_text(b'{"type":"sub","id":2,"channel":"%s"}' % c.position[0].encode())

        def finish(c: Conn, ok: bool) -> None:
            nonlocal acked, failed
            c.on_text = self.h_msg
            if ok:
                acked += 1
            else:
                failed += 1
            if acked + failed >= total and not done.done():
                done.set_result(None)
            send_next()

        def handler(c: Conn, payload: bytes) -> None:
            if payload.startswith(ack):
                c.retries += 1
                if c.retries == 2:
                    finish(c, True)
            elif proto.is_error(payload):
                errors.append(payload[:200].decode(errors="replace"))
                finish(c, False)
            elif not payload.startswith(msg):
                proto.control(c, payload)

        if not conns:
            return
        for _ in range(min(int(gen.params["concurrency"]), total)):
            send_next()
        end_by = monotonic() + self.timeout
        while not done.done() and monotonic() < end_by:
            await asyncio.wait([done], timeout=0.25)
            gen.progress("subscribe", acked, total)
        if acked < total:
            raise RuntimeError(f"only {acked} of {total} subscribers subscribed "
                               f"({failed} errors, last: {errors[-1] if errors else 'none'})")

    # ------------------------------------------------------------------ phases

    async def wait(self, what: str) -> bool:
        assert self.done is not None
        end_by = monotonic() + self.timeout
        while not self.done.done() and monotonic() < end_by:
            await asyncio.wait([self.done], timeout=0.1)
            self.gen.progress(what, self.delivered, self.target)
        return self.done.done()

    async def idle(self, seconds: float) -> dict[str, Any]:
        """The nodes' CPU while nothing is published, ``count`` connections open."""
        a = snapshot(self.pids, None)
        await asyncio.sleep(seconds)
        b = snapshot(self.pids, None)
        use = per_unit(a, b, 0)
        return {"idle_node_cpu_pct": use["node_cpu_pct"]}

    async def publish(self, pubs: int, width: int) -> dict[str, Any]:
        """``pubs`` acked publications from the first ``width`` publishers, one in flight
        each: with many, a node pipelines several to Redis in one write and Redis answers
        them in one; with one, every publication is a round trip of its own."""
        gen = self.gen
        publishers = self.publishers[:width]
        proto = gen.proto
        ack = proto.ack_prefix
        pad = b"x" * int(gen.params["pad"])
        sent = acked = errors = 0
        last_error = ""
        channel_of = [0] * len(publishers)
        # Each publication to sizing-<c> reaches that channel's subscribers.
        deliveries = 0
        self.delivered = 0
        self.done = gen.loop.create_future()
        acks_done = gen.loop.create_future()

        def send(j: int, c: Conn) -> None:
            nonlocal sent, deliveries
            channel = (j + sent) % self.channels
            channel_of[j] = channel
            deliveries += self.per_channel[channel]
            sent += 1
            c.send_text(b'{"type":"pub","id":%d,"channel":"sizing-%d","data":{"pad":"%s"}}'
                        % (sent, channel, pad))

        def handler(j: int) -> Any:
            def h(c: Conn, payload: bytes) -> None:
                nonlocal acked, errors, last_error
                if payload.startswith(ack):
                    acked += 1
                elif proto.is_error(payload):
                    errors += 1
                    last_error = payload[:200].decode(errors="replace")
                else:
                    proto.control(c, payload)
                    return
                if sent < pubs:
                    send(j, c)
                elif acked + errors >= pubs and not acks_done.done():
                    acks_done.set_result(None)

            return h

        # The deliveries to wait for are known once every publication is sent: until
        # then no count can end the window.
        self.target = 1 << 62
        sample0 = self.redis.sample_calls()
        a = snapshot(self.pids, sample0)
        for j, c in enumerate(publishers):
            c.on_text = handler(j)
            if sent < pubs:
                send(j, c)
        end_by = monotonic() + self.timeout
        while not acks_done.done() and monotonic() < end_by:
            await asyncio.wait([acks_done], timeout=0.1)
            gen.progress("publish", acked, pubs)
        self.target = deliveries
        if self.delivered >= deliveries and not self.done.done():
            self.done.set_result(None)
        complete = acks_done.done() and await self.wait("publish deliveries")
        b = snapshot(self.pids, self.redis.sample_calls())
        for c in publishers:
            c.on_text = gen.h_idle
        idle = await gen.redis_idle_rate()  # after: nothing is published any more
        use = per_unit(a, b, acked, redis_idle_per_s=idle)
        return {"publications": pubs, "in_flight": len(publishers), "acked": acked,
                "errors": errors,
                "last_error": last_error, "deliveries": self.delivered,
                "expected_deliveries": deliveries,
                "complete": complete and errors == 0 and self.delivered == deliveries,
                "rate": acked / use["window_s"], "redis_idle_cpu_pct":
                None if idle is None else 100.0 * idle, **use}

    async def fanout(self, m: int, paced: bool) -> dict[str, Any]:
        """``m`` publications to ``bench``: back to back (a node then writes several to a
        subscriber at once), or ``paced``: each sent when every subscriber has the last
        one (one write per subscriber per publication: the dearest case)."""
        gen = self.gen
        publisher = self.publishers[0]
        pad = b"x" * int(gen.params["pad"])
        k = self.count
        self.delivered = 0
        publisher.on_text = gen.h_idle  # the acks: not counted
        complete = True
        what = "paced fan-out" if paced else "fanout"
        a = snapshot(self.pids, self.redis.sample_calls())
        for i in range(1, m + 1):
            if paced or i == 1:
                self.target = (i if paced else m) * k
                self.done = gen.loop.create_future()
            publisher.send_text(b'{"type":"pub","id":%d,"channel":"%s","data":{"i":%d,'
                                b'"pad":"%s"}}' % (i, FANOUT_CHANNEL, i, pad))
            if paced and not await self.wait(what):
                complete = False
                break
        if not paced:
            complete = await self.wait(what)
        b = snapshot(self.pids, self.redis.sample_calls())
        use = per_unit(a, b, self.delivered)
        return {"publications": m, "paced": paced, "expected_deliveries": m * k,
                "deliveries": self.delivered,
                "complete": complete and self.delivered == m * k,
                "rate": self.delivered / use["window_s"], **use}


async def run_sizing(gen: Generator) -> None:
    p = gen.params
    levels = sorted(int(x) for x in p["sizing_levels"])
    s = Sizing(gen)
    n = len(s.nodes)
    try:
        await s.open_publishers(int(p["sizing_publishers"]))
        # The nodes' start-up writes to Redis (heartbeats, scripts) out of the first window.
        await asyncio.sleep(float(p["sizing_idle_s"]))
        for level in levels:
            grown = await s.grow(level)
            common = {"nodes": n, "subscribers": s.count, **grown,
                      "channels": s.channels, "publishers": len(s.publishers),
                      "loadavg": _loadavg(), "cores": len(procfs.core_times())}
            common.update(await s.idle(float(p["sizing_idle_s"])))
            pubs = int(p["sizing_pubs"])
            # Many in flight, then one: the cheap (batched) and the dear case; a quarter
            # as many publications for the second, which is the slower.
            for workload, width, count in (("publish", len(s.publishers), pubs),
                                           ("publish1", 1, max(1, pubs // 4))):
                metrics = await s.publish(count, width)
                gen.emit(event="result", workload=workload,
                         metrics={**common, **metrics, "lost": gen.unexpected_losses})
            if not s.count:
                continue
            # As many deliveries at every level as M publications make at the largest.
            m = -(-int(p["M"]) * levels[-1] // s.count)
            for workload, paced in (("fanout", False), ("paced", True)):
                metrics = await s.fanout(m, paced)
                gen.emit(event="result", workload=workload,
                         metrics={**common, **metrics, "lost": gen.unexpected_losses})
    finally:
        s.redis.close()
        gen.close_all()
        await asyncio.sleep(0.05)
    gen.emit(event="done")
