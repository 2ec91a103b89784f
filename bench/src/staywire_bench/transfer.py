"""The transfer figure of issue 11: one large payload from one Python client to N
subscribers through one node on the memory broker, beside a bare picows server relaying
the same bytes, in the same run.

    python -m staywire_bench.transfer [--mib 256] [--subscribers 10] [--json out.json]

Reported, per server:

* ``MiB/s``: the payload's size over the time from the first byte sent until every
  subscriber holds all of it (Staywire: ``Client.send_transfer``; bare picows: binary
  frames of the same 60 KiB relayed to the room), and its ratio to the bare server's
  (goal >= 50 %). Subscribers are plain picows connections that hash what they get
  (after Staywire's frame header), the same work for both, so the figure is the
  servers' and every subscriber's bytes are checked against the payload's SHA-256;
* ``RSS growth``: the server process's peak resident memory during the transfer over
  its resident memory before it (goal <= 64 MiB), sampled every 20 ms from /proc;
* ``ping p99``: the round trip of a bystander connection that sends an application
  ``ping`` every 20 ms throughout (goal <= 50 ms).

Both servers run as their own processes on loopback ports, stopped by PID; the clients
run in this process (the load generator), so the figures include its cost, the same for
both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from staywire_bench.ports import free_port
from staywire_bench.servers import ProcessRegistry, staywire_settings, wait_port

__all__ = ["GOALS", "run"]

GOALS = {"ratio": 0.5, "rss_mib": 64.0, "ping_p99_ms": 50.0}
CHUNK = 60 * 1024  # Staywire's default max_data_size: the bare relay gets the same frames
PEER = Path(__file__).resolve().parents[2] / "peers" / "picows_server.py"


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _Sampler:
    """Peak RSS of a process while running, every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = _rss_kib(pid)
        self.peak = self.before
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, _rss_kib(self.pid))
            await asyncio.sleep(0.02)

    async def stop(self) -> float:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, _rss_kib(self.pid))
        return (self.peak - self.before) / 1024


