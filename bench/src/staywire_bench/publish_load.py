"""The ``publish`` workload: 100 connections, each publishing acked publications.

Each connection publishes to a channel of its own (``bench-pub-<n>``; history kept,
as the server's defaults keep it), one publication in flight: the next is sent when
the ack of the last one arrives. Measured over ``echo_duration`` seconds after the
warm-up: acked publications per second, the ack latency (p50, p99), and for a
server on the Redis broker the redis-server's CPU per publication. No connection
subscribes, so that figure set beside the fan-out's (thousands of subscribers on
one channel) shows whether Redis' cost per publication grows with the subscribers.

Staywire only: the peers' protocols have no acknowledged publish.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from staywire_bench import procfs
from staywire_bench.generator import Conn, Generator
from staywire_bench.redis_cpu import per_publication_us
from staywire_bench.stats import percentile
from staywire_bench.windows import cpu_window, ms, server_us_per

__all__ = ["publish"]

perf_counter = time.perf_counter
monotonic = time.monotonic


def _pub(rid: int, channel: bytes, pad: bytes) -> bytes:
    return b'{"type":"pub","id":%d,"channel":"%s","data":{"pad":"%s"}}' % (rid, channel, pad)


async def publish(gen: Generator, nconns: int) -> dict[str, Any]:
    p = gen.params
    duration = float(p["echo_duration"])
    warmup = float(p["warmup"])
    conns, failures, last_error = await gen.open_many(nconns, nconns, "publish")
    if not conns:
        raise RuntimeError(f"publish: no connection opened ({last_error})")
    proto = gen.proto
    ack_prefix = proto.ack_prefix
    control = proto.control
    pad = b"x" * int(p["pad"])
    lat: list[float] = []
    count = 0
    errors = 0
    last_err = ""
    finished = 0
    live = len(conns)
    done: asyncio.Future[None] = gen.loop.create_future()
    channels = {c.idx: b"bench-pub-%d" % c.idx for c in conns}
    t0 = perf_counter()
    m_start = t0 + warmup
    m_end = m_start + duration

    def h_ack(c: Conn, payload: bytes) -> None:
        nonlocal count, errors, last_err, finished
        if payload.startswith(ack_prefix):
            pass
        elif proto.is_error(payload):
            errors += 1
            last_err = payload[:200].decode(errors="replace")
        else:
            control(c, payload)
            return
        now = perf_counter()
        if now < m_end:
            if now >= m_start and payload.startswith(ack_prefix):
                count += 1
                lat.append(now - c.sent_at)
            c.retries += 1
            c.sent_at = now
            c.send_text(_pub(c.retries, channels[c.idx], pad))
        else:
            finished += 1
            if finished >= live and not done.done():
                done.set_result(None)

    marks: dict[str, Any] = {}

    def mark(which: str) -> None:
        marks[which + "_cpu"] = time.process_time()
        marks[which + "_wall"] = perf_counter()
        marks[which + "_srv"] = gen.server_cpu()
        sample = gen.redis_sample()
        marks[which + "_redis"] = sample[0] if sample else None
        marks[which + "_publishes"] = sample[1] if sample else None
        marks[which + "_cores"] = procfs.core_times()
        marks[which + "_count"] = count

    gen.loop.call_at(gen.loop.time() + warmup, mark, "start")
    gen.loop.call_at(gen.loop.time() + warmup + duration, mark, "end")
    for c in conns:
        c.on_text = h_ack
        c.retries = 1  # the request id of the publication in flight
        c.sent_at = perf_counter()
        c.send_text(_pub(1, channels[c.idx], pad))
    end_by = monotonic() + warmup + duration + 10.0
    while not done.done() and monotonic() < end_by:
        await asyncio.wait([done], timeout=0.25)
        gen.progress("publish", min(int((perf_counter() - t0) * 1000),
                                    int((warmup + duration) * 1000)),
                     int((warmup + duration) * 1000))
    for c in conns:
        c.on_text = gen.h_idle
    idle = await gen.redis_idle_rate()  # after: the connections publish no more
    r0, r1 = marks.get("start_redis"), marks.get("end_redis")
    pubs = (marks.get("end_count") or 0) - (marks.get("start_count") or 0)
    metrics: dict[str, Any] = {
        "connections": live,
        "count": count,
        "rate": count / duration,
        "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)),
        "errors": errors,
        "last_error": last_err,
        "complete": done.done(),
        "subscribers": 0,
        "redis_us_per_pub": per_publication_us(
            r0, r1, (marks.get("end_wall") or 0.0) - (marks.get("start_wall") or 0.0), idle,
            pubs),
        "redis_publish_per_pub": (
            (marks["end_publishes"] - marks["start_publishes"]) / pubs
            if marks.get("start_publishes") is not None
            and marks.get("end_publishes") is not None and pubs > 0 else None),
        "connect_failures": failures,
        "lost": gen.unexpected_losses,
    }
    metrics.update(cpu_window(marks))
    metrics["server_us_per_msg"] = server_us_per(marks)
    return metrics
