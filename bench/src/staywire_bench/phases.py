"""The workloads of the load generator: echo, open (connection rate, idle memory),
subscribe, fan-out, reconnect storm.

Each is a coroutine over a ``Generator`` (``staywire_bench.generator``) and
returns the metrics of its measured window. The hot paths are closures swapped
into ``Conn.on_text`` for the phase, and restored to the idle handler after it.
Every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from staywire_bench import procfs
from staywire_bench.generator import TEXT, Conn, Generator
from staywire_bench.redis_cpu import per_publication_us
from staywire_bench.stats import peak_rate, percentile
from staywire_bench.windows import cpu_window, ms, server_us_per, us
from staywire.protocol.backoff import Backoff, RetryBudget

__all__ = ["echo", "fanout", "open_phase", "storm", "subscribe"]

perf_counter = time.perf_counter
monotonic = time.monotonic


async def echo(gen: Generator, name: str, nconns: int) -> dict[str, Any]:
    p = gen.params
    duration = float(p["echo_duration"])
    warmup = float(p["warmup"])
    conns, failures, last_error = await gen.open_many(nconns, nconns, name)
    if not conns:
        raise RuntimeError(f"{name}: no connection opened ({last_error})")
    proto = gen.proto
    req = proto.echo_request()
    prefix = proto.echo_prefix
    control = proto.control
    lat: list[float] = []
    count = 0
    finished = 0
    live = len(conns)
    done: asyncio.Future[None] = gen.loop.create_future()
    t0 = perf_counter()
    m_start = t0 + warmup
    m_end = m_start + duration

    def h_echo(c: Conn, payload: bytes) -> None:
        nonlocal count, finished
        if not payload.startswith(prefix):
            control(c, payload)
            return
        now = perf_counter()
        if now < m_end:
            if now >= m_start:
                count += 1
                lat.append(now - c.sent_at)
            c.sent_at = now
            c.tr.send(TEXT, req)  # type: ignore[union-attr]
        else:
            finished += 1
            if finished >= live and not done.done():
                done.set_result(None)

    marks: dict[str, float | None] = {}

    def mark(which: str) -> None:
        marks[which + "_cpu"] = time.process_time()
        marks[which + "_wall"] = perf_counter()
        marks[which + "_srv"] = gen.server_cpu()
        marks[which + "_redis"] = gen.redis_cpu()
        marks[which + "_cores"] = procfs.core_times()  # type: ignore[assignment]
        marks[which + "_count"] = count

    gen.loop.call_at(gen.loop.time() + warmup, mark, "start")
    gen.loop.call_at(gen.loop.time() + warmup + duration, mark, "end")
    for c in conns:
        c.on_text = h_echo
        c.sent_at = perf_counter()
        c.send_text(req)
    end_by = monotonic() + warmup + duration + 10.0
    while not done.done() and monotonic() < end_by:
        await asyncio.wait([done], timeout=0.25)
        gen.progress(name, min(int((perf_counter() - t0) * 1000),
                               int((warmup + duration) * 1000)),
                     int((warmup + duration) * 1000))
    for c in conns:
        c.on_text = gen.h_idle
    metrics: dict[str, Any] = {
        "connections": live,
        "count": count,
        "rate": count / duration,
        "p50_us": us(percentile(lat, 50)),
        "p99_us": us(percentile(lat, 99)),
        "connect_failures": failures,
        "lost": gen.unexpected_losses,
    }
    metrics.update(cpu_window(marks))
    metrics["server_us_per_msg"] = server_us_per(marks)
    return metrics


# ---------------------------------------------------------------------- open, idle memory


async def open_phase(gen: Generator, k: int, want_idle: bool
                     ) -> tuple[list[Conn], dict[str, Any], dict[str, Any] | None]:
    p = gen.params
    before = (await gen.request("rss"))["rss_kib"] if want_idle else None
    cores0 = procfs.core_times()
    cpu0, srv0, t0 = time.process_time(), gen.server_cpu(), perf_counter()
    conns, failures, last_error = await gen.open_many(k, int(p["concurrency"]), "open")
    t1, cpu1, srv1 = perf_counter(), time.process_time(), gen.server_cpu()
    cores1 = procfs.core_times()
    if not conns:
        raise RuntimeError(f"no connection opened ({last_error})")
    elapsed = t1 - t0
    connrate = {
        "connections": len(conns),
        "rate": len(conns) / elapsed,
        "seconds": elapsed,
        "concurrency": int(p["concurrency"]),
        "connect_failures": failures,
        "last_error": last_error,
    }
    connrate.update(cpu_window({"start_cpu": cpu0, "end_cpu": cpu1, "start_wall": t0,
                                "end_wall": t1, "start_srv": srv0, "end_srv": srv1,
                                "start_cores": cores0, "end_cores": cores1}))
    idle = None
    if want_idle:
        await asyncio.sleep(float(p["settle"]))
        after = (await gen.request("rss"))["rss_kib"]
        if before is not None and after is not None:
            idle = {
                "connections": len(conns),
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_conn": (after - before) / len(conns),
            }
    return conns, connrate, idle


# ---------------------------------------------------------------------- subscribe


async def subscribe(gen: Generator, conns: list[Conn], window: int | None = None
                    ) -> dict[str, Any]:
    """Every connection joins the channel (room); ``window``: at most that many ``sub``s
    unanswered at a time (None: all at once)."""
    proto = gen.proto
    acked = 0
    failed = 0
    n = len(conns)
    done: asyncio.Future[None] = gen.loop.create_future()
    pending = iter(conns)

    def send_next() -> None:
        c = next(pending, None)
        if c is not None:
            c.on_text = handler
            c.retries = 0
            c.since = None
            c.send_text(proto.sub_request(1, None))

    def on_done(c: Conn, ok: bool) -> None:
        nonlocal acked, failed
        if ok:
            acked += 1
        else:
            failed += 1
        if acked + failed >= n:
            if not done.done():
                done.set_result(None)
        elif window is not None:
            send_next()

    handler = gen.sub_handler(on_done)
    errors0 = gen.sub_errors
    t0 = perf_counter()
    for _ in range(n if window is None else min(window, n)):
        send_next()
    end_by = monotonic() + float(gen.params["phase_timeout"])
    while not done.done() and monotonic() < end_by:
        await asyncio.wait([done], timeout=0.25)
        gen.progress("subscribe", acked, n)
    if acked < n:
        raise RuntimeError(f"only {acked} of {n} subscriptions were acked "
                           f"({gen.sub_errors - errors0} errors, last: "
                           f"{gen.last_sub_error})")
    return {"seconds": perf_counter() - t0, "sub_errors": gen.sub_errors - errors0,
            "last_sub_error": gen.last_sub_error if gen.sub_errors > errors0 else ""}


# ---------------------------------------------------------------------- fan-out


async def fanout(gen: Generator, publisher: Conn, subs: list[Conn], m: int) -> dict[str, Any]:
    proto = gen.proto
    prefix = proto.msg_prefix
    control = proto.control
    k = len(subs)
    expected = k * m
    delivered = 0
    last = 0.0
    lat: list[float] = []
    done: asyncio.Future[None] = gen.loop.create_future()

    def h_msg(c: Conn, payload: bytes) -> None:
        nonlocal delivered, last
        if payload.startswith(prefix):
            now = perf_counter()
            i = payload.rfind(b'"t":')
            lat.append(now - float(payload[i + 4:payload.index(b"}", i)]))
            delivered += 1
            last = now
            if delivered >= expected and not done.done():
                done.set_result(None)
        else:
            control(c, payload)

    acks = 0
    ack_prefix = proto.ack_prefix

    def h_pub(c: Conn, payload: bytes) -> None:
        nonlocal acks
        if payload.startswith(ack_prefix):
            acks += 1
        else:
            control(c, payload)

    for c in subs:
        c.on_text = h_msg
    publisher.on_text = h_pub
    pad = b"x" * int(gen.params["pad"])
    cores0 = procfs.core_times()
    sample0 = gen.redis_sample()
    cpu0, srv0 = time.process_time(), gen.server_cpu()
    first = perf_counter()
    for i in range(1, m + 1):
        data = b'{"i":%d,"pad":"%s","t":%r}' % (i, pad, perf_counter())
        publisher.send_text(proto.pub_request(i, data))
    end_by = monotonic() + float(gen.params["phase_timeout"])
    while not done.done() and monotonic() < end_by:
        await asyncio.wait([done], timeout=0.25)
        gen.progress("fanout", delivered, expected)
    cpu1, srv1 = time.process_time(), gen.server_cpu()
    sample1 = gen.redis_sample()
    redis_window = perf_counter() - first
    redis0, redis1 = (s[0] if s else None for s in (sample0, sample1))
    cores1 = procfs.core_times()
    end = last if done.done() else perf_counter()
    for c in subs:
        c.on_text = gen.h_idle
    # Redis' idle rate, measured after the burst: before it, the subscribers' session
    # saves may still be running, and that would be taken off as "idle".
    idle = await gen.redis_idle_rate() if done.done() else None
    elapsed = max(end - first, 1e-9)
    metrics: dict[str, Any] = {
        "subscribers": k,
        "messages": m,
        "expected": expected,
        "delivered": delivered,
        "complete": delivered >= expected,
        "seconds": elapsed,
        "rate": delivered / elapsed,
        "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(max(lat) if lat else None),
        "lost": gen.unexpected_losses,
        # One PUBLISH per node per channel: this must not grow with the subscribers.
        "redis_us_per_pub": per_publication_us(redis0, redis1, redis_window, idle, m),
        "redis_publish_per_pub": (None if not sample0 or not sample1
                                  else (sample1[1] - sample0[1]) / m),
    }
    # The CPU window is the whole wait (up to the next 0.25 s poll), not only the burst.
    metrics.update(cpu_window({"start_cpu": cpu0, "end_cpu": cpu1, "start_wall": first,
                               "end_wall": perf_counter(), "start_srv": srv0,
                               "end_srv": srv1, "start_cores": cores0, "end_cores": cores1,
                               "start_redis": redis0, "end_redis": redis1}))
    return metrics


# ---------------------------------------------------------------------- reconnect storm


async def storm(gen: Generator, subs: list[Conn], delivered_per_conn: int) -> dict[str, Any]:
    p = gen.params
    n = len(subs)
    deadline = monotonic() + float(p["storm_timeout"])
    policy = Backoff(base=float(p["backoff_base"]), cap=float(p["backoff_cap"]),
                     max_retries=int(p["backoff_retries"]))
    handshakes: list[float] = []
    resubscribed: list[float] = []
    failed_attempts = 0
    gave_up = 0
    proto = gen.proto
    tasks: set[asyncio.Task[None]] = set()
    errors0 = gen.sub_errors

    def on_done(c: Conn, ok: bool) -> None:
        if c.ack is not None and not c.ack.done():
            c.ack.set_result(ok)

    h_sub_one = gen.sub_handler(on_done)

    async def reconnect(idx: int, position: tuple[str, int] | None) -> None:
        nonlocal failed_attempts, gave_up
        budget = RetryBudget(policy)
        while True:
            delay = budget.next_delay()
            if delay is None or monotonic() + delay > deadline:
                gave_up += 1
                return
            await asyncio.sleep(delay)
            try:
                conn = await gen.connect(idx, 5.0)
            except Exception:  # noqa: BLE001 - refused while the server is down
                failed_attempts += 1
                continue
            handshakes.append(monotonic())
            conn.ack = gen.loop.create_future()
            conn.on_text = h_sub_one
            conn.retries = 0
            conn.since = position
            conn.send_text(proto.sub_request(1, position))
            try:  # transient errors are retried on the connection (sub_handler)
                ok = await asyncio.wait_for(conn.ack, max(0.1, deadline - monotonic()))
            except asyncio.TimeoutError:
                ok = False
            if ok:
                resubscribed.append(monotonic())
                conn.storm = True  # lost again: reconnect again
                return
            failed_attempts += 1
            conn.close()

    def spawn(conn: Conn) -> None:
        pos = conn.position
        if pos is not None and pos[0]:
            pos = (pos[0], pos[1] + delivered_per_conn)
        task = gen.loop.create_task(reconnect(conn.idx, pos))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for c in subs:
        c.storm = True
    gen.storm_spawn = spawn
    gen.storm_active = True
    cpu0 = time.process_time()
    t0 = monotonic()
    restart = gen.loop.create_task(gen.request("restart", timeout=float(p["storm_timeout"])))
    while len(resubscribed) < n and monotonic() < deadline:
        await asyncio.sleep(0.05)
        gen.progress("storm", len(resubscribed), n)
        if restart.done() and restart.exception() is not None:
            break
    gen.storm_active = False
    cpu1, t1 = time.process_time(), monotonic()
    reply = await restart
    if reply.get("pid"):
        gen.server_pid = int(reply["pid"])
    for task in list(tasks):
        task.cancel()
    killed_at = float(reply.get("killed_at", t0))
    ready_at = float(reply.get("ready_at", killed_at))
    last = max(resubscribed) if resubscribed else t1
    return {
        "clients": n,
        "reconnected": len(resubscribed),
        "complete": len(resubscribed) >= n,
        "seconds": last - killed_at,
        "after_ready_s": last - ready_at,
        "restart_s": ready_at - killed_at,
        "peak_hs_per_s": peak_rate(handshakes, 0.2),
        "mean_hs_per_s": (len(handshakes) / (max(handshakes) - min(handshakes))
                          if len(handshakes) > 1 and max(handshakes) > min(handshakes)
                          else None),
        "failed_attempts": failed_attempts,
        "sub_errors": gen.sub_errors - errors0,
        "gave_up": gave_up,
        "gen_cpu_pct": 100.0 * (cpu1 - cpu0) / max(t1 - t0, 1e-9),
        "backoff": {"base": policy.base, "factor": policy.factor, "cap": policy.cap,
                    "jitter": "x(0.5+random())"},
    }