class _Bystander(WSListener):
    """A connection that pings (application ``ping``, answered ``pong``) every 20 ms."""

    def __init__(self) -> None:
        self.rtts: list[float] = []
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        msg = json.loads(frame.get_payload_as_bytes())
        if msg.get("type") in ("pong", "echo") and isinstance(msg.get("t"), float):
            self.rtts.append(time.perf_counter() - msg["t"])

    async def run(self, kind: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            assert self.transport is not None
            self.transport.send(WSMsgType.TEXT, json.dumps(
                {"type": kind, "t": time.perf_counter()}).encode())
            await asyncio.sleep(0.02)

    def p99_ms(self) -> float | None:
        if len(self.rtts) < 2:
            return None
        return statistics.quantiles(self.rtts, n=100)[98] * 1000


async def _bystander(url: str, kind: str, stop: asyncio.Event,
                     subprotocol: str | None) -> tuple[_Bystander, asyncio.Task[None]]:
    headers = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    _, listener = await ws_connect(_Bystander, url, extra_headers=headers)
    task = asyncio.ensure_future(listener.run(kind, stop))
    return listener, task


class _Counter(WSListener):
    """A subscriber that hashes the payload bytes of every binary frame (after Staywire's
    header, with ``header``): the same work on both servers, and the bytes checked."""

    def __init__(self, total: int, header: bool) -> None:
        self.total = total
        self.header = header
        self.got = 0
        self.digest = hashlib.sha256()
        self.done = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is not WSMsgType.BINARY:
            return
        view = frame.get_payload_as_memoryview()
        if self.header:
            view = view[3 + (view[1] << 8 | view[2]):]
        self.digest.update(view)
        self.got += len(view)
        if self.got >= self.total and not self.done.done():
            self.done.set_result(None)


async def _subscribers(url: str, n: int, total: int, subscribe: bytes, subprotocol: str | None
                       ) -> tuple[list[_Counter], list[WSTransport]]:
    headers = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    counters, transports = [], []
    for _ in range(n):
        transport, counter = await ws_connect(lambda: _Counter(total, subprotocol is not None),
                                              url, extra_headers=headers)
        transport.send(WSMsgType.TEXT, subscribe)
        counters.append(counter)
        transports.append(transport)
    await asyncio.sleep(0.3)  # their acks (a bare peer answers at once; nothing to wait on)
    return counters, transports


def _figures(payload: bytes, elapsed: float, rss: float, bystander: _Bystander,
             counters: list[_Counter]) -> dict[str, Any]:
    digest = hashlib.sha256(payload).hexdigest()
    return {"seconds": elapsed, "mib_s": len(payload) / 2**20 / elapsed, "rss_growth_mib": rss,
            "ping_p99_ms": bystander.p99_ms(), "pings": len(bystander.rtts),
            "intact": all(c.digest.hexdigest() == digest for c in counters)}


async def _staywire(url: str, pid: int, payload: bytes, subscribers: int) -> dict[str, Any]:
    """One ``staywire.Client`` sends the payload with ``send_transfer``."""
    from staywire.client import Client

    counters, transports = await _subscribers(
        url, subscribers, len(payload),
        b'{"type":"sub","id":1,"channel":"bench:files"}', "staywire.v2")
    publisher = Client(url)
    await publisher.connect()
    stop = asyncio.Event()
    bystander, pinging = await _bystander(url, "ping", stop, "staywire.v1")
    try:
        sampler = _Sampler(pid)
        started = time.perf_counter()
        await publisher.send_transfer("bench:files", payload)
        await asyncio.gather(*(c.done for c in counters))
        elapsed = time.perf_counter() - started
        rss = await sampler.stop()
    finally:
        stop.set()
        await asyncio.gather(pinging, return_exceptions=True)
        await publisher.close()
        for transport in transports:
            transport.disconnect()
    return _figures(payload, elapsed, rss, bystander, counters)


async def _bare(url: str, pid: int, payload: bytes, subscribers: int) -> dict[str, Any]:
    """A bare picows sender: frames of the same size, its write buffer bounded to the same
    window (8 chunks), relayed by the peer to every room member."""
    counters, transports = await _subscribers(url, subscribers, len(payload),
                                              b'{"type":"sub"}', None)
    sender, _ = await ws_connect(WSListener, url)
    transports.append(sender)
    stop = asyncio.Event()
    bystander, pinging = await _bystander(url, "echo", stop, None)
    try:
        sampler = _Sampler(pid)
        started = time.perf_counter()
        raw = sender.underlying_transport
        view = memoryview(payload)
        for at in range(0, len(payload), CHUNK):
            sender.send(WSMsgType.BINARY, bytes(view[at:at + CHUNK]))  # a copy: masked in place
            while raw.get_write_buffer_size() > 8 * CHUNK:
                await asyncio.sleep(0.001)
        await asyncio.gather(*(c.done for c in counters))
        elapsed = time.perf_counter() - started
        rss = await sampler.stop()
    finally:
        stop.set()
        await asyncio.gather(pinging, return_exceptions=True)
        for transport in transports:
            transport.disconnect()
    return _figures(payload, elapsed, rss, bystander, counters)


def run(mib: float = 256, subscribers: int = 10) -> dict[str, Any]:
    """Both servers, one after the other, each a fresh process; the figures of each."""
    payload = os.urandom(int(mib * 2**20))
    registry = ProcessRegistry()
    results: dict[str, Any] = {"mib": mib, "subscribers": subscribers, "goals": GOALS}
    try:
        port = free_port()
        flags, env = staywire_settings()
        node = registry.start("staywire", [sys.executable, "-m", "staywire", "serve",
                                           "--host", "127.0.0.1", "--port", str(port),
                                           "--api-port", str(free_port()), *flags],
                              env={**os.environ, **env})
        if not wait_port(port, 20, node.alive):
            raise RuntimeError(f"staywire did not start: {node.log_tail()}")
        results["staywire"] = uvloop.run(_staywire(f"ws://127.0.0.1:{port}/ws", node.pid,
                                                    payload, subscribers))
        node.stop()
        port = free_port()
        peer = registry.start("picows", [sys.executable, str(PEER), str(port)])
        if not wait_port(port, 20, peer.alive):
            raise RuntimeError(f"the picows peer did not start: {peer.log_tail()}")
        results["picows"] = uvloop.run(_bare(f"ws://127.0.0.1:{port}/", peer.pid, payload,
                                              subscribers))
        peer.stop()
    finally:
        registry.stop_all()
    results["ratio"] = results["staywire"]["mib_s"] / results["picows"]["mib_s"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=float, default=256.0)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    results = run(args.mib, args.subscribers)
    for name in ("staywire", "picows"):
        r = results[name]
        p99 = "n/a" if r["ping_p99_ms"] is None else f"{r['ping_p99_ms']:.1f} ms"
        print(f"{name:9} {r['mib_s']:8.1f} MiB/s  RSS +{r['rss_growth_mib']:6.1f} MiB  "
              f"ping p99 {p99} ({r['pings']} pings)  intact={r['intact']}")
    print(f"ratio staywire/picows: {results['ratio']:.2f} (goal >= {GOALS['ratio']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
