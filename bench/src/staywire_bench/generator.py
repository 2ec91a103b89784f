"""The load generator's connections and its link to the harness.

``Generator`` holds the picows client connections (``Conn``) of one load
generator process, opens them (bounded concurrency, bounded retries), answers the
protocol's heartbeats, and talks to the harness in JSON lines: events on stdout,
one reply line on stdin for each ``request``. The workloads themselves are in
``staywire_bench.phases`` (and ``staywire_bench.scaleload``); the process entry
point is ``staywire_bench.loadgen``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from staywire_bench import procfs, protocols
from staywire_bench.redis_cpu import RedisCpu
from staywire.protocol.backoff import jittered

__all__ = ["CLOSE", "TEXT", "Conn", "Generator", "Handler", "Refused"]

TEXT = WSMsgType.TEXT
BINARY = WSMsgType.BINARY
CLOSE = WSMsgType.CLOSE
monotonic = time.monotonic

Handler = Callable[["Conn", bytes], None]


class Refused(Exception):
    """The server answered the connection with a refusal at protocol level."""


class Conn(WSListener):
    """One client connection. ``on_text`` is swapped per phase: the hot paths stay small."""

    __slots__ = ("gen", "idx", "tr", "ready", "on_text", "on_binary", "sent_at", "position",
                 "ack", "storm", "closed", "retries", "since")

    def __init__(self, gen: Generator, idx: int) -> None:
        self.gen = gen
        self.idx = idx
        self.tr: WSTransport | None = None
        self.ready: asyncio.Future[float] = gen.loop.create_future()
        self.on_text: Handler = gen.h_handshake
        self.on_binary: Handler = gen.h_idle  # binary frames: the binfanout workload
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

    def send_binary(self, payload: bytes) -> None:
        tr = self.tr
        if tr is not None:
            tr.send(BINARY, payload)

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
        elif kind is BINARY:
            self.on_binary(self, frame.get_payload_as_bytes())
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
        # The redis-server of a Redis-broker server (None otherwise): its CPU per publication.
        self.redis_port: int | None = spec.get("redis_port")
        self._redis_cpu = RedisCpu(self.redis_port) if self.redis_port else None
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

    async def gc_snapshot(self) -> dict[str, list[float]] | None:
        """The node's garbage collections so far (staywire_bench.gcstats); None when the
        server is not a Staywire node with an API port."""
        from staywire_bench.gcstats import scrape

        return await asyncio.to_thread(scrape, self.spec.get("api_port"))

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

    def redis_cpu(self) -> float | None:
        return self._redis_cpu.seconds() if self._redis_cpu is not None else None

    def redis_sample(self) -> tuple[float, int] | None:
        """redis-server's (CPU seconds, PUBLISH commands) so far; None: no Redis."""
        return self._redis_cpu.sample() if self._redis_cpu is not None else None

    async def redis_idle_rate(self, seconds: float = 0.3) -> float | None:
        """redis-server's CPU seconds per second while nothing is published (None: no
        Redis); taken off the workload's window by ``redis_cpu.per_publication_us``."""
        if not self.redis_port:
            return None
        r0, t0 = self.redis_cpu(), monotonic()
        await asyncio.sleep(seconds)
        r1, t1 = self.redis_cpu(), monotonic()
        return None if r0 is None or r1 is None else (r1 - r0) / (t1 - t0)

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

    async def connect(self, idx: int, timeout: float, url: str | None = None,
                      headers: dict[str, str] | None = None) -> Conn:
        """One connection, usable (handshake done) within ``timeout``; ``url``: another
        endpoint than the spec's (its path is the protocol's); ``headers``: sent with the
        upgrade besides the protocol's own."""
        extra = self.headers if not headers else {**(self.headers or {}), **headers}
        async with asyncio.timeout(timeout):
            _, conn = await ws_connect(
                lambda: Conn(self, idx), url or self.url, extra_headers=extra,
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

    async def open_many(self, n: int, concurrency: int, phase: str, url: str | None = None,
                        headers: Callable[[int], dict[str, str]] | None = None
                        ) -> tuple[list[Conn], int, str]:
        """Open ``n`` connections, at most ``concurrency`` handshakes at a time, each tried
        up to three times; ``headers(i)``: extra upgrade headers of connection ``i``.
        Returns the open ones, the failed attempts and the last error."""
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
                        slots[i] = await self.connect(i, timeout, url,
                                                      headers(i) if headers else None)
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
        if self._redis_cpu is not None:
            self._redis_cpu.close()
        for conn in self.conns:
            conn.close()
        self.conns = []

    def close_conns(self) -> None:
        """Close this workload's connections; the next one starts with a clean count."""
        self.closing = True
        for c in self.conns:
            c.close()
        self.conns = []
        self.closing = False
        self.unexpected_losses = 0
