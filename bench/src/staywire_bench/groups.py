"""One group of workloads: a fresh server process, one load generator, the pipe between them.

The generator reports in JSON lines on its stdout (``progress``, ``result``,
``request``, ``error``, ``done``); ``drive`` reads them with a bounded deadline and
answers each ``request`` on the generator's stdin. ``GroupRunner`` starts the
server (pinned to the server core) and the generator (pinned to the other one),
answers the requests of the peer workloads (``rss``, ``restart``, ``profile-*``)
and stops both by PID whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from staywire_bench import procfs
from staywire_bench.config import BenchConfig, BenchError
from staywire_bench.servers import (
    Proc,
    ProcessRegistry,
    RedisProcess,
    ServerContext,
    ServerDef,
    free_port,
    pinned,
    wait_port,
)
from staywire_bench.ui import Ui

__all__ = ["GroupRunner", "drive", "start_generator"]

ResultHandler = Callable[[str, dict[str, Any]], None]
RequestHandler = Callable[[str], dict[str, Any]]


def start_generator(registry: ProcessRegistry, name: str, spec: dict[str, Any],
                    core: int | None, root: Path) -> Proc:
    """``python -m staywire_bench.loadgen SPEC``, pinned to ``core`` (None: not pinned)."""
    argv = pinned([sys.executable, "-m", "staywire_bench.loadgen", json.dumps(spec)], core)
    return registry.start(name, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          cwd=str(root), env=dict(os.environ, PYTHONUNBUFFERED="1"))


def drive(gen: Proc, *, ui: Ui, timeout: float, name: str, what: str,
          on_result: ResultHandler, on_request: RequestHandler | None = None) -> None:
    """Read the generator's events until ``done`` (or ``timeout`` seconds), answer its
    requests; raise BenchError on an error event, a timeout or an early exit."""
    lines: queue.Queue[bytes | None] = queue.Queue()
    stdout = gen.popen.stdout
    assert stdout is not None

    def pump() -> None:
        for line in iter(stdout.readline, b""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    finished = False
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("event")
        if kind == "progress":
            ui.detail(f"{event['phase']} {event['done']}/{event['total']}")
        elif kind == "result":
            on_result(event["workload"], event["metrics"])
        elif kind == "request":
            op = event.get("op")
            reply = (on_request(op) if on_request is not None
                     else {"error": f"unknown op {op!r}"})
            assert gen.popen.stdin is not None
            gen.popen.stdin.write((json.dumps(reply) + "\n").encode())
            gen.popen.stdin.flush()
        elif kind == "error":
            raise BenchError(f"{name}: load generator: {event.get('error')}")
        elif kind == "done":
            finished = True
            break
    if not finished:
        if time.monotonic() >= deadline:
            raise BenchError(f"{name}: {what} over {timeout:.0f} s")
        raise BenchError(f"{name}: load generator ended early:\n{gen.log_tail()}")
    with contextlib.suppress(subprocess.TimeoutExpired):
        gen.popen.wait(timeout=10)


class GroupRunner:
    """Runs one group of peer workloads against one server; owns the Redis of
    ``staywire-redis`` and the py-spy profiles."""

    def __init__(self, cfg: BenchConfig, root: Path, registry: ProcessRegistry,
                 ctx: ServerContext, server_core: int | None, gen_core: int | None) -> None:
        self.cfg = cfg
        self.root = root
        self.registry = registry
        self.ctx = ctx
        self.server_core = server_core
        self.gen_core = gen_core
        self.redis: RedisProcess | None = None
        self.profiles: dict[str, Any] = {}
        self._profiling: dict[int, tuple[str, Path]] = {}  # py-spy pid: (workload, output)

    def ensure_redis(self) -> None:
        if self.redis is None:
            self.redis = RedisProcess(self.registry, self.server_core).start()
            self.ctx.redis_url = self.redis.url

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    # ------------------------------------------------------------------ processes

    def start_server(self, sdef: ServerDef, port: int, *, restart: bool = False) -> Proc:
        if sdef.name == "staywire-redis" and self.redis is not None and not restart:
            self.redis.flush()
        argv, extra_env = sdef.build(self.ctx, port)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
        proc = self.registry.start(sdef.name, pinned(argv, self.server_core), env=env,
                                   cwd=str(self.root))
        if not wait_port(port, 30.0, proc.alive):
            tail = proc.log_tail()
            proc.stop()
            self.registry.forget(proc)
            raise BenchError(f"{sdef.name} did not start on port {port}:\n{tail}")
        return proc

    def stop(self, proc: Proc | None) -> None:
        if proc is not None:
            proc.stop()
            self.registry.forget(proc)

    def _start_generator(self, sdef: ServerDef, port: int, pid: int, workloads: list[str]
                         ) -> Proc:
        pin = self.server_core is not None
        spec = {
            "server": sdef.name, "protocol": sdef.protocol, "url": f"ws://127.0.0.1:{port}",
            "pid": pid, "workloads": workloads, "params": self.cfg.gen_params(),
            # A Staywire node's /metrics (its garbage collections, gcstats.py).
            "api_port": self.ctx.api_ports.get(port) if sdef.protocol == "staywire" else None,
            "cores": [self.server_core, self.gen_core] if pin else [],
            "redis_port": (self.redis.port if "redis" in sdef.needs and self.redis is not None
                           else None),
        }
        return start_generator(self.registry, f"loadgen-{sdef.name}", spec, self.gen_core,
                               self.root)

    # ------------------------------------------------------------------ one group

    def run(self, sdef: ServerDef, workloads: list[str], ui: Ui, on_result: ResultHandler
            ) -> None:
        port = free_port()
        server: Proc | None = self.start_server(sdef, port)
        assert server is not None
        gen: Proc | None = None
        spy: Proc | None = None

        def on_request(op: str) -> dict[str, Any]:
            nonlocal server, spy
            assert server is not None
            if op == "rss":
                return {"rss_kib": procfs.rss_kib(server.pid)}
            if op == "restart":
                killed_at = time.monotonic()
                server.kill()
                self.registry.forget(server)
                server = None
                server = self.start_server(sdef, port, restart=True)
                return {"killed_at": killed_at, "ready_at": time.monotonic(),
                        "pid": server.pid}
            if op.startswith("profile-start:"):
                if spy is not None:
                    self._stop_profile(sdef, spy)
                spy = self._start_profile(sdef, server.pid, op.partition(":")[2])
                return {"ok": spy is not None}
            if op == "profile-stop":
                self._stop_profile(sdef, spy)
                spy = None
                return {"ok": True}
            return {"error": f"unknown op {op!r}"}

        try:
            gen = self._start_generator(sdef, port, server.pid, workloads)
            drive(gen, ui=ui, timeout=self.cfg.group_timeout, name=sdef.name,
                  what=f"group {workloads}", on_result=on_result, on_request=on_request)
        finally:
            if spy is not None:
                self._stop_profile(sdef, spy)
            self.stop(gen)
            self.stop(server)

    # ------------------------------------------------------------------ profiling

    def _start_profile(self, sdef: ServerDef, pid: int, workload: str) -> Proc | None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if sdef.runtime != "python" or not os.access(spy, os.X_OK):
            return None
        out = self.root / "bench" / "results" / f"profile-{sdef.name}-{workload}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            out.unlink()
        proc = self.registry.start(
            "py-spy", pinned([spy, "record", "--pid", str(pid), "--rate", "500", "--format",
                              "raw", "--nonblocking", "--output", str(out)], self.gen_core))
        time.sleep(1.0)  # attach before the load starts
        if not proc.alive():
            return None
        self._profiling[proc.pid] = (workload, out)
        return proc

    def _stop_profile(self, sdef: ServerDef, spy: Proc | None) -> None:
        if spy is None:
            return
        workload, out = self._profiling.pop(spy.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(spy.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.popen.wait(timeout=15)
        self.stop(spy)
        if out.exists():
            from staywire_bench.profiles import summarize_profile

            # "server workload": the report reads a bare server name as its fan-out.
            key = sdef.name if workload == "fanout" else f"{sdef.name} {workload}"
            self.profiles[key] = summarize_profile(out.read_text())
            self.profiles[key]["file"] = str(out.relative_to(self.root))
