"""The load generator: picows clients on uvloop, in a process of its own.

The harness starts it as ``python -m staywire.bench.loadgen SPEC`` (SPEC is JSON),
pinned with ``taskset`` to the core the server does not use. The same generator
drives every server; only the framing of the messages differs
(``staywire.bench.protocols``).

It talks to the harness in JSON lines: events on stdout (``progress``,
``result``, ``request``, ``done``), and one reply line on stdin for each
``request`` (``rss``: the server's VmRSS; ``restart``: kill the server and start
it again on the same port, for the reconnect storm).

Every loop here is bounded in count and in time; every connection is closed
before the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from staywire.bench import procfs, protocols
from staywire.bench.stats import peak_rate, percentile
from staywire.protocol.backoff import Backoff, RetryBudget, jittered

__all__ = ["main"]

TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE
perf_counter = time.perf_counter
monotonic = time.monotonic

Handler = Callable[["Conn", bytes], None]
#: The cores the server and the generator are pinned to (``cpu0``...), for the noise figure.
CORES: set[str] = set()


class Refused(Exception):
    """The server answered the connection with a refusal at protocol level."""


class Conn(WSListener):
    """One client connection. ``on_text`` is swapped per phase: the hot paths stay small."""

    __slots__ = ("gen", "idx", "tr", "ready", "on_text", "sent_at", "position", "ack", "storm",
                 "closed", "retries", "since")

    def __init__(self, gen: Generator, idx: int) -> None:
        self.gen = gen
        self.idx = idx
        self.tr: WSTransport | None = None
        self.ready: asyncio.Future[float] = gen.loop.create_future()
        self.on_text: Handler = gen.h_handshake
        self.sent_at = 0.0
        self.position: tuple[str, int] | None = None
        self.ack: asyncio.Future[bool] | None = None
        self.storm = False
        self.closed = False  # closed by the generator itself: not a loss
        self.retries = 0  # sub retries after a transient error
        self.since: tuple[str, int] | None = None

    def send_text(self, payload: bytes) -> None:
        tr = self.tr
        if tr is not None:
            tr.send(TEXT, payload)

    def mark_ready(self) -> None:
        self.on_text = self.gen.h_idle
        if not self.ready.done():
            self.ready.set_result(monotonic())

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.tr = transport
        if self.gen.proto.ready_on_upgrade:
            self.mark_ready()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is TEXT:
            self.on_text(self, frame.get_payload_as_bytes())
        elif kind is CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("disconnected during the handshake"))
        if self.ack is not None and not self.ack.done():
            self.ack.set_result(False)
        self.gen.on_lost(self)

    def close(self) -> None:
        self.storm = False
        self.closed = True
        if self.tr is not None:
            self.tr.disconnect(graceful=False)


class Generator:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.params: dict[str, Any] = spec["params"]
        self.proto = protocols.get(spec["protocol"])
        self.url: str = spec["url"].rstrip("/") + self.proto.path
        self.server_pid: int | None = spec.get("pid")
        self.loop = asyncio.get_running_loop()
        self.headers = ({"Sec-WebSocket-Protocol": self.proto.subprotocol}
                        if self.proto.subprotocol else None)
        self.conns: list[Conn] = []  # every connection ever opened, to close at the end
        self.unexpected_losses = 0
        self.closing = False
        self.storm_active = False
        self.storm_spawn: Callable[[Conn], None] | None = None
        self.sub_errors = 0
        self.last_sub_error = ""
        self._stdin: asyncio.StreamReader | None = None
        self._last_progress = 0.0
        control = self.proto.control

        def h_idle(c: Conn, p: bytes) -> None:
            control(c, p)

        handshake = self.proto.handshake

        def h_handshake(c: Conn, p: bytes) -> None:
            state = handshake(c, p)
            if state:
                c.mark_ready()
            elif state is None and not c.ready.done():
                c.ready.set_exception(Refused(p[:200].decode(errors="replace")))

        self.h_idle = h_idle
        self.h_handshake = h_handshake

    # ------------------------------------------------------------------ harness link

    def emit(self, **event: Any) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def progress(self, phase: str, done: int, total: int, force: bool = False) -> None:
        now = monotonic()
        if force or now - self._last_progress >= 0.25:
            self._last_progress = now
            self.emit(event="progress", phase=phase, done=done, total=total)

    async def open_stdin(self) -> None:
        import os
        import stat

        # The harness gives a pipe; anything else (a terminal, /dev/null) cannot be read
        # asynchronously, and requests (rss, restart) then fail with a clear error.
        if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            return
        reader = asyncio.StreamReader()
        await self.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                          sys.stdin)
        self._stdin = reader

    async def request(self, op: str, timeout: float = 60.0) -> dict[str, Any]:
        if self._stdin is None:
            raise RuntimeError(f"request {op!r} needs the harness: stdin is not a pipe")
        self.emit(event="request", op=op)
        line = await asyncio.wait_for(self._stdin.readline(), timeout)
        if not line:
            raise RuntimeError("the harness closed the control pipe")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def server_cpu(self) -> float | None:
        return procfs.cpu_seconds(self.server_pid) if self.server_pid else None

    # ------------------------------------------------------------------ connections

    def on_lost(self, conn: Conn) -> None:
        if self.closing or conn.closed:
            return
        if conn.storm and self.storm_active and self.storm_spawn is not None:
            conn.storm = False
            self.storm_spawn(conn)
            return
        if conn.ready.done() and not conn.ready.cancelled() and conn.ready.exception() is None:
            self.unexpected_losses += 1

    async def connect(self, idx: int, timeout: float) -> Conn:
        async with asyncio.timeout(timeout):
            _, conn = await ws_connect(
                lambda: Conn(self, idx), self.url, extra_headers=self.headers,
                websocket_handshake_timeout=timeout, enable_auto_ping=False,
                read_buffer_init_size=4096, logger_name="bench",
                use_aiofastnet=False,  # uvloop's own connect: cheaper per handshake
            )
            assert isinstance(conn, Conn)
            self.conns.append(conn)
            try:
                await conn.ready
            except BaseException:
                conn.close()
                raise
        return conn

    def sub_handler(self, on_done: Callable[[Conn, bool], None]) -> Handler:
        """The handler of a connection waiting for its ``sub`` to be acked. A transient
        error is retried on the same connection as the Staywire client does: after
        jittered(0.5 s x attempt), at most 5 times."""
        proto = self.proto
        ack_prefix = proto.ack_prefix
        msg_prefix = proto.msg_prefix
        control = proto.control
        h_idle = self.h_idle
        loop = self.loop

        def resend(c: Conn) -> None:
            if not c.closed and c.tr is not None and c.on_text is handler:
                c.send_text(proto.sub_request(1 + c.retries, c.since))

        def handler(c: Conn, payload: bytes) -> None:
            if payload.startswith(ack_prefix):
                c.position = proto.sub_ack(payload)
                c.on_text = h_idle
                on_done(c, True)
            elif proto.is_error(payload):
                self.sub_errors += 1
                self.last_sub_error = payload[:200].decode(errors="replace")
                if c.retries < 5:
                    c.retries += 1
                    loop.call_later(jittered(0.5 * c.retries), resend, c)
                else:
                    c.on_text = h_idle
                    on_done(c, False)
            elif not payload.startswith(msg_prefix):  # replayed history is fine
                control(c, payload)

        return handler

    async def open_many(self, n: int, concurrency: int, phase: str
                        ) -> tuple[list[Conn], int, str]:
        """Open ``n`` connections, at most ``concurrency`` handshakes at a time, each tried
        up to three times. Returns the open ones, the failed attempts and the last error."""
        slots: list[Conn | None] = [None] * n
        indexes = iter(range(n))
        failures = 0
        last_error = ""
        opened = 0
        timeout = float(self.params.get("connect_timeout", 10.0))

        async def worker() -> None:
            nonlocal failures, last_error, opened
            for i in indexes:
                for attempt in range(3):
                    try:
                        slots[i] = await self.connect(i, timeout)
                        opened += 1
                        break
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        failures += 1
                        last_error = f"{type(exc).__name__}: {exc}"[:200]
                        await asyncio.sleep(0.05 * (attempt + 1))
                self.progress(phase, opened, n)

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
        self.progress(phase, opened, n, force=True)
        return [c for c in slots if c is not None], failures, last_error

    def close_all(self) -> None:
        self.closing = True
        for conn in self.conns:
            conn.close()
        self.conns = []

    # ------------------------------------------------------------------ echo

    async def echo(self, name: str, nconns: int) -> dict[str, Any]:
        p = self.params
        duration = float(p["echo_duration"])
        warmup = float(p["warmup"])
        conns, failures, last_error = await self.open_many(nconns, nconns, name)
        if not conns:
            raise RuntimeError(f"{name}: no connection opened ({last_error})")
        proto = self.proto
        req = proto.echo_request()
        prefix = proto.echo_prefix
        control = proto.control
        lat: list[float] = []
        count = 0
        finished = 0
        live = len(conns)
        done: asyncio.Future[None] = self.loop.create_future()
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
            marks[which + "_srv"] = self.server_cpu()
            marks[which + "_cores"] = procfs.core_times()  # type: ignore[assignment]

        self.loop.call_at(self.loop.time() + warmup, mark, "start")
        self.loop.call_at(self.loop.time() + warmup + duration, mark, "end")
        for c in conns:
            c.on_text = h_echo
            c.sent_at = perf_counter()
            c.send_text(req)
        end_by = monotonic() + warmup + duration + 10.0
        while not done.done() and monotonic() < end_by:
            await asyncio.wait([done], timeout=0.25)
            self.progress(name, min(int((perf_counter() - t0) * 1000),
                                    int((warmup + duration) * 1000)),
                          int((warmup + duration) * 1000))
        for c in conns:
            c.on_text = self.h_idle
        metrics: dict[str, Any] = {
            "connections": live,
            "count": count,
            "rate": count / duration,
            "p50_us": _us(percentile(lat, 50)),
            "p99_us": _us(percentile(lat, 99)),
            "connect_failures": failures,
            "lost": self.unexpected_losses,
        }
        metrics.update(_cpu(marks))
        return metrics

    # ------------------------------------------------------------------ open, idle memory

    async def open_phase(self, k: int, want_idle: bool) -> tuple[list[Conn], dict[str, Any],
                                                               dict[str, Any] | None]:
        p = self.params
        before = (await self.request("rss"))["rss_kib"] if want_idle else None
        cores0 = procfs.core_times()
        cpu0, srv0, t0 = time.process_time(), self.server_cpu(), perf_counter()
        conns, failures, last_error = await self.open_many(k, int(p["concurrency"]), "open")
        t1, cpu1, srv1 = perf_counter(), time.process_time(), self.server_cpu()
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
        connrate.update(_cpu({"start_cpu": cpu0, "end_cpu": cpu1, "start_wall": t0,
                              "end_wall": t1, "start_srv": srv0, "end_srv": srv1,
                              "start_cores": cores0, "end_cores": cores1}))
        idle = None
        if want_idle:
            await asyncio.sleep(float(p["settle"]))
            after = (await self.request("rss"))["rss_kib"]
            if before is not None and after is not None:
                idle = {
                    "connections": len(conns),
                    "rss_before_kib": before,
                    "rss_after_kib": after,
                    "kib_per_conn": (after - before) / len(conns),
                }
        return conns, connrate, idle

    # ------------------------------------------------------------------ subscribe

    async def subscribe(self, conns: list[Conn]) -> dict[str, Any]:
        """Every connection joins the channel (room)."""
        proto = self.proto
        acked = 0
        failed = 0
        n = len(conns)
        done: asyncio.Future[None] = self.loop.create_future()

        def on_done(c: Conn, ok: bool) -> None:
            nonlocal acked, failed
            if ok:
                acked += 1
            else:
                failed += 1
            if acked + failed >= n and not done.done():
                done.set_result(None)

        handler = self.sub_handler(on_done)
        errors0 = self.sub_errors
        t0 = perf_counter()
        for c in conns:
            c.on_text = handler
            c.retries = 0
            c.since = None
            c.send_text(proto.sub_request(1, None))
        end_by = monotonic() + float(self.params["phase_timeout"])
        while not done.done() and monotonic() < end_by:
            await asyncio.wait([done], timeout=0.25)
            self.progress("subscribe", acked, n)
        if acked < n:
            raise RuntimeError(f"only {acked} of {n} subscriptions were acked "
                               f"({self.sub_errors - errors0} errors, last: "
                               f"{self.last_sub_error})")
        return {"seconds": perf_counter() - t0, "sub_errors": self.sub_errors - errors0,
                "last_sub_error": self.last_sub_error if self.sub_errors > errors0 else ""}

    # ------------------------------------------------------------------ fan-out

    async def fanout(self, publisher: Conn, subs: list[Conn], m: int) -> dict[str, Any]:
        proto = self.proto
        prefix = proto.msg_prefix
        control = proto.control
        k = len(subs)
        expected = k * m
        delivered = 0
        last = 0.0
        lat: list[float] = []
        done: asyncio.Future[None] = self.loop.create_future()

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
        pad = b"x" * int(self.params["pad"])
        cores0 = procfs.core_times()
        cpu0, srv0 = time.process_time(), self.server_cpu()
        first = perf_counter()
        for i in range(1, m + 1):
            data = b'{"i":%d,"pad":"%s","t":%r}' % (i, pad, perf_counter())
            publisher.send_text(proto.pub_request(i, data))
        end_by = monotonic() + float(self.params["phase_timeout"])
        while not done.done() and monotonic() < end_by:
            await asyncio.wait([done], timeout=0.25)
            self.progress("fanout", delivered, expected)
        cpu1, srv1 = time.process_time(), self.server_cpu()
        cores1 = procfs.core_times()
        end = last if done.done() else perf_counter()
        for c in subs:
            c.on_text = self.h_idle
        elapsed = max(end - first, 1e-9)
        metrics: dict[str, Any] = {
            "subscribers": k,
            "messages": m,
            "expected": expected,
            "delivered": delivered,
            "complete": delivered >= expected,
            "seconds": elapsed,
            "rate": delivered / elapsed,
            "p50_ms": _ms(percentile(lat, 50)),
            "p99_ms": _ms(percentile(lat, 99)),
            "max_ms": _ms(max(lat) if lat else None),
            "lost": self.unexpected_losses,
        }
        # The CPU window is the whole wait (up to the next 0.25 s poll), not only the burst.
        metrics.update(_cpu({"start_cpu": cpu0, "end_cpu": cpu1, "start_wall": first,
                             "end_wall": perf_counter(), "start_srv": srv0, "end_srv": srv1,
                             "start_cores": cores0, "end_cores": cores1}))
        return metrics

    # ------------------------------------------------------------------ reconnect storm

    async def storm(self, subs: list[Conn], delivered_per_conn: int) -> dict[str, Any]:
        p = self.params
        n = len(subs)
        deadline = monotonic() + float(p["storm_timeout"])
        policy = Backoff(base=float(p["backoff_base"]), cap=float(p["backoff_cap"]),
                         max_retries=int(p["backoff_retries"]))
        handshakes: list[float] = []
        resubscribed: list[float] = []
        failed_attempts = 0
        gave_up = 0
        proto = self.proto
        tasks: set[asyncio.Task[None]] = set()
        errors0 = self.sub_errors

        def on_done(c: Conn, ok: bool) -> None:
            if c.ack is not None and not c.ack.done():
                c.ack.set_result(ok)

        h_sub_one = self.sub_handler(on_done)

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
                    conn = await self.connect(idx, 5.0)
                except Exception:  # noqa: BLE001 - refused while the server is down
                    failed_attempts += 1
                    continue
                handshakes.append(monotonic())
                conn.ack = self.loop.create_future()
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
            task = self.loop.create_task(reconnect(conn.idx, pos))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        for c in subs:
            c.storm = True
        self.storm_spawn = spawn
        self.storm_active = True
        cpu0 = time.process_time()
        t0 = monotonic()
        restart = self.loop.create_task(self.request("restart", timeout=float(p["storm_timeout"])))
        while len(resubscribed) < n and monotonic() < deadline:
            await asyncio.sleep(0.05)
            self.progress("storm", len(resubscribed), n)
            if restart.done() and restart.exception() is not None:
                break
        self.storm_active = False
        cpu1, t1 = time.process_time(), monotonic()
        reply = await restart
        if reply.get("pid"):
            self.server_pid = int(reply["pid"])
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
            "sub_errors": self.sub_errors - errors0,
            "gave_up": gave_up,
            "gen_cpu_pct": 100.0 * (cpu1 - cpu0) / max(t1 - t0, 1e-9),
            "backoff": {"base": policy.base, "factor": policy.factor, "cap": policy.cap,
                        "jitter": "x(0.5+random())"},
        }

    # ------------------------------------------------------------------ plans

    async def run(self) -> None:
        await self.open_stdin()
        wanted = list(self.spec["workloads"])
        p = self.params
        try:
            if "echo1" in wanted:
                self.emit(event="result", workload="echo1", metrics=await self.echo("echo1", 1))
                self._close_conns()
            if "echo100" in wanted:
                self.emit(event="result", workload="echo100",
                          metrics=await self.echo("echo100", int(p["echo_conns"])))
                self._close_conns()
            group_b = {"connrate", "idle", "fanout", "storm"} & set(wanted)
            if group_b:
                await self._group_b(wanted)
        finally:
            self.close_all()
            await asyncio.sleep(0.05)
        self.emit(event="done")

    def _close_conns(self) -> None:
        self.closing = True
        for c in self.conns:
            c.close()
        self.conns = []
        self.closing = False
        self.unexpected_losses = 0

    async def _group_b(self, wanted: list[str]) -> None:
        p = self.params
        k = int(p["K"])
        m = int(p["M"])
        timeout = float(p.get("connect_timeout", 10.0))
        # The publisher first: it is also the warm-up connection before the RSS baseline.
        publisher = await self.connect(-1, timeout)
        subs, connrate, idle = await self.open_phase(k, "idle" in wanted)
        if "connrate" in wanted:
            self.emit(event="result", workload="connrate", metrics=connrate)
        if "idle" in wanted and idle is not None:
            self.emit(event="result", workload="idle", metrics=idle)
        sub_info: dict[str, Any] = {}
        if "fanout" in wanted or "storm" in wanted:
            sub_info = await self.subscribe(subs)
        delivered = 0
        if "fanout" in wanted:
            profile = bool(p.get("profile"))
            if profile:  # the harness attaches py-spy to the server for this phase only
                await self.request("profile-start")
            metrics = await self.fanout(publisher, subs, m)
            metrics["subscribe_s"] = sub_info.get("seconds")
            metrics["sub_errors"] = sub_info.get("sub_errors")
            if profile:
                await self.request("profile-stop")
            delivered = m if metrics["complete"] else 0
            self.emit(event="result", workload="fanout", metrics=metrics)
        if "storm" in wanted:
            publisher.storm = False
            self.emit(event="result", workload="storm",
                      metrics=await self.storm(subs, delivered))


def _us(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e6


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _cpu(marks: dict[str, Any]) -> dict[str, float | None]:
    """CPU use over a window, in % of one core: the generator's, the server's, and what
    everything else on the two cores used (other processes on a shared machine: noise),
    plus the steal time the hypervisor took."""
    try:
        wall = float(marks["end_wall"]) - float(marks["start_wall"])
    except (KeyError, TypeError):
        return {"gen_cpu_pct": None, "server_cpu_pct": None}
    wall = max(wall, 1e-9)
    out: dict[str, float | None] = {}
    c0, c1 = marks.get("start_cpu"), marks.get("end_cpu")
    out["gen_cpu_pct"] = None if c0 is None or c1 is None else 100.0 * (c1 - c0) / wall
    s0, s1 = marks.get("start_srv"), marks.get("end_srv")
    out["server_cpu_pct"] = None if s0 is None or s1 is None else 100.0 * (s1 - s0) / wall
    k0, k1 = marks.get("start_cores") or {}, marks.get("end_cores") or {}
    if CORES:
        k0 = {c: v for c, v in k0.items() if c in CORES}
        k1 = {c: v for c, v in k1.items() if c in CORES}
    if k0 and k1:
        busy = sum(k1[c][0] - k0[c][0] for c in k1 if c in k0)
        steal = sum(k1[c][1] - k0[c][1] for c in k1 if c in k0)
        ours = (out["gen_cpu_pct"] or 0.0) + (out["server_cpu_pct"] or 0.0)
        # /proc/stat ticks are coarse (10 ms): small negative values are rounding.
        out["other_cpu_pct"] = max(0.0, 100.0 * busy / wall - ours)
        out["steal_pct"] = 100.0 * steal / wall
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    CORES.update(f"cpu{c}" for c in spec.get("cores", []) if c is not None)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s loadgen %(levelname)s %(name)s %(message)s")
    # Collection pauses would land in the latencies; the generator makes few cycles.
    gc.disable()
    import uvloop

    async def run() -> None:
        gen = Generator(spec)
        try:
            await gen.run()
        except Exception as exc:
            gen.emit(event="error", error=f"{type(exc).__name__}: {exc}"[:500])
            raise

    try:
        uvloop.run(run())
    except Exception:  # noqa: BLE001 - reported as an event already
        logging.getLogger("staywire.bench").exception("load generator failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
