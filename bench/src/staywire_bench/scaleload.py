"""The load generator's side of the ``scaleout`` workload (Staywire only).

One generator process per topology (``staywire_bench.scaleout`` starts it with
``"plan": "scaleout"`` in the spec). Two plans:

* ``fanout``: the publisher connects straight to node A; the K subscribers to
  ``subscriber_url`` (node A itself, or nginx in front of one or two nodes); M
  publications back to back, as in the peer fan-out (``phases.fanout``). Around
  the burst it reads the CPU time of every process of the topology (nodes,
  nginx master and workers, redis-server, itself) and each node's ``/metrics``
  (connections, messages out), so the report can say where the subscribers
  landed and which process ran out of CPU.
* ``latency``: the publisher on node A, ``lat_subs`` subscribers straight to
  node B and ``lat_ref_subs`` to node A (the reference: same node as the
  publisher); publications paced at ``lat_rate`` per second, not a burst; the
  publish-to-deliver time of every delivery (one clock: this process's).

Every wait is bounded; every connection is closed before the process exits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from staywire_bench import phases, procfs
from staywire_bench.generator import Conn, Generator
from staywire_bench.stats import percentile
from staywire_bench.windows import ms

__all__ = ["run_scaleout"]

perf_counter = time.perf_counter
monotonic = time.monotonic


async def run_scaleout(gen: Generator) -> None:
    try:
        if gen.spec["workload"] == "latency":
            metrics = await latency(gen)
        else:
            metrics = await fanout(gen)
        gen.emit(event="result", workload=gen.spec["workload"], metrics=metrics)
    finally:
        gen.close_all()
        await asyncio.sleep(0.05)
    gen.emit(event="done")


def _endpoint(gen: Generator, base: str) -> str:
    return base.rstrip("/") + gen.proto.path


# ---------------------------------------------------------------------- what the nodes say


async def scrape(port: int, timeout: float = 3.0) -> dict[str, float]:
    """The ``staywire_*`` gauges and counters of a node's ``/metrics`` (its API port);
    empty when it does not answer in time."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
            body = await reader.read()
    except (OSError, TimeoutError):
        return {}
    finally:
        if writer is not None:
            writer.close()
    out: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("staywire_") and value:
            try:
                out[name[len("staywire_"):]] = float(value)
            except ValueError:
                continue
    return out


async def node_counters(gen: Generator) -> list[dict[str, float]]:
    return list(await asyncio.gather(*(scrape(int(n["api_port"]))
                                       for n in gen.spec["nodes"])))


def cpu_snapshot(gen: Generator) -> dict[str, Any]:
    """CPU seconds so far of every process of the topology, and of every core."""
    procs: dict[str, float | None] = {"generator": time.process_time()}
    for node in gen.spec["nodes"]:
        procs[f"node {node['name']}"] = procfs.cpu_seconds(int(node["pid"]))
    for group, pids in gen.spec.get("procs", {}).items():
        values = [procfs.cpu_seconds(int(pid)) for pid in pids]
        procs[group] = sum(v for v in values if v is not None) if pids else None
    return {"wall": perf_counter(), "procs": procs, "cores": procfs.core_times(),
            "busy": procfs.machine_busy()}


