"""The Redis broker against the memory broker (issue 12): the goals, as ratios of one run.

``staywire`` (memory broker) and ``staywire-redis`` run in the same ``staywire bench``
run, on the same machine, against the same generator: their ratio is the figure, not
either number alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["redis_goals", "redis_goals_markdown"]

MEMORY = "staywire"
REDIS = "staywire-redis"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _f(value: float | None, digits: int = 0, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def redis_goals(summary: dict[str, dict[str, float | None]]) -> list[dict[str, Any]]:
    """One row per goal: memory's and Redis' figures, Redis / memory, and whether met."""
    mem, red = summary.get(MEMORY), summary.get(REDIS)
    if not mem or not red:
        return []
    rows: list[dict[str, Any]] = []

    def row(goal: str, key: str, digits: int, unit: str, bound: float, up: bool) -> None:
        r = _ratio(red.get(key), mem.get(key))
        rows.append({"goal": goal, "memory": _f(mem.get(key), digits, unit),
                     "redis": _f(red.get(key), digits, unit),
                     "ratio": r, "met": None if r is None else bool(r >= bound if up
                                                                    else r <= bound)})

    row("fan-out deliveries/s: Redis >= 80% of memory", "fanout_rate", 0, "", 0.8, True)
    row("fan-out p99: Redis <= 1.5x memory", "fanout_p99", 1, " ms", 1.5, False)
    row("publishes/s from 100 connections: Redis >= 50% of memory", "publish_rate", 0, "",
        0.5, True)
    row("reconnect storm, all back: Redis <= 1.5x memory", "storm_s", 2, " s", 1.5, False)
    pub = red.get("publish_redis_us")
    calls = red.get("fanout_redis_publishes")
    # The exact figure is the PUBLISH count (INFO commandstats): one per publication on
    # one node, whatever K. Redis' CPU per publication is shown from the publish
    # workload, whose window holds thousands of them; the fan-out's holds M (20), next
    # to the subscribers' session saves still being written, so its CPU figure is not.
    rows.append({"goal": "Redis CPU per publication independent of subscribers: one "
                         "PUBLISH per node per channel",
                 "memory": "n/a",
                 "redis": (f"{_f(calls, 2)} PUBLISH per publication at K subscribers; "
                           f"{_f(pub, 1, ' µs')} of Redis CPU per publication"),
                 "ratio": None,
                 "met": None if calls is None else bool(calls <= 1.0)})
    return rows


def redis_goals_markdown(rows: list[dict[str, Any]], k: int) -> list[str]:
    if not rows:
        return []
    out = ["## Redis broker against the memory broker", "",
           "Both Staywire servers of this run, side by side; Redis / memory is the figure "
           f"the goals of issue 12 are about. Fan-out to K = {k:,} subscribers; publish: "
           "100 connections, one acked publication in flight each, history kept. Redis "
           "CPU per publication is redis-server's `INFO cpu` (user + sys) over the "
           "workload's window, less its idle rate, divided by the publications in it; "
           "the PUBLISH count is from `INFO commandstats`.", "",
           "| goal | memory | Redis | Redis / memory | |", "|---|---|---|---|---|"]
    for r in rows:
        met = {True: "met", False: "**not met**", None: "n/a"}[r["met"]]
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        out.append(f"| {r['goal']} | {r['memory']} | {r['redis']} | {ratio} | {met} |")
    out.append("")
    return out
