"""The ``sizing`` section: medians per node count and subscriber count, the n-nodes /
one-node ratios, the figures of the sizing model (docs/deployment.md). The markdown is
``staywire_bench.sizing_markdown``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from staywire_bench.stats import median

__all__ = ["FANOUTS", "GOAL", "LABELS", "PUBLISHES", "levels", "line", "model", "node_counts", "ratios",
           "row_of", "summarize_sizing"]

#: Issue 12: node CPU per delivery with 2 and 3 nodes within 10% of one node's.
GOAL = 1.10
#: The fan-out workloads: back to back, and one publication at a time.
FANOUTS = ("fanout", "paced")
#: The publish workloads: many publications in flight (batched), and one (not).
PUBLISHES = ("publish", "publish1")
LABELS = {"fanout": "back to back", "paced": "one at a time",
          "publish": "many in flight", "publish1": "one in flight"}
KEYS = ("node_us", "node_stat_us", "redis_us", "rate", "gen_cpu_pct", "redis_cpu_pct",
        "other_cpu_pct", "machine_busy_pct", "window_s", "open_subscribe_s",
        "rss_kib_per_conn", "rss_kib")


def _sum(values: list[float] | None) -> float | None:
    return None if not values else sum(values)


def _load1(text: str | None) -> float | None:
    try:
        return float((text or "").split()[0])
    except (IndexError, ValueError):
        return None


def summarize_sizing(meta: dict[str, Any], records: list[dict[str, Any]],
                     warnings: list[str]) -> dict[str, Any]:
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        m = rec["metrics"]
        if m.get("complete"):
            groups[(rec["workload"], rec["nodes"], int(m["subscribers"]))].append(rec)
    rows: dict[str, dict[str, Any]] = {}
    for (workload, nodes, subs), recs in sorted(groups.items()):
        ms = [r["metrics"] for r in recs]
        row: dict[str, Any] = {"workload": workload, "nodes": nodes, "subscribers": subs,
                               "rounds": len(ms)}
        for key in KEYS:
            row[key] = median([m.get(key) for m in ms])
        per_round = [m.get("node_us") for m in ms if m.get("node_us") is not None]
        row["node_us_min"] = min(per_round) if per_round else None
        row["node_us_max"] = max(per_round) if per_round else None
        row["idle_node_cpu_pct"] = median([_sum(m.get("idle_node_cpu_pct")) for m in ms])
        row["loadavg_1m"] = median([_load1(m.get("loadavg")) for m in ms])
        pubs = [m["redis_publishes"] / m["acked"] for m in ms
                if m.get("redis_publishes") is not None and m.get("acked")]
        row["redis_publish_per_pub"] = median(pubs)
        row["deliveries_per_pub"] = median([m["deliveries"] / m["acked"] for m in ms
                                            if m.get("acked") and "deliveries" in m])
        calls = [m.get("redis_calls_per_unit") or {} for m in ms]
        row["redis_calls_per_unit"] = {
            cmd: median([c.get(cmd, 0.0) for c in calls])
            for cmd in sorted({cmd for c in calls for cmd in c})}
        rows[f"{workload} {nodes} {subs}"] = row
    return {"meta": meta, "records": records, "summary": rows,
            "ratios": ratios(rows, records), "model": model(rows), "warnings": warnings}


def row_of(rows: dict[str, dict[str, Any]], workload: str, nodes: int, subs: int
         ) -> dict[str, Any]:
    return rows.get(f"{workload} {nodes} {subs}", {})


def levels(rows: dict[str, dict[str, Any]], workload: str) -> list[int]:
    return sorted({r["subscribers"] for r in rows.values() if r["workload"] == workload})


def node_counts(rows: dict[str, dict[str, Any]]) -> list[int]:
    return sorted({r["nodes"] for r in rows.values()})


def ratios(rows: dict[str, dict[str, Any]], records: list[dict[str, Any]]
           ) -> dict[str, Any]:
    """Node CPU per fan-out delivery with n nodes over one node's, at each subscriber
    count: from the medians, and round by round (each round ran every node count)."""
    out: dict[str, Any] = {}
    by_round: dict[tuple[str, int, int], dict[int, float]] = defaultdict(dict)
    for rec in records:
        m = rec["metrics"]
        if rec["workload"] in FANOUTS and m.get("complete") and m.get("node_us"):
            key = (rec["workload"], rec["round"], int(m["subscribers"]))
            by_round[key][rec["nodes"]] = m["node_us"]
    for workload in FANOUTS:
        for subs in levels(rows, workload):
            one = row_of(rows, workload, 1, subs).get("node_us")
            for n in node_counts(rows):
                if n == 1:
                    continue
                mine = row_of(rows, workload, n, subs).get("node_us")
                rounds = [pair[n] / pair[1] for (w, _, s), pair in sorted(by_round.items())
                          if w == workload and s == subs and n in pair and 1 in pair]
                out[f"{workload} {n} vs 1 at {subs}"] = {
                    "workload": workload, "nodes": n, "subscribers": subs,
                    "ratio": mine / one if mine and one else None, "per_round": rounds}
    return out


def model(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The measured costs the sizing model of docs/deployment.md is built from, each as
    a rate one core sustains (1 s / CPU per unit), at the largest subscriber count."""
    out: dict[str, Any] = {}
    nodes = node_counts(rows)
    pub = levels(rows, "publish")
    for workload in FANOUTS:
        fan = levels(rows, workload)
        if not fan:
            continue
        k = fan[-1]
        per = {n: row_of(rows, workload, n, k).get("node_us") for n in nodes}
        worst = max((v for v in per.values() if v), default=None)
        out["fanout_subscribers"] = k
        out[f"{workload}_node_us"] = per
        out[f"{workload}_node_us_worst"] = worst
        out[f"{workload}_deliveries_per_core"] = 1e6 / worst if worst else None
        idle = row_of(rows, "publish", nodes[-1], k)
        if idle.get("rss_kib_per_conn") is not None:
            # The connections added to reach the largest level, each subscribed to two
            # channels; the dearest node count.
            kib = max(v for v in (row_of(rows, "publish", n, k).get("rss_kib_per_conn")
                                  for n in nodes) if v is not None)
            out["rss_kib_per_conn"] = kib
            out["connections_per_gib"] = 1024 * 1024 / kib if kib > 0 else None
        if idle.get("idle_node_cpu_pct") is not None and k:
            # % of a core per connection, as µs of CPU per connection per second.
            out["idle_us_per_conn_s"] = idle["idle_node_cpu_pct"] / 100.0 * 1e6 / k
    for workload in PUBLISHES:
        pub = levels(rows, workload)
        if not pub:
            continue
        if workload == "publish":
            # A node's own memory: its resident set with only the publishers connected.
            base = [r["rss_kib"] / n for n in nodes
                    if (r := row_of(rows, workload, n, pub[0])).get("rss_kib")]
            out["node_base_rss_mib"] = max(base) / 1024 if base else None
        # No subscribers: the publishing side alone, at the dearest node count (the
        # publishers spread over more nodes give each node smaller batches to pipeline).
        zero = [v for v in (row_of(rows, workload, n, pub[0]).get("node_us") for n in nodes)
                if v]
        out[f"{workload}_node_us"] = max(zero) if zero else None
        out[f"{workload}_per_core"] = 1e6 / max(zero) if zero else None
        # A small fan-out (a few subscribers per node per publication): what the
        # subscribers added to the node CPU per publication, per delivery, at the
        # smallest level with subscribers; the dearest node count.
        # Less the deliveries at the one-at-a-time cost (t_d), what is left is each
        # node's cost to receive a publication from Redis (t_r), per node: every channel
        # has subscribers on every node at that level.
        t_d = out.get("paced_node_us_worst")
        small, receive = [], []
        for n in nodes:
            none = row_of(rows, workload, n, pub[0])
            some = row_of(rows, workload, n, pub[min(1, len(pub) - 1)])
            each = some.get("deliveries_per_pub")
            if none.get("node_us") and some.get("node_us") and each and each >= 1:
                added = some["node_us"] - none["node_us"]
                small.append((added / each, each / n))
                if t_d is not None and each >= n:
                    receive.append((added - each * t_d) / n)
        if small and pub[0] == 0 and len(pub) > 1:
            us, per_node = max(small)
            out[f"{workload}_small_delivery_us"] = us
            out[f"{workload}_small_per_node"] = per_node
            out["small_subscribers"] = pub[1]
        if receive and pub[0] == 0:
            out[f"{workload}_receive_us"] = max(receive)
            out[f"{workload}_receive_us_min"] = min(receive)
        redis = {f"{n} {s}": row_of(rows, workload, n, s).get("redis_us")
                 for n in nodes for s in pub}
        worst = max((v for v in redis.values() if v), default=None)
        out[f"{workload}_redis_us"] = redis
        out[f"{workload}_redis_us_worst"] = worst
        out[f"{workload}_redis_per_core"] = 1e6 / worst if worst else None
        # Redis' cost of a publication = a fixed part (the Lua script: offset, stream,
        # expiries) + a part per node subscribed to the channel (one more pub/sub write):
        # the least-squares line through the largest level's figures, 1..n nodes. From
        # one publication in flight, its batching does not change with the nodes.
        points = [(n, row_of(rows, workload, n, pub[-1]).get("redis_us")) for n in nodes]
        fit = line([(float(x), y) for x, y in points if y is not None])
        if fit is not None:
            out[f"{workload}_redis_us_fixed"], out[f"{workload}_redis_us_per_node"] = fit
    return out


def line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Intercept and slope of the least-squares line through ``points``; None with fewer
    than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    slope = (sum((x - mx) * (y - my) for x, y in points)
             / sum((x - mx) ** 2 for x, _ in points))
    return my - slope * mx, slope
