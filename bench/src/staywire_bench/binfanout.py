"""The binary fan-out workload: 1 KiB binary publications to K subscribers.

The same burst as ``phases.fanout`` (M publications back to back, each delivered to
every subscriber), with the data as bytes in binary frames: Staywire's protocol v2
(``staywire.binary``: a binary ``pub``, each subscriber a binary ``msg``) and, for Node
``ws``, the bytes broadcast as they came. The send time is the payload's first 8 bytes
(a big-endian double), so the receiver reads it at the payload's offset, whatever the
framing around it. Run beside ``fanout`` with ``--pad`` making the JSON data 1 KiB too,
it is "the same workload in JSON" of the same run.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from staywire_bench import procfs
from staywire_bench.catalog import BINARY_SERVERS
from staywire_bench.generator import Conn, Generator
from staywire_bench.stats import percentile
from staywire_bench.windows import cpu_window, ms

__all__ = ["SIZE", "binfanout", "supported"]

SIZE = 1024  # bytes of each publication's data
_stamp = struct.Struct("!d")
perf_counter, monotonic = time.perf_counter, time.monotonic


def supported(server: str) -> bool:
    return server in BINARY_SERVERS


async def binfanout(gen: Generator, publisher: Conn, subs: list[Conn], m: int) -> dict[str, Any]:
    proto = gen.proto
    k = len(subs)
    expected = k * m
    delivered = 0
    last = 0.0
    lat: list[float] = []
    done: asyncio.Future[None] = gen.loop.create_future()
    offset_of = proto.binary_payload_at
    unpack = _stamp.unpack_from

    def h_bin(c: Conn, payload: bytes) -> None:
        nonlocal delivered, last
        now = perf_counter()
        lat.append(now - unpack(payload, offset_of(payload))[0])
        delivered += 1
        last = now
        if delivered >= expected and not done.done():
            done.set_result(None)

    for c in subs:
        c.on_binary = h_bin
    pad = b"x" * (SIZE - _stamp.size)
    cores0 = procfs.core_times()
    cpu0, srv0 = time.process_time(), gen.server_cpu()
    first = perf_counter()
    for i in range(1, m + 1):
        publisher.send_binary(proto.binary_pub_request(i, _stamp.pack(perf_counter()) + pad))
    end_by = monotonic() + float(gen.params["phase_timeout"])
    while not done.done() and monotonic() < end_by:
        await asyncio.wait([done], timeout=0.25)
        gen.progress("binfanout", delivered, expected)
    cpu1, srv1 = time.process_time(), gen.server_cpu()
    cores1 = procfs.core_times()
    end = last if done.done() else perf_counter()
    for c in subs:
        c.on_binary = gen.h_idle
    elapsed = max(end - first, 1e-9)
    metrics: dict[str, Any] = {
        "subscribers": k, "messages": m, "bytes": SIZE, "expected": expected,
        "delivered": delivered, "complete": delivered >= expected, "seconds": elapsed,
        "rate": delivered / elapsed, "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)), "max_ms": ms(max(lat) if lat else None),
        "lost": gen.unexpected_losses,
    }
    metrics.update(cpu_window({"start_cpu": cpu0, "end_cpu": cpu1, "start_wall": first,
                               "end_wall": perf_counter(), "start_srv": srv0,
                               "end_srv": srv1, "start_cores": cores0,
                               "end_cores": cores1}))
    return metrics
