"""One transfer of the ``transfer`` workload (issue 11): one payload from one Python client
to N subscribers through one server, measured (``measure``); the rounds, the servers and
the summary are ``staywire_bench.transfer_run``'s.

Per server (a Staywire node on the memory broker, one on Redis, the bare picows relay):

* ``MiB/s``: the payload's size over the time from the first byte sent until every
  subscriber holds all of it (Staywire: ``Client.send_transfer``; bare picows: binary
  frames of the same 60 KiB relayed to the room). Subscribers are plain picows
  connections that hash what they get (after Staywire's frame header), the same work on
  every server, and every copy is checked against the payload's SHA-256;
* ``RSS growth``: the server process's peak resident memory during the transfer over
  its resident memory before it, sampled every 20 ms from /proc;
* ``ping p99``: the round trip of a bystander connection, in a process of its own
  (``staywire_bench.transfer_bystander``), that pings every 20 ms throughout.

The sender and the subscribers run in this process (the load generator), the same for
every server; every server is a fresh process on a loopback port, stopped by PID.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from staywire.protocol.codes import CloseCode
from staywire_bench.config import BenchError
from staywire_bench.ports import free_port
from staywire_bench.scaleout import start_node
from staywire_bench.servers import ProcessRegistry, ServerContext, wait_port

__all__ = ["GOALS", "SERVERS", "Bystander", "Counter", "Sampler", "figures", "measure",
           "open_subscribers"]

#: In the order they run: the Staywire node on each broker, then the bare relay.
SERVERS = ("staywire", "staywire-redis", "staywire-browser", "picows")
DEADLINE = 600.0

GOALS = {"ratio": 0.5, "rss_mib": 64.0, "ping_p99_ms": 50.0}
CHUNK = 60 * 1024  # Staywire's default max_data_size: the bare relay gets the same frames
PEER = Path(__file__).resolve().parents[2] / "peers" / "picows_server.py"


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
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


class Bystander:
    """The bystander process (``staywire_bench.transfer_bystander``): started and
    connected before the transfer, told to stop after it, its round trips read back."""

    def __init__(self, registry: ProcessRegistry, url: str, kind: str,
                 subprotocol: str | None) -> None:
        argv = [sys.executable, "-m", "staywire_bench.transfer_bystander", url, kind]
        self.proc = registry.start("bystander", argv + ([subprotocol] if subprotocol else []),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.registry = registry
        self.rtts: list[float] = []

    async def ready(self) -> None:
        line = await self._line(20.0)
        if line != "ready":
            raise RuntimeError(f"the bystander did not connect: {line!r} "
                               f"{self.proc.log_tail()}")

    async def stop(self) -> None:
        assert self.proc.popen.stdin is not None
        self.proc.popen.stdin.write(b"stop\n")
        self.proc.popen.stdin.flush()
        line = await self._line(10.0)
        self.rtts = json.loads(line)["rtts_ms"] if line.startswith("{") else []
        self.proc.stop()
        self.registry.forget(self.proc)

    async def _line(self, timeout: float) -> str:
        assert self.proc.popen.stdout is not None
        read = asyncio.get_running_loop().run_in_executor(None, self.proc.popen.stdout.readline)
        try:
            return (await asyncio.wait_for(read, timeout)).decode().strip()
        except asyncio.TimeoutError:
            self.proc.stop()  # its pipe closes: the reading thread returns
            return ""

    def p99_ms(self) -> float | None:
        if len(self.rtts) < 2:
            return None
        return statistics.quantiles(self.rtts, n=100)[98]


class Counter(WSListener):
    """A subscriber that hashes the payload bytes of every binary frame (after Staywire's
    header, with ``header``): the same work on both servers, and the bytes checked."""

    def __init__(self, total: int, header: bool) -> None:
        self.total = total
        self.header = header
        self.got = 0
        self.digest = hashlib.sha256()
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = loop.create_future()
        self.acked: asyncio.Future[None] = loop.create_future()  # the reply to its ``sub``

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            if b'"type":"ack"' in frame.get_payload_as_bytes() and not self.acked.done():
                self.acked.set_result(None)
            return
        if frame.msg_type is not WSMsgType.BINARY:
            return
        view = frame.get_payload_as_memoryview()
        if self.header:
            view = view[3 + (view[1] << 8 | view[2]):]
        self.digest.update(view)
        self.got += len(view)
        if self.got >= self.total and not self.done.done():
            self.done.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():  # a protocol error (a broken frame), a close, the server gone
            hs = transport.close_handshake
            code = hs.recv.code.value if hs is not None and hs.recv is not None else None
            why = "disconnected" if code is None else f"closed by the server with {code}"
            if code == CloseCode.SLOW_CONSUMER:
                why += " (slow consumer: over the node's max_send_buffer)"
            self.done.set_exception(RuntimeError(
                f"a subscriber was {why} after {self.got} of {self.total} bytes"))


async def open_subscribers(url: str, n: int, total: int, subscribe: bytes, subprotocol: str | None
                       ) -> tuple[list[Counter], list[WSTransport]]:
    headers = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    counters: list[Counter] = []
    transports: list[WSTransport] = []
    for _ in range(n):
        transport, counter = await ws_connect(lambda: Counter(total, subprotocol is not None),
                                              url, extra_headers=headers)
        assert isinstance(counter, Counter)
        transport.send(WSMsgType.TEXT, subscribe)
        counters.append(counter)
        transports.append(transport)
    # Every one subscribed (Staywire's ack, the bare peer's): none misses the first chunk.
    await asyncio.wait_for(asyncio.gather(*(c.acked for c in counters)), 20)
    return counters, transports


def figures(size: int, digest: str, elapsed: float, rss: float, bystander: Bystander,
             counters: list[Counter]) -> dict[str, Any]:
    return {"seconds": elapsed, "mib_s": size / 2**20 / elapsed, "rss_growth_mib": rss,
            "ping_p99_ms": bystander.p99_ms(), "pings": len(bystander.rtts),
            "intact": all(c.digest.hexdigest() == digest for c in counters)}


async def _staywire(url: str, pid: int, payload: bytes, subscribers: int,
                    registry: ProcessRegistry) -> dict[str, Any]:
    """One ``staywire.Client`` sends the payload with ``send_transfer``."""
    from staywire.client import Client

    counters, transports = await open_subscribers(
        url, subscribers, len(payload),
        b'{"type":"sub","id":1,"channel":"bench:files"}', "staywire.v2")
    publisher = Client(url)
    await publisher.connect()
    bystander = Bystander(registry, url, "ping", "staywire.v1")
    try:
        await bystander.ready()
        sampler = Sampler(pid)
        started = time.perf_counter()
        await publisher.send_transfer("bench:files", payload)
        await asyncio.wait_for(asyncio.gather(*(c.done for c in counters)), DEADLINE)
        elapsed = time.perf_counter() - started
        rss = await sampler.stop()
    finally:
        await bystander.stop()
        await publisher.close()
        for transport in transports:
            transport.disconnect()
    return figures(len(payload), hashlib.sha256(payload).hexdigest(), elapsed, rss,
                    bystander, counters)


async def _bare(url: str, pid: int, payload: bytes, subscribers: int,
                registry: ProcessRegistry) -> dict[str, Any]:
    """A bare picows sender: frames of the same size, its write buffer bounded to the same
    window (8 chunks), relayed by the peer to every room member."""
    counters, transports = await open_subscribers(url, subscribers, len(payload),
                                              b'{"type":"sub"}', None)
    sender, _ = await ws_connect(WSListener, url)
    transports.append(sender)
    bystander = Bystander(registry, url, "echo", None)
    try:
        await bystander.ready()
        sampler = Sampler(pid)
        started = time.perf_counter()
        raw = sender.underlying_transport
        view = memoryview(payload)
        for at in range(0, len(payload), CHUNK):
            sender.send(WSMsgType.BINARY, bytes(view[at:at + CHUNK]))
            while raw.get_write_buffer_size() > 8 * CHUNK:
                await asyncio.sleep(0.001)
        await asyncio.wait_for(asyncio.gather(*(c.done for c in counters)), DEADLINE)
        elapsed = time.perf_counter() - started
        rss = await sampler.stop()
    finally:
        await bystander.stop()
        for transport in transports:
            transport.disconnect()
    return figures(len(payload), hashlib.sha256(payload).hexdigest(), elapsed, rss,
                    bystander, counters)


def measure(registry: ProcessRegistry, ctx: ServerContext, root: Path, server: str,
            payload: bytes, subscribers: int) -> dict[str, Any]:
    """One transfer through a fresh ``server`` ("staywire", "staywire-redis" or "picows";
    from the browser: ``transfer_browser.measure_browser``), stopped after it."""
    if server == "picows":
        port = free_port()
        proc = registry.start("picows", [sys.executable, str(PEER), str(port)])
        if not wait_port(port, 20, proc.alive):
            raise BenchError(f"the picows peer did not start: {proc.log_tail()}")
        measure_one = _bare
    else:
        proc, port, _ = start_node(registry, ctx, root, "T",
                                   "redis" if server == "staywire-redis" else "memory", None)
        measure_one = _staywire
    try:
        return uvloop.run(measure_one(f"ws://127.0.0.1:{port}/ws", proc.pid, payload,
                                      subscribers, registry))
    finally:
        proc.stop()
        registry.forget(proc)
        ctx.api_ports.pop(port, None)