def cpu_use(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """% of one core per process between two snapshots; ``other``: the rest of the
    machine's busy time (processes that are not ours: noise, interrupts not counted, as
    in the peer runs); ``machine_busy``: everything, interrupt handling included."""
    wall = max(b["wall"] - a["wall"], 1e-9)
    out: dict[str, float | None] = {}
    for name, before in a["procs"].items():
        after = b["procs"].get(name)
        out[name] = (None if before is None or after is None
                     else max(0.0, 100.0 * (after - before) / wall))
    k0, k1 = a["cores"], b["cores"]
    busy = sum(k1[c][0] - k0[c][0] for c in k1 if c in k0)
    steal = sum(k1[c][1] - k0[c][1] for c in k1 if c in k0)
    ours = sum(v for v in out.values() if v is not None)
    b0, b1 = a.get("busy"), b.get("busy")
    total = None if b0 is None or b1 is None else 100.0 * (b1 - b0) / wall
    return {"cpu_pct": out, "machine_busy_pct": total,
            "interrupts_pct": None if total is None else max(0.0, total - 100.0 * busy / wall),
            "other_cpu_pct": max(0.0, 100.0 * busy / wall - ours),
            "steal_pct": 100.0 * steal / wall, "window_s": wall}


def _deltas(before: list[dict[str, float]], after: list[dict[str, float]],
            nodes: list[dict[str, Any]], use: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for node, b, a in zip(nodes, before, after):
        sent = (a.get("messages_out_total", 0.0) - b.get("messages_out_total", 0.0)
                if a and b else None)
        out.append({"name": node["name"], "core": node.get("core"),
                    "connections": a.get("connections") if a else None,
                    "messages_out": sent,
                    "cpu_pct": use["cpu_pct"].get(f"node {node['name']}")})
    return out


# ---------------------------------------------------------------------- fan-out


async def fanout(gen: Generator) -> dict[str, Any]:
    p = gen.params
    spec = gen.spec
    k, m = int(p["K"]), int(p["M"])
    timeout = float(p.get("connect_timeout", 10.0))
    publisher = await gen.connect(-1, timeout, _endpoint(gen, spec["publisher_url"]))
    t0 = perf_counter()
    subs, failures, last_error = await gen.open_many(
        k, int(p["concurrency"]), "open", _endpoint(gen, spec["subscriber_url"]))
    opened_s = perf_counter() - t0
    if len(subs) < k:
        raise RuntimeError(f"only {len(subs)} of {k} subscribers connected ({last_error})")
    sub_info = await phases.subscribe(gen, subs)
    await asyncio.sleep(0.2)  # let the nodes finish the subscriptions' bookkeeping
    before = await node_counters(gen)
    snap0 = cpu_snapshot(gen)
    metrics = await phases.fanout(gen, publisher, subs, m)
    snap1 = cpu_snapshot(gen)
    after = await node_counters(gen)
    use = cpu_use(snap0, snap1)
    # phases.fanout measured the generator and node A only: the topology's figures replace
    # its CPU fields.
    for key in ("server_cpu_pct", "other_cpu_pct", "steal_pct"):
        metrics.pop(key, None)
    metrics.update({
        "connect_rate": len(subs) / max(opened_s, 1e-9),
        "connect_failures": failures,
        "last_error": last_error,
        "subscribe_s": sub_info.get("seconds"),
        "sub_errors": sub_info.get("sub_errors"),
        "nodes": _deltas(before, after, spec["nodes"], use),
        "gen_cpu_pct": use["cpu_pct"].get("generator"),
        "nginx_cpu_pct": use["cpu_pct"].get("nginx"),
        "redis_cpu_pct": use["cpu_pct"].get("redis"),
        "machine_busy_pct": use["machine_busy_pct"],
        "interrupts_pct": use["interrupts_pct"],
        "other_cpu_pct": use["other_cpu_pct"],
        "steal_pct": use["steal_pct"],
        "cpu_window_s": use["window_s"],
    })
    return metrics


# ---------------------------------------------------------------------- paced latency


async def latency(gen: Generator) -> dict[str, Any]:
    p = gen.params
    spec = gen.spec
    proto = gen.proto
    n_b, n_a = int(p["lat_subs"]), int(p["lat_ref_subs"])
    count, rate, skip = int(p["lat_messages"]), float(p["lat_rate"]), int(p["lat_warmup"])
    timeout = float(p.get("connect_timeout", 10.0))
    conc = int(p["concurrency"])
    publisher = await gen.connect(-1, timeout, _endpoint(gen, spec["publisher_url"]))
    subs_b, _, err_b = await gen.open_many(n_b, conc, "open B", _endpoint(gen, spec["far_url"]))
    subs_a, _, err_a = await gen.open_many(n_a, conc, "open A", _endpoint(gen, spec["near_url"]))
    if len(subs_b) < n_b or len(subs_a) < n_a:
        raise RuntimeError(f"latency: {len(subs_b)}/{n_b} subscribers on B, {len(subs_a)}/"
                           f"{n_a} on A connected ({err_b or err_a})")
    await phases.subscribe(gen, subs_b + subs_a)
    await asyncio.sleep(0.2)

    prefix = proto.msg_prefix
    control = proto.control
    far: list[float] = []
    near: list[float] = []
    first_far: dict[int, float] = {}  # per publication, its first delivery on B
    first_near: dict[int, float] = {}  # and on A
    expected = (n_b + n_a) * count
    delivered = 0
    done: asyncio.Future[None] = gen.loop.create_future()

    def handler(samples: list[float], first: dict[int, float]) -> Any:
        def h(c: Conn, payload: bytes) -> None:
            nonlocal delivered
            if not payload.startswith(prefix):
                control(c, payload)
                return
            now = perf_counter()
            j = payload.rfind(b'"t":')
            lat = now - float(payload[j + 4:payload.index(b"}", j)])
            j = payload.rfind(b'"i":')
            i = int(payload[j + 4:payload.index(b",", j)])
            if i > skip:
                samples.append(lat)
                if i not in first or lat < first[i]:
                    first[i] = lat
            delivered += 1
            if delivered >= expected and not done.done():
                done.set_result(None)

        return h

    h_far, h_near = handler(far, first_far), handler(near, first_near)
    for c in subs_b:
        c.on_text = h_far
    for c in subs_a:
        c.on_text = h_near
    publisher.on_text = gen.h_idle
    pad = b"x" * int(p["pad"])
    lag: list[float] = []
    snap0 = cpu_snapshot(gen)
    start = perf_counter() + 0.05
    for i in range(1, count + 1):
        target = start + (i - 1) / rate
        wait = target - perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        now = perf_counter()
        lag.append(now - target)
        publisher.send_text(proto.pub_request(i, b'{"i":%d,"pad":"%s","t":%r}' % (i, pad, now)))
        gen.progress("latency", i, count)
    end_by = monotonic() + float(p["phase_timeout"])
    while not done.done() and monotonic() < end_by:
        await asyncio.wait([done], timeout=0.25)
    snap1 = cpu_snapshot(gen)
    use = cpu_use(snap0, snap1)
    return {
        "subscribers_far": n_b, "subscribers_near": n_a, "messages": count, "rate": rate,
        "warmup_messages": skip, "expected": expected, "delivered": delivered,
        "complete": delivered >= expected,
        "p50_ms": ms(percentile(far, 50)), "p99_ms": ms(percentile(far, 99)),
        "max_ms": ms(max(far) if far else None),
        "first_p50_ms": ms(percentile(list(first_far.values()), 50)),
        "first_p99_ms": ms(percentile(list(first_far.values()), 99)),
        "near_p50_ms": ms(percentile(near, 50)), "near_p99_ms": ms(percentile(near, 99)),
        "near_max_ms": ms(max(near) if near else None),
        "near_first_p50_ms": ms(percentile(list(first_near.values()), 50)),
        "near_first_p99_ms": ms(percentile(list(first_near.values()), 99)),
        "pacing_lag_p99_ms": ms(percentile(lag, 99)),
        "nodes": [{"name": n["name"], "core": n.get("core"),
                   "cpu_pct": use["cpu_pct"].get(f"node {n['name']}")} for n in spec["nodes"]],
        "gen_cpu_pct": use["cpu_pct"].get("generator"),
        "redis_cpu_pct": use["cpu_pct"].get("redis"),
        "machine_busy_pct": use["machine_busy_pct"], "interrupts_pct": use["interrupts_pct"],
        "other_cpu_pct": use["other_cpu_pct"], "steal_pct": use["steal_pct"],
        "lost": gen.unexpected_losses,
    }
