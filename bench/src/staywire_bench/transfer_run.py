"""The ``transfer`` workload (issue 11): a large payload from one Python client to
``transfer_subscribers`` subscribers, through a Staywire node on the memory broker, one on
Redis, the same from the browser client in Chromium (``staywire_bench.transfer_browser``),
and a bare picows server relaying the same bytes, in the same run.

Every round sends one fresh random payload of ``transfer_mib`` MiB through each server in
turn (the order rotates each round), each a fresh process; medians over the rounds are
the summary, and the goals of issue 11 are checked on the memory node's: throughput at
least half the bare relay's, server RSS growth at most 64 MiB, the bystander's round-trip
p99 at most 50 ms. The servers' rate limits are raised (``staywire_settings``): the
default ``rate_bytes`` of 1 MiB/s per connection would make the figure the limit's.
Nothing is pinned: the sender, the subscribers, the bystander and the server share the
cores.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from staywire_bench.config import BenchConfig, BenchError
from staywire_bench.machine import loadavg, machine_info, redis_missing, staywire_command
from staywire_bench.servers import ProcessRegistry, RedisProcess, ServerContext
from staywire_bench.transfer import GOALS, SERVERS, measure
from staywire_bench.transfer_browser import browser_missing, measure_browser
from staywire_bench.ui import Ui

__all__ = ["TransferBench", "summarize_transfer"]

FIGURES = ("mib_s", "rss_growth_mib", "ping_p99_ms", "seconds")


class TransferBench:
    """Runs every server ``cfg.rounds`` times and returns the ``transfer`` section."""

    def __init__(self, cfg: BenchConfig, root: Path, registry: ProcessRegistry) -> None:
        self.cfg = cfg
        self.root = root
        self.registry = registry
        self.records: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.ctx = ServerContext(root=root)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.transfer_mib <= 0 or cfg.transfer_subscribers < 1:
            raise BenchError("transfer: transfer_mib must be > 0 and transfer_subscribers >= 1")
        servers = list(SERVERS)
        reason = redis_missing()
        if reason:
            servers.remove("staywire-redis")
            self.warnings.append(f"staywire-redis skipped: {reason}")
        reason = browser_missing()
        if reason:
            servers.remove("staywire-browser")
            self.warnings.append(f"staywire-browser skipped: {reason}")
        started = time.time()
        t0 = time.monotonic()
        load_at_start = loadavg()
        try:  # after a peer run the harness is still pinned to one core
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except (OSError, AttributeError):
            pass
        redis: RedisProcess | None = None
        with Ui(cfg.progress, cfg.rounds * len(servers)) as ui:
            try:
                if "staywire-redis" in servers:
                    redis = RedisProcess(self.registry, None).start()
                    self.ctx.redis_url = redis.url
                for rnd in range(cfg.rounds):
                    payload = os.urandom(int(cfg.transfer_mib * 2**20))
                    shift = rnd % len(servers)
                    for server in servers[shift:] + servers[:shift]:
                        ui.step(f"transfer round {rnd + 1}/{cfg.rounds} · {server}")
                        if redis is not None and server == "staywire-redis":
                            redis.flush()
                        try:
                            if server == "staywire-browser":
                                m = measure_browser(self.registry, self.ctx, len(payload),
                                                    cfg.transfer_subscribers)
                            else:
                                m = measure(self.registry, self.ctx, self.root, server,
                                            payload, cfg.transfer_subscribers)
                        except (BenchError, RuntimeError, OSError, TimeoutError) as exc:
                            self.warnings.append(f"transfer {server} round {rnd + 1}: {exc!r}")
                            ui.log(f"[red]{exc!r}")
                        else:
                            self.records.append({"server": server, "round": rnd,
                                                 "metrics": m})
                            if not m["intact"]:
                                self.warnings.append(f"transfer {server} round {rnd + 1}: "
                                                     "a subscriber's copy differs")
                        ui.advance()
            finally:
                if redis is not None:
                    redis.stop()
                self.registry.stop_all()
        meta = {
            "command": cfg.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(time.monotonic() - t0, 1),
            "quick": cfg.quick,
            "config": {"rounds": cfg.rounds, "mib": cfg.transfer_mib,
                       "subscribers": cfg.transfer_subscribers},
            "machine": machine_info(None),
            "placement": "not pinned: the sender, the subscribers, the bystander and the "
                         "server share every core",
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": loadavg(),
            "staywire_command": staywire_command(),
            "pids": list(self.registry.started),
        }
        return summarize_transfer(meta, self.records, self.warnings)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarize_transfer(meta: dict[str, Any], records: list[dict[str, Any]],
                       warnings: list[str]) -> dict[str, Any]:
    """Medians per server, the ratios to the bare relay, and the goals on each node."""
    summary: dict[str, dict[str, Any]] = {}
    for server in SERVERS:
        mine = [r["metrics"] for r in records if r["server"] == server]
        if mine:
            summary[server] = {k: _median([m[k] for m in mine]) for k in FIGURES}
            summary[server]["intact"] = all(m["intact"] for m in mine)
            summary[server]["rounds"] = len(mine)
    bare = summary.get("picows", {}).get("mib_s")
    goals: dict[str, dict[str, Any]] = {}
    for server in ("staywire", "staywire-redis", "staywire-browser"):
        row = summary.get(server)
        if row is None:
            continue
        row["ratio"] = row["mib_s"] / bare if bare else None
        goals[server] = {
            "ratio": _met(row["ratio"], GOALS["ratio"], at_least=True),
            "rss_mib": _met(row["rss_growth_mib"], GOALS["rss_mib"], at_least=False),
            "ping_p99_ms": _met(row["ping_p99_ms"], GOALS["ping_p99_ms"], at_least=False),
        }
    return {"meta": meta, "records": records, "summary": summary, "goals": goals,
            "targets": GOALS, "warnings": warnings}


def _met(value: float | None, goal: float, *, at_least: bool) -> bool | None:
    if value is None:
        return None
    return value >= goal if at_least else value <= goal
