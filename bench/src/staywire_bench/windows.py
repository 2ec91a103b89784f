"""CPU use over a measured window, as the load generator reports it (% of one core)."""

from __future__ import annotations

from typing import Any

__all__ = ["CORES", "cpu_window", "ms", "server_us_per", "us"]

#: The cores the server and the generator are pinned to (``cpu0``...), for the noise figure.
CORES: set[str] = set()


def us(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e6


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def cpu_window(marks: dict[str, Any]) -> dict[str, float | None]:
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
    r0, r1 = marks.get("start_redis"), marks.get("end_redis")
    if r0 is not None and r1 is not None:  # the Redis broker's redis-server, on the server core
        out["redis_cpu_pct"] = 100.0 * (r1 - r0) / wall
    k0, k1 = marks.get("start_cores") or {}, marks.get("end_cores") or {}
    if CORES:
        k0 = {c: v for c, v in k0.items() if c in CORES}
        k1 = {c: v for c, v in k1.items() if c in CORES}
    if k0 and k1:
        busy = sum(k1[c][0] - k0[c][0] for c in k1 if c in k0)
        steal = sum(k1[c][1] - k0[c][1] for c in k1 if c in k0)
        ours = ((out["gen_cpu_pct"] or 0.0) + (out["server_cpu_pct"] or 0.0)
                + (out.get("redis_cpu_pct") or 0.0))
        # /proc/stat ticks are coarse (10 ms): small negative values are rounding.
        out["other_cpu_pct"] = max(0.0, 100.0 * busy / wall - ours)
        out["steal_pct"] = 100.0 * steal / wall
    return out


def server_us_per(marks: dict[str, Any]) -> float | None:
    """The server's CPU time (user + system) per message counted over the window, in µs:
    ``start_count``/``end_count`` are the messages answered by the window's two marks."""
    s0, s1 = marks.get("start_srv"), marks.get("end_srv")
    n0, n1 = marks.get("start_count"), marks.get("end_count")
    if s0 is None or s1 is None or n0 is None or n1 is None or n1 <= n0:
        return None
    return 1e6 * (float(s1) - float(s0)) / (int(n1) - int(n0))
