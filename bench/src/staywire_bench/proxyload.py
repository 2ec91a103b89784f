"""The load generator's side of the ``proxy`` workload (Staywire only).

One generator process per setup (``staywire_bench.proxyrun`` starts it with
``"plan": "proxy"`` in the spec):

* ``direct``: K connections opened against a node without proxies (anonymous, as in
  the peer runs), then each subscribes to the bench channel;
* ``proxy``: the same against a node whose connect and subscribe proxies call the
  FastAPI backend (``staywire_bench.proxyapp``): every handshake carries its own
  session cookie, which the backend looks up;
* ``batched``: the same with the node's ``proxy_subscribe_batch`` on; the subscribe
  phase also reads the node's ``/metrics`` for the mean batch size it sent;
* ``backend``: no node; the same number of connect calls, then subscribe calls, posted
  straight to the backend with the bodies a node sends, over as many keep-alive
  connections as the node's proxy keeps busy: the backend's own request cost. Then
  the subscribes again as batches of ``concurrency / 2`` over two connections: what a
  batching node sends with ``concurrency`` subscribes waiting and two calls out
  (``staywire.proxy.batch.MAX_CALLS``).

Around each phase it reads the CPU time of every process (node, backend, itself), so
the report can give CPU microseconds per operation for each and say which one ran out
of CPU. Every wait is bounded; every connection is closed before the process exits.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import msgspec

from staywire_bench import phases
from staywire_bench.gcstats import delta
from staywire_bench.generator import Conn, Generator
from staywire_bench.protocols import CHANNEL
from staywire_bench.proxyapp import cookie_for
from staywire_bench.scaleload import cpu_snapshot, cpu_use

__all__ = ["run_proxy"]


async def run_proxy(gen: Generator) -> None:
    setup = gen.spec["setup"]
    try:
        if setup == "backend":
            metrics = await backend_alone(gen)
        else:
            metrics = await through_node(gen)
        gen.emit(event="result", workload=setup, metrics=metrics)
    finally:
        gen.close_all()
        await asyncio.sleep(0.05)
    gen.emit(event="done")


def _window(gen: Generator, a: dict[str, Any], b: dict[str, Any], n: int) -> dict[str, Any]:
    """Rate, CPU % of a core and CPU µs per operation of each process, over ``n`` ops."""
    use = cpu_use(a, b)
    per_op: dict[str, float | None] = {}
    for name, before in a["procs"].items():
        after = b["procs"].get(name)
        per_op[name] = (None if before is None or after is None or n == 0
                        else 1e6 * (after - before) / n)
    return {"count": n, "seconds": use["window_s"], "rate": n / use["window_s"],
            "cpu_pct": use["cpu_pct"], "cpu_us_per_op": per_op,
            "other_cpu_pct": use["other_cpu_pct"], "machine_busy_pct": use["machine_busy_pct"]}


# ---------------------------------------------------------------------- through a node


async def through_node(gen: Generator) -> dict[str, Any]:
    p = gen.params
    k = int(p["K"])
    cookie = gen.spec["setup"] in ("proxy", "batched")

    def headers(i: int) -> dict[str, str]:
        return {"Cookie": cookie_for(i)}

    # One warm-up connection first: the node's (and the backend's) first call pays for
    # imports and the pool's first TCP connection.
    warm = await gen.connect(-1, float(p.get("connect_timeout", 10.0)),
                             headers=headers(k) if cookie else None)
    warm.close()
    gc0 = await gen.gc_snapshot()
    a = cpu_snapshot(gen)
    conns, failures, last_error = await gen.open_many(
        k, int(p["concurrency"]), "connect", headers=headers if cookie else None)
    b = cpu_snapshot(gen)
    if not conns:
        raise RuntimeError(f"no connection opened ({last_error})")
    connect = _window(gen, a, b, len(conns))
    gc1 = await gen.gc_snapshot()
    connect.update(connect_failures=failures, last_error=last_error, gc=delta(gc0, gc1))
    sub = await _subscribe_paced(gen, conns, int(p["concurrency"]))
    sub["gc"] = delta(gc1, await gen.gc_snapshot())  # the node's collections (gcstats.py)
    if gen.spec["setup"] == "batched" and gen.spec.get("api_port"):
        sub.update(await asyncio.to_thread(_batches, int(gen.spec["api_port"])))
    return {"connect": connect, "subscribe": sub, "concurrency": int(p["concurrency"]),
            "lost": gen.unexpected_losses}


async def _subscribe_paced(gen: Generator, conns: list[Conn], window: int) -> dict[str, Any]:
    """Every connection subscribes, at most ``window`` subscribes unanswered at a time (as
    the handshakes were): a burst of K at once would measure the proxy's concurrency
    bound (``proxy_max_concurrency``, which fails the rest fast), not its rate."""
    a = cpu_snapshot(gen)
    done = await phases.subscribe(gen, conns, window)
    b = cpu_snapshot(gen)
    out = _window(gen, a, b, len(conns))
    out.update(sub_errors=done["sub_errors"])
    return out


def _batches(api_port: int) -> dict[str, Any]:
    """The node's batch counters (``staywire_proxy_batche[sd]_total``), read after the
    window: the mean number of subscribes per batch request it sent."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, direct
    with opener.open(f"http://127.0.0.1:{api_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("staywire_proxy_batches_total", "staywire_proxy_batched_total"):
            if line.startswith(name + '{event="subscribe"}'):
                found[name] = float(line.split()[-1])
    calls = found.get("staywire_proxy_batches_total", 0.0)
    items = found.get("staywire_proxy_batched_total", 0.0)
    return {"batch_calls": calls, "batch_mean": items / calls if calls else None}


# ---------------------------------------------------------------------- the backend alone


_encode = msgspec.json.encode


def _bodies(event: str, k: int) -> list[bytes]:
    """The bodies a node sends for ``event`` (docs/proxy.md), one per connection."""
    out = []
    for i in range(k):
        call: dict[str, Any] = {"client": f"c{i:08x}", "ip": "127.0.0.1",
                                "headers": {"Cookie": cookie_for(i)}}
        if event == "connect":
            call.update(transport="websocket", protocol="staywire.v1")
        else:
            call.update(user=f"u{i}", channel=CHANNEL)
        out.append(_encode(call))
    return out


async def _post_all(host: str, port: int, path: str, bodies: list[bytes], conns: int,
                    timeout: float) -> tuple[int, int]:
    """POST every body over ``conns`` keep-alive HTTP/1.1 connections, one request in
    flight on each (as the node's pool does); returns (answered 200, other)."""
    todo = iter(bodies)
    ok = bad = 0
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()

    async def worker() -> None:
        nonlocal ok, bad
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for body in todo:
                writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if status_line.split(b" ", 2)[1:2] == [b"200"]:
                    ok += 1
                else:
                    bad += 1
        finally:
            writer.close()

    async with asyncio.timeout(timeout):
        await asyncio.gather(*(worker() for _ in range(max(1, min(conns, len(bodies))))))
    return ok, bad


async def backend_alone(gen: Generator) -> dict[str, Any]:
    p = gen.params
    k = int(p["K"])
    port = int(gen.spec["backend_port"])
    conns = int(gen.spec["backend_conns"])
    timeout = float(p["phase_timeout"])
    out: dict[str, Any] = {"concurrency": conns}
    for event in ("connect", "subscribe"):
        bodies = _bodies(event, k)
        await _post_all("127.0.0.1", port, f"/staywire/{event}", bodies[:conns], conns,
                        timeout)  # warm-up: the connections, the first calls
        a = cpu_snapshot(gen)
        ok, bad = await _post_all("127.0.0.1", port, f"/staywire/{event}", bodies, conns,
                                  timeout)
        b = cpu_snapshot(gen)
        if bad or ok != k:
            raise RuntimeError(f"backend {event}: {ok} of {k} calls answered 200")
        out[event] = _window(gen, a, b, ok)
        gen.progress(event, ok, k, force=True)
    # The subscribes again, in batches: two connections, ``conns // 2`` per batch.
    size = max(1, conns // 2)
    subs = _bodies("subscribe", k)
    batches = [b'{"batch":[%s]}' % b",".join(subs[i:i + size]) for i in range(0, k, size)]
    await _post_all("127.0.0.1", port, "/staywire/subscribe", batches[:2], 2, timeout)
    a = cpu_snapshot(gen)
    ok, bad = await _post_all("127.0.0.1", port, "/staywire/subscribe", batches, 2, timeout)
    b = cpu_snapshot(gen)
    if bad or ok != len(batches):
        raise RuntimeError(f"backend batched subscribe: {ok} of {len(batches)} answered 200")
    out["subscribe_batched"] = _window(gen, a, b, k)  # per subscribe, not per request
    out["subscribe_batched"]["batch_mean"] = k / len(batches)
    return out
