"""The ``sizing`` workload: what a delivery and a publication cost, with 1 to 3 nodes.

Two cores cannot show three nodes doing three times one node's work: the nodes, Redis
and the load generator share them. What they can show is the CPU each unit of work
costs, and whether it stays flat as nodes are added::

    nodes-1   1 node on Redis
    nodes-2   2 nodes on the same Redis
    nodes-3   3 nodes on the same Redis

each with fresh nodes, in rotating order every round, one private redis-server
(flushed before each topology). The load generator (``staywire_bench.sizingload``)
spreads the subscribers evenly over the nodes and measures, per subscriber count,
Redis CPU µs and node CPU µs per publication, and node CPU µs per fan-out delivery.
Nothing is pinned: with three nodes on two cores, pinning would give one core two
nodes and make them wait for each other; CPU per unit does not depend on where a
process runs. Every process is started through the run's ``ProcessRegistry`` and
stopped by PID, on errors and Ctrl-C too; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from staywire_bench.config import BenchConfig, BenchError
from staywire_bench.groups import drive, start_generator
from staywire_bench.machine import loadavg, machine_info, redis_missing, staywire_command
from staywire_bench.scaleout import start_node
from staywire_bench.servers import Proc, ProcessRegistry, RedisProcess, ServerContext
from staywire_bench.ui import Ui

__all__ = ["Sizing"]


class Sizing:
    """Runs every node count ``cfg.rounds`` times and returns the ``sizing`` section."""

    def __init__(self, cfg: BenchConfig, root: Path, registry: ProcessRegistry) -> None:
        self.cfg = cfg
        self.root = root
        self.registry = registry
        self.records: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.redis: RedisProcess | None = None
        self.ctx = ServerContext(root=root)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        reason = redis_missing()
        if reason:
            raise BenchError(f"sizing needs Redis: {reason}")
        if cfg.sizing_nodes < 1:
            raise BenchError("sizing: sizing_nodes must be >= 1")
        started = time.time()
        t0 = time.monotonic()
        load_at_start = loadavg()
        try:  # after a peer run the harness is still pinned to one core
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except (OSError, AttributeError):
            pass
        counts = list(range(1, cfg.sizing_nodes + 1))
        with Ui(cfg.progress, cfg.rounds * len(counts)) as ui:
            try:
                self.redis = RedisProcess(self.registry, None).start()
                self.ctx.redis_url = self.redis.url
                for rnd in range(cfg.rounds):
                    shift = rnd % len(counts)
                    for n in counts[shift:] + counts[:shift]:
                        ui.step(f"sizing round {rnd + 1}/{cfg.rounds} · {n} node(s)")
                        try:
                            self._run_topology(n, rnd, ui)
                        except BenchError as exc:
                            self.warnings.append(f"sizing {n} node(s) round {rnd + 1}: {exc}")
                            ui.log(f"[red]{exc}")
                        ui.advance()
            finally:
                if self.redis is not None:
                    self.redis.stop()
                self.registry.stop_all()
        from staywire_bench.sizing_report import summarize_sizing

        meta = {
            "command": cfg.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(time.monotonic() - t0, 1),
            "quick": cfg.quick,
            "config": {"rounds": cfg.rounds, "k": cfg.k, "m": cfg.m, "pad": cfg.pad,
                       "concurrency": cfg.concurrency, "levels": cfg.sizing_levels(),
                       **{k: v for k, v in asdict(cfg).items() if k.startswith("sizing_")}},
            "machine": machine_info(None),
            "placement": "not pinned: nodes, redis-server and the load generator share "
                         "every core",
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": loadavg(),
            "staywire_command": staywire_command(),
            "pids": list(self.registry.started),
        }
        return summarize_sizing(meta, self.records, self.warnings)

    def _run_topology(self, n: int, rnd: int, ui: Ui) -> None:
        assert self.redis is not None
        self.redis.flush()
        started: list[Proc] = []
        ports: list[int] = []
        gen: Proc | None = None
        try:
            nodes = []
            for i in range(n):
                name = "ABCDEFGH"[i] if i < 8 else str(i + 1)
                proc, port, api = start_node(self.registry, self.ctx, self.root, name,
                                             "redis", None)
                started.append(proc)
                ports.append(port)
                nodes.append({"name": name, "pid": proc.pid, "api_port": api,
                              "url": f"ws://127.0.0.1:{port}"})
            spec = {
                "plan": "sizing", "server": f"sizing-{n}", "protocol": "staywire",
                "url": nodes[0]["url"], "pid": nodes[0]["pid"], "workloads": [],
                "params": self.cfg.sizing_params(), "cores": [], "nodes": nodes,
                "redis_port": self.redis.port,
            }
            gen = start_generator(self.registry, f"loadgen-sizing-{n}", spec, None, self.root)

            def on_result(workload: str, metrics: dict[str, Any]) -> None:
                self.records.append({"nodes": n, "round": rnd, "workload": workload,
                                     "metrics": metrics})
                self._check(n, rnd, workload, metrics)

            drive(gen, ui=ui, timeout=self.cfg.group_timeout, name=f"sizing {n} node(s)",
                  what="topology", on_result=on_result)
        finally:
            for left in [gen, *reversed(started)]:
                if left is not None:
                    left.stop()
                    self.registry.forget(left)
            for port in ports:
                self.ctx.api_ports.pop(port, None)

    def _check(self, n: int, rnd: int, workload: str, m: dict[str, Any]) -> None:
        where = (f"sizing {n} node(s) round {rnd + 1} {workload} at "
                 f"{m.get('subscribers')} subscribers")
        if m.get("complete") is False:
            self.warnings.append(f"{where}: incomplete ({m.get('deliveries')} of "
                                 f"{m.get('expected_deliveries')} deliveries, "
                                 f"{m.get('errors', 0)} errors {m.get('last_error', '')})")
        if m.get("lost"):
            self.warnings.append(f"{where}: {m['lost']} connections lost unexpectedly")
        other = m.get("other_cpu_pct")
        if other is not None and other > self.cfg.noise_pct:
            m["noisy"] = True
            self.warnings.append(f"{where}: processes outside the benchmark used {other:.0f}% "
                                 "of a core during the window (noisy)")
