"""The ``scaleout`` workload: does a second Staywire node on the same Redis add fan-out?

Topologies, each with fresh processes, in rotating order every round::

    memory-1       1 node, memory broker     subscribers -> node A
    redis-1        1 node, Redis             subscribers -> node A
    redis-1-nginx  1 node, Redis             subscribers -> nginx -> node A
    redis-2-nginx  2 nodes, one Redis        subscribers -> nginx -> nodes A and B
    latency-2      2 nodes, one Redis        publisher -> A; subscribers -> B (and a few -> A)

The publisher always connects straight to node A. nginx runs the configuration
``staywire nginx`` prints (docs/deployment.md). Placement on a 2-core machine:
node A pinned to core 0, node B to core 1; the load generator, redis-server and
nginx are not pinned (there is no third core to give them) and their CPU use is
measured and reported. Every process is started through the run's
``ProcessRegistry`` and stopped by PID (nginx: its master, then any worker left)
on errors and Ctrl-C too; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from staywire_bench.config import BenchConfig, BenchError
from staywire_bench.groups import drive, start_generator
from staywire_bench.machine import (
    hold_low_latency,
    loadavg,
    machine_info,
    redis_missing,
    staywire_command,
)
from staywire_bench.proxy import NginxProcess, nginx_binary, nginx_version
from staywire_bench.servers import (
    ALL_SERVERS,
    Proc,
    ProcessRegistry,
    RedisProcess,
    ServerContext,
    free_port,
    pinned,
    wait_port,
)
from staywire_bench.ui import Ui

__all__ = ["TOPOLOGIES", "ScaleOut", "Topology", "start_node"]


@dataclass(frozen=True)
class Topology:
    name: str
    label: str
    nodes: int
    broker: str  # "memory" | "redis"
    nginx: bool
    workload: str  # "fanout" | "latency"


TOPOLOGIES = (
    Topology("memory-1", "1 node, memory broker", 1, "memory", False, "fanout"),
    Topology("redis-1", "1 node, Redis", 1, "redis", False, "fanout"),
    Topology("redis-1-nginx", "1 node, Redis, through nginx", 1, "redis", True, "fanout"),
    Topology("redis-2-nginx", "2 nodes, Redis, through nginx", 2, "redis", True, "fanout"),
    Topology("latency-2", "2 nodes, Redis: publisher on A, subscribers on B", 2, "redis",
             False, "latency"),
)


def start_node(registry: ProcessRegistry, ctx: ServerContext, root: Path, name: str,
               broker: str, core: int | None) -> tuple[Proc, int, int]:
    """One Staywire node (``broker``: "memory", or "redis" on ``ctx.redis_url``) on a free
    loopback port, pinned to ``core`` (None: not pinned), started through ``registry``;
    its process, WebSocket port and API port once it accepts connections."""
    port = free_port()
    sdef = ALL_SERVERS["staywire-redis" if broker == "redis" else "staywire"]
    argv, extra_env = sdef.build(ctx, port)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
    proc = registry.start(f"staywire-{name}", pinned(argv, core), env=env, cwd=str(root))
    if not wait_port(port, 30.0, proc.alive):
        tail = proc.log_tail()
        proc.stop()
        registry.forget(proc)
        raise BenchError(f"node {name} did not start on port {port}:\n{tail}")
    return proc, port, ctx.api_ports[port]


class ScaleOut:
    """Runs every topology ``cfg.rounds`` times and returns the ``scaleout`` section."""

    def __init__(self, cfg: BenchConfig, root: Path, registry: ProcessRegistry) -> None:
        self.cfg = cfg
        self.root = root
        self.registry = registry
        self.records: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.skipped: dict[str, str] = {}
        self.redis: RedisProcess | None = None
        self.nginx_bin = nginx_binary()
        cores = os.cpu_count() or 1
        pin = cfg.pin and cores >= 2 and shutil.which("taskset") is not None
        self.node_cores: list[int | None] = ([cfg.server_core, cfg.gen_core] if pin
                                             else [None, None])
        self.ctx = ServerContext(root=root)
        self.retried: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.done = 0
        self.seconds = 0.0
        self.left = 0

    def _topologies(self) -> list[Topology]:
        no_redis = redis_missing()
        out = []
        for topo in TOPOLOGIES:
            reason = None
            if topo.broker == "redis" and no_redis:
                reason = no_redis
            elif topo.nginx and self.nginx_bin is None:
                reason = "nginx is not installed"
            if reason:
                self.skipped[topo.name] = reason
                self.warnings.append(f"scaleout {topo.name} skipped: {reason}")
            else:
                out.append(topo)
        return out

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.time()
        t0 = self.t0 = time.monotonic()
        load_at_start = loadavg()
        # The harness mostly waits; after a peer run it is still pinned to one core.
        try:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except (OSError, AttributeError):
            pass
        if self.node_cores[0] is None:
            self.warnings.append("not pinned (fewer than 2 cores or no taskset): nodes, "
                                 "generator, nginx and Redis share the CPUs freely")
        topologies = self._topologies()
        self.left = cfg.rounds * len(topologies)
        with Ui(cfg.progress, max(1, self.left)) as ui:
            hold = hold_low_latency(cfg.low_latency, self.warnings)
            try:
                for rnd in range(cfg.rounds):
                    shift = rnd % max(1, len(topologies))
                    for topo in topologies[shift:] + topologies[:shift]:
                        self.left -= 1
                        ui.step(f"scaleout round {rnd + 1}/{cfg.rounds} · {topo.name}")
                        self._run_retrying(topo, rnd, ui)
                        ui.advance()
            finally:
                if self.redis is not None:
                    self.redis.stop()
                self.registry.stop_all()
                if hold is not None:
                    hold.close()
        from staywire_bench.scaleout_report import summarize_scaleout

        meta = {
            "command": cfg.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(time.monotonic() - t0, 1),
            "quick": cfg.quick,
            "config": {k: v for k, v in asdict(cfg).items()
                       if k in ("rounds", "k", "m", "concurrency", "pad", "phase_timeout")
                       or k.startswith("lat_")},
            "machine": machine_info(None),
            "nginx": nginx_version(self.nginx_bin),
            "placement": {"node A core": self.node_cores[0], "node B core": self.node_cores[1],
                          "generator": "not pinned", "redis-server": "not pinned",
                          "nginx": "not pinned"},
            "loadavg_at_start": load_at_start,
            "staywire_command": staywire_command(),
            "skipped": self.skipped,
            "retried_noisy": self.retried,
            "topologies": {t.name: asdict(t) for t in TOPOLOGIES},
            "pids": list(self.registry.started),
        }
        return summarize_scaleout(meta, self.records, self.warnings)

    # ------------------------------------------------------------------ one topology

    def _run_retrying(self, topo: Topology, rnd: int, ui: Ui) -> None:
        """Run a topology; again (at most ``retry_noisy`` times, within the budget) while
        processes outside the benchmark were busy in its window; keep the least noisy."""
        attempts: list[tuple[float, list[dict[str, Any]], list[str]]] = []
        for attempt in range(1 + max(0, self.cfg.retry_noisy)):
            n_rec, n_warn = len(self.records), len(self.warnings)
            started = time.monotonic()
            try:
                self._run_topology(topo, rnd, ui)
            except BenchError as exc:
                self.warnings.append(f"scaleout round {rnd + 1}: {exc}")
                ui.log(f"[red]{exc}")
            records, warnings = self.records[n_rec:], self.warnings[n_warn:]
            del self.records[n_rec:], self.warnings[n_warn:]
            noise = max((r["metrics"].get("other_cpu_pct") or 0.0 for r in records),
                        default=0.0)
            attempts.append((noise if records else float("inf"), records, warnings))
            took = time.monotonic() - started
            self.done += 1
            self.seconds += took
            if records and noise <= self.cfg.noise_pct:
                break
            average = self.seconds / self.done
            elapsed = time.monotonic() - self.t0
            if (attempt >= self.cfg.retry_noisy
                    or elapsed + took + 1.3 * average * self.left > self.cfg.budget):
                break
            ui.log(f"scaleout {topo.name}: noisy ({noise:.0f}% of a core used by other "
                   "processes); running it again")
            time.sleep(1.0)
        best = min(attempts, key=lambda a: a[0])
        self.records.extend(best[1])
        self.warnings.extend(best[2])
        if len(attempts) > 1:
            self.retried.append({"topology": topo.name, "round": rnd + 1,
                                 "attempts": len(attempts),
                                 "noise_pct": [round(a[0], 1) for a in attempts]})

    def _redis_url(self) -> str:
        if self.redis is None:
            self.redis = RedisProcess(self.registry, None).start()
        self.redis.flush()
        return self.redis.url

    def _start_node(self, name: str, broker: str, core: int | None) -> tuple[Proc, int, int]:
        return start_node(self.registry, self.ctx, self.root, name, broker, core)

    def _run_topology(self, topo: Topology, rnd: int, ui: Ui) -> None:
        started: list[Proc] = []
        nodes: list[dict[str, Any]] = []
        nginx: NginxProcess | None = None
        gen: Proc | None = None
        try:
            if topo.broker == "redis":
                self.ctx.redis_url = self._redis_url()
            for i, name in enumerate("AB"[:topo.nodes]):
                proc, port, api = self._start_node(name, topo.broker, self.node_cores[i])
                started.append(proc)
                nodes.append({"name": name, "pid": proc.pid, "port": port, "api_port": api,
                              "core": self.node_cores[i]})
            if topo.nginx:
                assert self.nginx_bin is not None
                nginx = NginxProcess(self.registry, [n["port"] for n in nodes])
                nginx.start(self.nginx_bin)
            url = {n["name"]: f"ws://127.0.0.1:{n['port']}" for n in nodes}
            procs: dict[str, list[int]] = {}
            if nginx is not None:
                procs["nginx"] = nginx.pids
            if topo.broker == "redis" and self.redis is not None and self.redis.proc:
                procs["redis"] = [self.redis.proc.pid]
            subscriber_url = nginx.url if nginx is not None else url["A"]
            spec = {
                "plan": "scaleout", "workload": topo.workload, "topology": topo.name,
                "server": f"scaleout-{topo.name}", "protocol": "staywire",
                "url": subscriber_url, "pid": nodes[0]["pid"], "workloads": [],
                "params": self.cfg.scaleout_params(), "cores": [],
                "publisher_url": url["A"], "subscriber_url": subscriber_url,
                "near_url": url["A"], "far_url": url.get("B", url["A"]),
                "nodes": [{k: n[k] for k in ("name", "pid", "api_port", "core")}
                          for n in nodes],
                "procs": procs,
            }
            gen = start_generator(self.registry, f"loadgen-scaleout-{topo.name}", spec, None,
                                  self.root)

            def on_result(workload: str, metrics: dict[str, Any]) -> None:
                self.records.append({"topology": topo.name, "round": rnd,
                                     "workload": workload, "metrics": metrics})
                self._check(topo, rnd, metrics)

            drive(gen, ui=ui, timeout=self.cfg.group_timeout, name=f"scaleout {topo.name}",
                  what="topology", on_result=on_result)
        finally:
            leftover: list[Proc | None] = [gen, *reversed(started)]
            for left in leftover:
                if left is not None:
                    left.stop()
                    self.registry.forget(left)
            if nginx is not None:
                nginx.stop()
            for node in nodes:
                self.ctx.api_ports.pop(node["port"], None)

    def _check(self, topo: Topology, rnd: int, m: dict[str, Any]) -> None:
        where = f"scaleout {topo.name} round {rnd + 1}"
        gen_cpu = m.get("gen_cpu_pct")
        if gen_cpu is not None and gen_cpu > 90.0:
            m["generator_saturated"] = True
            self.warnings.append(f"{where}: load generator at {gen_cpu:.0f}% of a core "
                                 "(saturated: the figure is a floor)")
        if m.get("complete") is False:
            self.warnings.append(f"{where}: incomplete ({m.get('delivered')} of "
                                 f"{m.get('expected')} deliveries)")
        if m.get("lost"):
            self.warnings.append(f"{where}: {m['lost']} connections lost unexpectedly")
        if m.get("connect_failures"):
            self.warnings.append(f"{where}: {m['connect_failures']} failed connection "
                                 f"attempts (retried; last: {m.get('last_error', '')})")
        other = m.get("other_cpu_pct")
        if other is not None and other > self.cfg.noise_pct:
            m["noisy"] = True
            self.warnings.append(f"{where}: processes outside the benchmark used {other:.0f}% "
                                 "of a core during the window (noisy)")
