"""The harness: rounds of every server against the same load generator, then the reports.

One run::

    for each round (the order of the servers rotates every round):
        for each server:
            group A: fresh server; echo over 1 connection; echo over 100 connections
            group B: fresh server; open K connections (handshakes/s; KiB per idle
                     connection from VmRSS before and after); subscribe them; fan-out of
                     M publications; reconnect storm (kill the server, start it again)

The server runs pinned to core 0, the load generator to core 1, the harness
itself also on core 1 (it mostly waits). Every process is started through a
``ProcessRegistry`` and stopped by its PID, on errors and Ctrl-C too.

``--workloads scaleout`` (Staywire only, ``staywire_bench.scaleout``) and
``--workloads proxy`` (``staywire_bench.proxyrun``) and ``--workloads sizing``
(``staywire_bench.sizing``) run after the peers, or alone; a
run that measured only some of the parts keeps the others from the results file it
rewrites.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from staywire_bench.config import (
    ALL_WORKLOADS,
    GROUP_A,
    GROUP_B,
    KNOWN_WORKLOADS,
    REFERENCE,
    BenchConfig,
    BenchError,
)
from staywire_bench.groups import GroupRunner
from staywire_bench.machine import (
    find_root,
    hold_low_latency,
    loadavg,
    machine_info,
    redis_missing,
    staywire_command,
)
from staywire_bench.servers import ALL_SERVERS, ProcessRegistry, ServerContext, ServerDef, node_ready
from staywire_bench.ui import Ui

__all__ = ["ALL_WORKLOADS", "BenchConfig", "BenchError", "find_root", "run_bench"]

#: Keys of the results that belong to the peer benchmark (the rest is ``scaleout``).
PEER_KEYS = ("meta", "servers", "metrics", "records", "per_round", "summary",
             "ratios_vs_reference", "generator_cpu_pct", "generator_saturated", "targets",
             "issue2", "redis_goals", "warnings", "profiles")


class Harness:
    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.root = find_root(cfg.root)
        self.registry = ProcessRegistry()
        self.records: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.skipped: dict[str, str] = {}
        cores = os.cpu_count() or 1
        self.pin = cfg.pin and cores >= 2 and shutil.which("taskset") is not None
        self.server_core = cfg.server_core if self.pin else None
        self.gen_core = cfg.gen_core if self.pin else None
        self.ctx = ServerContext(root=self.root)
        self.groups = GroupRunner(cfg, self.root, self.registry, self.ctx, self.server_core,
                                  self.gen_core)
        self.loadavg_at_start = ""
        self.retried: list[dict[str, Any]] = []
        self.timings: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.groups_done = 0
        self.group_seconds = 0.0
        self.groups_left = 0

    # ------------------------------------------------------------------ setup

    def _available(self, ui: Ui) -> list[ServerDef]:
        wanted = []
        for name in self.cfg.servers:
            if name not in ALL_SERVERS:
                raise BenchError(f"unknown server {name!r} (known: {', '.join(ALL_SERVERS)})")
            wanted.append(ALL_SERVERS[name])
        out = []
        for sdef in wanted:
            reason = self._missing(sdef, ui)
            if reason:
                self.skipped[sdef.name] = reason
                self.warnings.append(f"{sdef.name} skipped: {reason}")
                ui.log(f"skipping {sdef.name}: {reason}")
            else:
                out.append(sdef)
        return out

    def _missing(self, sdef: ServerDef, ui: Ui) -> str | None:
        for need in sdef.needs:
            if need == "node":
                if self.ctx.node is None:
                    self.ctx.node = node_ready(self.root, ui.log)
                if self.ctx.node is None:
                    return "node/npm or the Node packages are not available"
            elif need == "redis":
                reason = redis_missing()
                if reason:
                    return reason
                self.groups.ensure_redis()
            elif need.startswith("python:"):
                module = need.split(":", 1)[1]
                if importlib.util.find_spec(module) is None:
                    return f"python package {module!r} is not installed"
        return None

    # ------------------------------------------------------------------ groups

    def _on_result(self, server: str, rnd: int) -> Callable[[str, dict[str, Any]], None]:
        def on_result(workload: str, metrics: dict[str, Any]) -> None:
            self.records.append({"server": server, "round": rnd, "workload": workload,
                                 "metrics": metrics})
            self._check(server, rnd, workload, metrics)

        return on_result

    def _run_group_retrying(self, sdef: ServerDef, rnd: int, group: list[str], ui: Ui) -> None:
        """Run a group; again (bounded) while its windows were noisy; keep the least noisy."""
        attempts: list[tuple[float, list[dict[str, Any]], list[str]]] = []
        for attempt in range(1 + max(0, self.cfg.retry_noisy)):
            records_before, warnings_before = len(self.records), len(self.warnings)
            started = time.monotonic()
            try:
                self.groups.run(sdef, group, ui, self._on_result(sdef.name, rnd))
            except BenchError as exc:
                self.warnings.append(f"round {rnd + 1}: {exc}")
                ui.log(f"[red]{exc}")
            records = self.records[records_before:]
            warnings = self.warnings[warnings_before:]
            del self.records[records_before:]
            del self.warnings[warnings_before:]
            noise = max((r["metrics"].get("other_cpu_pct") or 0.0 for r in records),
                        default=0.0)
            attempts.append((noise if records else float("inf"), records, warnings))
            self.groups_done += 1
            took = time.monotonic() - started
            self.group_seconds += took
            self.timings.append({"server": sdef.name, "round": rnd + 1, "group": "+".join(group),
                                 "attempt": attempt + 1, "seconds": round(took, 1)})
            if records and noise <= self.cfg.noise_pct:
                break
            if not self._may_retry(time.monotonic() - started):
                ui.log(f"{sdef.name} {'+'.join(group)}: noisy ({noise:.0f}%), no time left "
                       "in the budget to run it again")
                break
            if attempt < self.cfg.retry_noisy:
                ui.log(f"{sdef.name} {'+'.join(group)}: noisy ({noise:.0f}% of a core used by "
                       "other processes); running it again")
                time.sleep(1.0)
        best = min(attempts, key=lambda a: a[0])
        self.records.extend(best[1])
        self.warnings.extend(best[2])
        if len(attempts) > 1:
            self.retried.append({"server": sdef.name, "round": rnd + 1, "group": group,
                                 "attempts": len(attempts),
                                 "noise_pct": [round(a[0], 1) for a in attempts]})

    def _may_retry(self, this_group: float) -> bool:
        """Whether one more run of a group fits the time budget, counting the groups left."""
        elapsed = time.monotonic() - self.t0
        average = self.group_seconds / max(1, self.groups_done)
        # 1.3: later groups may well be slower than the average so far (noise, slow peers).
        return elapsed + this_group + 1.3 * average * self.groups_left <= self.cfg.budget

    def _check(self, server: str, rnd: int, workload: str, m: dict[str, Any]) -> None:
        where = f"{server} round {rnd + 1} {workload}"
        gen_cpu = m.get("gen_cpu_pct")
        if gen_cpu is not None and gen_cpu > 90.0:
            m["generator_saturated"] = True
            self.warnings.append(f"{where}: load generator at {gen_cpu:.0f}% of a core "
                                 "(saturated: the figure is a floor for this server)")
        other = m.get("other_cpu_pct")
        if other is not None and other > self.cfg.noise_pct:
            m["noisy"] = True
            self.warnings.append(f"{where}: other processes used {other:.0f}% of a core on the "
                                 "two benchmark cores during the window (noisy)")
        if m.get("complete") is False:
            self.warnings.append(f"{where}: incomplete ({m})")
        if m.get("lost"):
            self.warnings.append(f"{where}: {m['lost']} connections lost unexpectedly")
        if m.get("connect_failures"):
            self.warnings.append(f"{where}: {m['connect_failures']} failed connection "
                                 f"attempts (retried; last: {m.get('last_error', '')})")

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        unknown = set(cfg.workloads) - set(KNOWN_WORKLOADS)
        if unknown:
            raise BenchError(f"unknown workload(s) {sorted(unknown)} (known: "
                             f"{', '.join(KNOWN_WORKLOADS)})")
        results: dict[str, Any] = {}
        if any(w in ALL_WORKLOADS for w in cfg.workloads):
            results.update(self.run_peers())
        if "scaleout" in cfg.workloads:
            from staywire_bench.scaleout import ScaleOut

            results["scaleout"] = ScaleOut(cfg, self.root, self.registry).run()
        if "proxy" in cfg.workloads:
            from staywire_bench.proxyrun import ProxyBench

            results["proxy"] = ProxyBench(cfg, self.root, self.registry).run()
        if "sizing" in cfg.workloads:
            from staywire_bench.sizing import Sizing

            results["sizing"] = Sizing(cfg, self.root, self.registry).run()
        if "transfer" in cfg.workloads:
            from staywire_bench.transfer_run import TransferBench

            results["transfer"] = TransferBench(cfg, self.root, self.registry).run()
        return results

    def run_peers(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.time()
        t0 = self.t0 = time.monotonic()
        self.loadavg_at_start = loadavg()
        workloads = [w for w in ALL_WORKLOADS if w in cfg.workloads]
        group_a = [w for w in workloads if w in GROUP_A]
        group_b = [w for w in workloads if w in GROUP_B]
        if self.pin:
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setaffinity(0, {cfg.gen_core})
        else:
            self.warnings.append("not pinned (fewer than 2 cores or no taskset): the server "
                                 "and the generator share CPUs")
        with Ui(cfg.progress, 1) as ui:
            latency_hold = hold_low_latency(cfg.low_latency, self.warnings)
            try:
                servers = self._available(ui)
                if not servers:
                    raise BenchError("no server to benchmark")
                groups = [g for g in (group_a, group_b) if g]
                total = cfg.rounds * len(servers) * len(groups)
                ui.set_total(total)
                self.groups_left = total
                for rnd in range(cfg.rounds):
                    shift = rnd % len(servers)
                    for sdef in servers[shift:] + servers[:shift]:
                        for group in groups:
                            self.groups_left -= 1
                            ui.step(f"round {rnd + 1}/{cfg.rounds} · {sdef.name} · "
                                    f"{'+'.join(group)}")
                            self._run_group_retrying(sdef, rnd, group, ui)
                            ui.advance()
            finally:
                self.groups.stop_redis()
                self.registry.stop_all()
                if latency_hold is not None:
                    latency_hold.close()
        return self._results(started, time.monotonic() - t0, servers)

    def _results(self, started: float, duration: float, servers: list[ServerDef]
                 ) -> dict[str, Any]:
        from staywire_bench.report import summarize

        cfg = self.cfg
        meta = {
            "command": cfg.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(duration, 1),
            "quick": cfg.quick,
            "config": {k: v for k, v in asdict(cfg).items()
                       if k not in ("json_path", "markdown_path", "chart_path", "root",
                                    "command", "progress") and not k.startswith("lat_")},
            "machine": machine_info(self.ctx.node),
            "pinned": {"server_core": self.server_core, "generator_core": self.gen_core},
            "loadavg_at_start": self.loadavg_at_start,
            "reference": REFERENCE,
            "skipped": self.skipped,
            "retried_noisy": self.retried,
            "group_seconds": self.timings,
            "staywire_command": staywire_command(),
            "pids": list(self.registry.started),
        }
        servers_meta = {s.name: {"label": s.label, "protocol": s.protocol,
                                 "runtime": s.runtime, "note": s.note} for s in servers}
        return summarize(meta, servers_meta, self.records, self.warnings, self.groups.profiles)


def keep_previous(results: dict[str, Any], path: Path) -> dict[str, Any]:
    """A run that measured only some parts (the peers, the scale-out, the proxies) keeps the
    others from the results file it is about to rewrite (each carries its own command and
    date)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return results
    if not isinstance(previous, dict):
        return results
    merged = dict(results)
    if "meta" not in results and "meta" in previous:
        merged.update({k: previous[k] for k in PEER_KEYS if k in previous})
    for part in ("scaleout", "proxy", "sizing", "transfer"):
        if part not in results and part in previous:
            merged[part] = previous[part]
    # The file's own order first, new parts after it: a rewrite changes only what it ran.
    order = [k for k in previous if k in merged] + [k for k in merged if k not in previous]
    return {k: merged[k] for k in order}


def run_bench(cfg: BenchConfig, write: Callable[[dict[str, Any], BenchConfig, Path], None]
              ) -> dict[str, Any]:
    harness = Harness(cfg)
    results = harness.run()
    path = Path(cfg.json_path)
    results = keep_previous(results, path if path.is_absolute() else harness.root / path)
    write(results, cfg, harness.root)
    return results
