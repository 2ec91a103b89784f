"""The ``proxy`` workload: what the connect and subscribe proxies cost a node.

Setups, each with fresh processes, in rotating order every round::

    direct    1 node, no proxy (anonymous, as in the peer runs)
    proxy     1 node whose connect and subscribe proxies call the FastAPI backend
              (staywire_bench.proxyapp under uvicorn, one worker), one request each
    batched   the same with ``proxy_subscribe_batch = BATCH``: the subscribes that wait
              together go as one request (docs/proxy.md, *Batches*)
    backend   the backend alone: the same calls posted straight to it, one request
              each, then the subscribes again in batches

In each, K connections are opened with ``concurrency`` handshakes in flight, then
each subscribes (``concurrency`` subscribes unanswered at a time). Placement on a
2-core machine: the node pinned to core 0, the backend to core 1, the load generator
not pinned (there is no third core); the CPU time of every process is measured, so
the report says which one was the limit. Every process is started through the run's
``ProcessRegistry`` and stopped by PID; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from staywire_bench.config import BenchConfig, BenchError
from staywire_bench.groups import drive, start_generator
from staywire_bench.machine import hold_low_latency, loadavg, machine_info, staywire_command
from staywire_bench.servers import (
    ALL_SERVERS,
    Proc,
    ProcessRegistry,
    ServerContext,
    free_port,
    pinned,
    wait_port,
)
from staywire_bench.ui import Ui

__all__ = ["SETUPS", "ProxyBench"]

SETUPS = ("direct", "proxy", "batched", "backend")
#: ``proxy_subscribe_batch`` of the ``batched`` setup: the example of docs/proxy.md.
BATCH = 64


def _uvicorn_extras() -> list[str]:
    """uvicorn's fast HTTP parser and loop when installed, as a production deployment
    (``uvicorn[standard]``) has them."""
    import importlib.util

    out = []
    if importlib.util.find_spec("httptools") is not None:
        out += ["--http", "httptools"]
    if importlib.util.find_spec("uvloop") is not None:
        out += ["--loop", "uvloop"]
    return out


class ProxyBench:
    """Runs every setup ``cfg.rounds`` times and returns the ``proxy`` section."""

    def __init__(self, cfg: BenchConfig, root: Path, registry: ProcessRegistry) -> None:
        self.cfg = cfg
        self.root = root
        self.registry = registry
        self.records: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        cores = os.cpu_count() or 1
        pin = cfg.pin and cores >= 2 and shutil.which("taskset") is not None
        self.node_core = cfg.server_core if pin else None
        self.backend_core = cfg.gen_core if pin else None
        self.ctx = ServerContext(root=root)
        self.tmp = Path(tempfile.mkdtemp(prefix="staywire-bench-proxy-"))

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.time()
        t0 = time.monotonic()
        load_at_start = loadavg()
        try:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except (OSError, AttributeError):
            pass
        if self.node_core is None:
            self.warnings.append("not pinned (fewer than 2 cores or no taskset): node, "
                                 "backend and generator share the CPUs freely")
        total = cfg.rounds * len(SETUPS)
        with Ui(cfg.progress, total) as ui:
            hold = hold_low_latency(cfg.low_latency, self.warnings)
            try:
                for rnd in range(cfg.rounds):
                    shift = rnd % len(SETUPS)
                    for setup in SETUPS[shift:] + SETUPS[:shift]:
                        ui.step(f"proxy round {rnd + 1}/{cfg.rounds} · {setup}")
                        try:
                            self._run_setup(setup, rnd, ui)
                        except BenchError as exc:
                            self.warnings.append(f"proxy {setup} round {rnd + 1}: {exc}")
                            ui.log(f"[red]{exc}")
                        ui.advance()
            finally:
                self.registry.stop_all()
                if hold is not None:
                    hold.close()
                shutil.rmtree(self.tmp, ignore_errors=True)
        from staywire_bench.proxy_report import summarize_proxy

        meta = {
            "command": cfg.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(time.monotonic() - t0, 1),
            "quick": cfg.quick,
            "config": {"rounds": cfg.rounds, "k": cfg.k, "concurrency": self._concurrency()},
            "batch": BATCH,
            "machine": machine_info(None),
            "placement": {"node core": self.node_core, "backend core": self.backend_core,
                          "generator": "not pinned"},
            "backend": "FastAPI (staywire.integrations.fastapi) under uvicorn, 1 worker "
                       + " ".join(_uvicorn_extras()),
            "loadavg_at_start": load_at_start,
            "staywire_command": staywire_command(),
            "pids": list(self.registry.started),
        }
        return summarize_proxy(meta, self.records, self.warnings)

    def _concurrency(self) -> int:
        # Below the node's proxy_max_concurrency (64): one call more fails fast (by design),
        # and the figure would count refusals instead of calls.
        return min(self.cfg.concurrency, 48)

    # ------------------------------------------------------------------ one setup

    def _start_backend(self) -> tuple[Proc, int]:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "staywire_bench.proxyapp:app",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--log-level", "warning", "--no-access-log", *_uvicorn_extras()]
        proc = self.registry.start("proxy-backend", pinned(argv, self.backend_core),
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                   cwd=str(self.root))
        if not wait_port(port, 30.0, proc.alive):
            tail = proc.log_tail()
            proc.stop()
            self.registry.forget(proc)
            raise BenchError(f"the backend did not start on port {port}:\n{tail}")
        return proc, port

    def _start_node(self, backend_port: int | None, batch: int = 0) -> tuple[Proc, int]:
        port = free_port()
        argv, extra_env = ALL_SERVERS["staywire"].build(self.ctx, port)
        if backend_port is not None:
            base = f"http://127.0.0.1:{backend_port}/staywire"
            conf = self.tmp / f"proxy-{port}.toml"
            conf.write_text(f'connect_proxy_url = "{base}/connect"\n'
                            f'subscribe_proxy_url = ["{base}/subscribe"]\n'
                            f"proxy_subscribe_batch = {batch}\n")
            argv += ["--config", str(conf)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
        proc = self.registry.start("staywire-proxy-node", pinned(argv, self.node_core),
                                   env=env, cwd=str(self.root))
        if not wait_port(port, 30.0, proc.alive):
            tail = proc.log_tail()
            proc.stop()
            self.registry.forget(proc)
            raise BenchError(f"the node did not start on port {port}:\n{tail}")
        return proc, port

    def _run_setup(self, setup: str, rnd: int, ui: Ui) -> None:
        started: list[Proc] = []
        gen: Proc | None = None
        try:
            backend_port = None
            procs: dict[str, list[int]] = {}
            if setup != "direct":
                backend, backend_port = self._start_backend()
                started.append(backend)
                procs["backend"] = [backend.pid]
            nodes: list[dict[str, Any]] = []
            url = f"http://127.0.0.1:{backend_port}"
            if setup != "backend":
                node, port = self._start_node(backend_port if setup != "direct" else None,
                                              BATCH if setup == "batched" else 0)
                started.append(node)
                nodes.append({"name": "A", "pid": node.pid, "core": self.node_core})
                url = f"ws://127.0.0.1:{port}"
            spec = {
                "plan": "proxy", "setup": setup, "server": f"proxy-{setup}",
                "protocol": "staywire", "url": url,
                "pid": nodes[0]["pid"] if nodes else None, "workloads": [],
                "params": {**self.cfg.scaleout_params(), "concurrency": self._concurrency()},
                "cores": [], "nodes": nodes, "procs": procs,
                "backend_port": backend_port, "backend_conns": self._concurrency(),
                "api_port": self.ctx.api_ports.get(port) if nodes else None,
                "batch": BATCH,
            }
            gen = start_generator(self.registry, f"loadgen-proxy-{setup}", spec, None,
                                  self.root)

            def on_result(workload: str, metrics: dict[str, Any]) -> None:
                self.records.append({"setup": setup, "round": rnd, "metrics": metrics})
                self._check(setup, rnd, metrics)

            drive(gen, ui=ui, timeout=self.cfg.group_timeout, name=f"proxy {setup}",
                  what="setup", on_result=on_result)
        finally:
            for left in [gen, *reversed(started)]:
                if left is not None:
                    left.stop()
                    self.registry.forget(left)

    def _check(self, setup: str, rnd: int, m: dict[str, Any]) -> None:
        where = f"proxy {setup} round {rnd + 1}"
        for phase in ("connect", "subscribe"):
            w = m.get(phase) or {}
            other = w.get("other_cpu_pct")
            if other is not None and other > self.cfg.noise_pct:
                w["noisy"] = True
                self.warnings.append(f"{where} {phase}: processes outside the benchmark used "
                                     f"{other:.0f}% of a core during the window (noisy)")
        connect = m.get("connect") or {}
        if connect.get("connect_failures"):
            self.warnings.append(f"{where}: {connect['connect_failures']} failed connection "
                                 f"attempts (retried; last: {connect.get('last_error', '')})")
        if m.get("lost"):
            self.warnings.append(f"{where}: {m['lost']} connections lost unexpectedly")

