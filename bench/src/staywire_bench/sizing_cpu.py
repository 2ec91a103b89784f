"""CPU per unit of work over one window: the figures of the ``sizing`` workload.

Two snapshots (``snapshot``) around a window, and ``per_unit`` turns them into CPU
microseconds per delivery or per publication: the nodes' summed CPU (every node
process, every thread), redis-server's, the generator's, and what the rest of the
machine did meanwhile (other processes on a shared machine: noise). Pure arithmetic
over the snapshots, so that it is tested without a server.

The nodes' CPU is read twice: from ``/proc/PID/task/*/schedstat`` (nanoseconds) and
from ``/proc/PID/stat`` (user + system in 10 ms ticks). The first is the figure; the
second is the user+sys the kernel charges, kept beside it as a check (over a window
of a few hundred milliseconds it is off by up to a tick per node).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from staywire_bench import procfs

__all__ = ["Snapshot", "per_unit", "snapshot"]


@dataclass(frozen=True)
class Snapshot:
    wall: float
    nodes_run: tuple[float | None, ...]  # schedstat seconds per node
    nodes_stat: tuple[float | None, ...]  # user + sys seconds per node (ticks)
    redis: float | None  # redis-server's used_cpu_user + used_cpu_sys
    calls: dict[str, int] | None  # calls so far per Redis command (INFO commandstats)
    generator: float  # this process's CPU seconds
    busy: float | None  # every core's busy seconds (user, nice, system), from /proc/stat


def snapshot(pids: Sequence[int], redis_sample: tuple[float, dict[str, int]] | None
             ) -> Snapshot:
    """The CPU so far of the nodes ``pids``, of Redis (a ``RedisCpu.sample_calls``) and
    of this process, and of the whole machine."""
    cores = procfs.core_times()
    return Snapshot(
        wall=time.perf_counter(),
        nodes_run=tuple(procfs.run_seconds(pid) for pid in pids),
        nodes_stat=tuple(procfs.cpu_seconds(pid) for pid in pids),
        redis=redis_sample[0] if redis_sample else None,
        calls=redis_sample[1] if redis_sample else None,
        generator=time.process_time(),
        busy=sum(v[0] for v in cores.values()) if cores else None,
    )


def _delta(a: Sequence[float | None], b: Sequence[float | None]) -> list[float] | None:
    if len(a) != len(b) or any(x is None for x in (*a, *b)):
        return None
    return [max(0.0, y - x) for x, y in zip(a, b)]  # type: ignore[operator]


def per_unit(a: Snapshot, b: Snapshot, units: int, *, redis_idle_per_s: float | None = None
             ) -> dict[str, Any]:
    """CPU µs per unit (``units`` deliveries or publications) between ``a`` and ``b``,
    and the CPU use of each part in % of one core. Redis' idle rate (its cron, the nodes'
    pings), measured apart, is taken off its figure; the nodes' is not (it is part of
    what a node costs, and shown apart by the workload)."""
    wall = max(b.wall - a.wall, 1e-9)
    run = _delta(a.nodes_run, b.nodes_run)
    stat = _delta(a.nodes_stat, b.nodes_stat)
    out: dict[str, Any] = {"window_s": wall, "units": units}
    n = max(units, 1)
    out["node_us"] = None if run is None or units <= 0 else sum(run) * 1e6 / n
    out["node_stat_us"] = None if stat is None or units <= 0 else sum(stat) * 1e6 / n
    out["node_cpu_pct"] = None if run is None else [100.0 * x / wall for x in run]
    redis = None
    if a.redis is not None and b.redis is not None:
        redis = max(0.0, b.redis - a.redis - (redis_idle_per_s or 0.0) * wall)
        out["redis_cpu_pct"] = 100.0 * (b.redis - a.redis) / wall
    else:
        out["redis_cpu_pct"] = None
    out["redis_us"] = None if redis is None or units <= 0 else redis * 1e6 / n
    if a.calls is not None and b.calls is not None:
        out["redis_publishes"] = b.calls.get("publish", 0) - a.calls.get("publish", 0)
        # What Redis ran per unit, the probe's own INFO left out: the exact side of a
        # CPU figure that is not.
        out["redis_calls_per_unit"] = {
            cmd: (b.calls[cmd] - a.calls.get(cmd, 0)) / n for cmd in sorted(b.calls)
            if cmd != "info" and b.calls[cmd] > a.calls.get(cmd, 0)}
    else:
        out["redis_publishes"] = out["redis_calls_per_unit"] = None
    gen = max(0.0, b.generator - a.generator)
    out["gen_cpu_pct"] = 100.0 * gen / wall
    if a.busy is not None and b.busy is not None:
        ours = gen + sum(run or []) + (0.0 if a.redis is None or b.redis is None
                                       else b.redis - a.redis)
        # /proc/stat counts ticks: small negative remainders are rounding.
        out["other_cpu_pct"] = max(0.0, 100.0 * (b.busy - a.busy - ours) / wall)
        out["machine_busy_pct"] = 100.0 * (b.busy - a.busy) / wall
    else:
        out["other_cpu_pct"] = out["machine_busy_pct"] = None
    return out
