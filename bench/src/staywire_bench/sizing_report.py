"""The ``sizing`` section: medians per node count and subscriber count, the goal, the
figures of the sizing model (docs/deployment.md), the markdown."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from staywire_bench.stats import median

__all__ = ["FANOUTS", "GOAL", "line", "markdown_section", "model", "ratios", "summarize_sizing"]

#: Issue 12: node CPU per delivery with 2 and 3 nodes within 10% of one node's.
GOAL = 1.10
#: The fan-out workloads: back to back, and one publication at a time.
FANOUTS = ("fanout", "paced")
LABELS = {"fanout": "back to back", "paced": "one at a time"}
KEYS = ("node_us", "node_stat_us", "redis_us", "rate", "gen_cpu_pct", "redis_cpu_pct",
        "other_cpu_pct", "machine_busy_pct", "window_s", "open_subscribe_s")


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
        calls = [m.get("redis_calls_per_unit") or {} for m in ms]
        row["redis_calls_per_unit"] = {
            cmd: median([c.get(cmd, 0.0) for c in calls])
            for cmd in sorted({cmd for c in calls for cmd in c})}
        rows[f"{workload} {nodes} {subs}"] = row
    return {"meta": meta, "records": records, "summary": rows,
            "ratios": ratios(rows, records), "model": model(rows), "warnings": warnings}


def _row(rows: dict[str, dict[str, Any]], workload: str, nodes: int, subs: int
         ) -> dict[str, Any]:
    return rows.get(f"{workload} {nodes} {subs}", {})


def _levels(rows: dict[str, dict[str, Any]], workload: str) -> list[int]:
    return sorted({r["subscribers"] for r in rows.values() if r["workload"] == workload})


def _nodes(rows: dict[str, dict[str, Any]]) -> list[int]:
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
        for subs in _levels(rows, workload):
            one = _row(rows, workload, 1, subs).get("node_us")
            for n in _nodes(rows):
                if n == 1:
                    continue
                mine = _row(rows, workload, n, subs).get("node_us")
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
    nodes = _nodes(rows)
    pub = _levels(rows, "publish")
    for workload in FANOUTS:
        fan = _levels(rows, workload)
        if not fan:
            continue
        k = fan[-1]
        per = {n: _row(rows, workload, n, k).get("node_us") for n in nodes}
        worst = max((v for v in per.values() if v), default=None)
        out["fanout_subscribers"] = k
        out[f"{workload}_node_us"] = per
        out[f"{workload}_node_us_worst"] = worst
        out[f"{workload}_deliveries_per_core"] = 1e6 / worst if worst else None
        idle = _row(rows, "publish", nodes[-1], k)
        if idle.get("idle_node_cpu_pct") is not None and k:
            # % of a core per connection, as µs of CPU per connection per second.
            out["idle_us_per_conn_s"] = idle["idle_node_cpu_pct"] / 100.0 * 1e6 / k
    if pub:
        zero = _row(rows, "publish", 1, pub[0])
        out["publish_node_us"] = zero.get("node_us")
        out["publications_per_core"] = (1e6 / zero["node_us"] if zero.get("node_us")
                                        else None)
        redis = {f"{n} {s}": _row(rows, "publish", n, s).get("redis_us")
                 for n in nodes for s in pub}
        worst = max((v for v in redis.values() if v), default=None)
        out["redis_us"] = redis
        out["redis_us_worst"] = worst
        out["redis_publications_per_core"] = 1e6 / worst if worst else None
        # Redis' cost of a publication = a fixed part (the Lua script: offset, stream,
        # expiries) + a part per node subscribed to the channel (one more pub/sub write):
        # the least-squares line through the largest level's figures, 1..n nodes.
        points = [(n, _row(rows, "publish", n, pub[-1]).get("redis_us")) for n in nodes]
        fit = line([(float(x), y) for x, y in points if y is not None])
        if fit is not None:
            out["redis_us_fixed"], out["redis_us_per_node"] = fit
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


# ---------------------------------------------------------------------- markdown


def _f(value: float | None, digits: int = 0, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _calls(calls: dict[str, float] | None) -> str:
    """The commands Redis ran per unit, the ones that round to 0.00 left out."""
    shown = [f"{cmd} {v:.2f}" for cmd, v in (calls or {}).items() if v >= 0.005]
    return ", ".join(shown) or "n/a"


def markdown_section(sz: dict[str, Any]) -> list[str]:
    meta, rows, rat, mod = sz["meta"], sz["summary"], sz["ratios"], sz["model"]
    cfg, mach = meta["config"], meta.get("machine", {})
    nodes = _nodes(rows)
    lines: list[str] = []
    add = lines.append
    add("## Sizing: CPU per delivery and per publication, 1 to 3 nodes on one Redis")
    add("")
    add("Staywire only: what one fan-out delivery and one publication cost in CPU, with one, "
        "two and three nodes on the same Redis, and what one publication costs Redis as "
        "nodes and subscribers are added. These are the measured costs of the sizing model "
        "in [deployment.md](deployment.md#sizing-model-from-measured-costs). Its own command:")
    add("")
    add("```")
    add(meta["command"])
    add("```")
    add("")
    quick = " (**quick mode**: small numbers; not for comparison)" if meta.get("quick") else ""
    add(f"Run {meta['started']}, {meta['duration_s']:.0f} s{quick}. {cfg['rounds']} round(s) "
        "(the order of the node counts rotates each round), medians shown. Machine: "
        f"{mach.get('cpu') or 'unknown CPU'}, {mach.get('cores')} cores, "
        f"{mach.get('redis') or 'no redis-server'}. Load average (1, 5, 15 min) at the "
        f"start {meta.get('loadavg_at_start') or 'n/a'}, at the end "
        f"{meta.get('loadavg_at_end') or 'n/a'}: other work shared the machine, so read "
        "the CPU per unit, not the rates.")
    add("")
    add(f"**What {mach.get('cores')} cores can show.** With three nodes, redis-server and "
        "the load generator on two shared cores, adding a node cannot add throughput: "
        "they all take turns on the same cores. What it can show is whether a delivery "
        "or a publication costs more CPU when the work is split over more nodes (it should "
        "not, apart from each node's share of every publication). Nothing is pinned. "
        "Node CPU is the nodes' summed user + system time over the window, read from "
        "`/proc/PID/task/*/schedstat` (nanoseconds); `/proc/PID/stat` (10 ms ticks) is "
        "kept in the JSON as a check. Waiting for a core costs no CPU time, so crowding "
        "does not inflate these figures directly; its cache and scheduling effects can "
        "move them either way, and so can batching (a node that waits longer writes more "
        "at a time).")
    add("")
    targets = []
    for workload in FANOUTS:
        fan = _levels(rows, workload)
        if not fan:
            continue
        k = fan[-1]
        head = [f"{workload} {n} vs 1 at {k}" for n in nodes if n > 1]
        got = [rat[h]["ratio"] for h in head if h in rat and rat[h]["ratio"] is not None]
        met = ("n/a" if len(got) < len(head) or not got else
               ("**met**" if max(got) <= GOAL else "**not met**"))
        measured = ", ".join(f"{rat[h]['nodes']} nodes {_r(rat[h]['ratio'])} (per round: "
                             + ", ".join(_r(x) for x in rat[h]["per_round"]) + ")"
                             for h in head if h in rat)
        targets.append(f"| node CPU per delivery ({LABELS[workload]}) with "
                       f"{' and '.join(str(n) for n in nodes if n > 1)} nodes within 10% of "
                       f"one node's, {k:,} subscribers | {measured or 'n/a'} | {met} |")
    if targets:
        add("| target | measured | |")
        add("|---|---|---|")
        lines.extend(targets)
        add("")
        add("### Node CPU per fan-out delivery")
        add("")
        add("Publications to one channel from a publisher on node A, as many at each "
            f"subscriber count as make {cfg['m']} x {cfg['k']:,} deliveries; the subscribers "
            "are spread evenly over the nodes, connected straight to them. *Back to back*: "
            "all sent at once (a node then writes several publications to a subscriber in "
            "one go: the cheap case); *one at a time*: each sent when every subscriber has "
            "the last one (one write per subscriber per publication: the dear case, and "
            "what a channel sees at a modest publication rate). µs per delivery = the "
            "nodes' summed CPU over the window (first send to last receipt) / deliveries; "
            "it holds the publisher's side too (its requests, the Lua publish) and each "
            "node's share of every publication (reading it from Redis, encoding it once). "
            "*Rate*: deliveries/s as measured here, on the shared cores.")
        add("")
        add("| publications | nodes | subscribers | node µs per delivery | min-max over "
            "rounds | vs 1 node | deliveries per core-second | rate (/s) | Redis CPU | "
            "generator CPU | other CPU (noise) | load avg |")
        add("|---" * 12 + "|")
        for workload in FANOUTS:
            for subs in _levels(rows, workload):
                base = _row(rows, workload, 1, subs).get("node_us")
                for n in nodes:
                    row = _row(rows, workload, n, subs)
                    if not row:
                        continue
                    us = row.get("node_us")
                    add(f"| {LABELS[workload]} | {n} | {subs:,} | {_f(us, 2)} | "
                        f"{_f(row['node_us_min'], 2)}-{_f(row['node_us_max'], 2)} | "
                        f"{_r(us / base if us and base else None)} | "
                        f"{_f(1e6 / us if us else None)} | {_f(row['rate'])} | "
                        f"{_f(row['redis_cpu_pct'], 0, '%')} | "
                        f"{_f(row['gen_cpu_pct'], 0, '%')} | "
                        f"{_f(row['other_cpu_pct'], 0, '%')} | {_f(row['loadavg_1m'], 2)} |")
        add("")
    pub = _levels(rows, "publish")
    if pub:
        add("### Redis CPU per publication, against nodes and subscribers")
        add("")
        add(f"{cfg['sizing_pubs']:,} acked publications from {cfg['sizing_publishers']} "
            f"connections spread over the nodes (one in flight each) to "
            f"{cfg['sizing_channels']} channels in turn; the subscribers (spread over the "
            "nodes, each on one of those channels) get every publication of their channel. "
            "Redis µs per publication = redis-server's `INFO cpu` (user + sys) over the "
            "window, less its idle rate measured just after, / publications; *PUBLISH per "
            "publication* and the commands per publication are exact (`INFO commandstats`). Node µs per publication: the "
            "nodes' summed CPU over the same window (with subscribers: their deliveries "
            "too). *Idle*: the nodes' summed CPU over "
            f"{cfg['sizing_idle_s']} s before the level, with the subscribers connected "
            "and nothing published (heartbeats, timers).")
        add("")
        add("| nodes | subscribers | Redis µs per publication | PUBLISH per publication | "
            "Redis commands per publication | node µs per publication | acked/s | idle "
            "nodes CPU | other CPU (noise) | load avg |")
        add("|---" * 10 + "|")
        for subs in pub:
            for n in nodes:
                row = _row(rows, "publish", n, subs)
                if not row:
                    continue
                add(f"| {n} | {subs:,} | {_f(row['redis_us'], 1)} | "
                    f"{_f(row['redis_publish_per_pub'], 2)} | "
                    f"{_calls(row.get('redis_calls_per_unit'))} | {_f(row['node_us'], 1)} | "
                    f"{_f(row['rate'])} | {_f(row['idle_node_cpu_pct'], 1, '%')} | "
                    f"{_f(row['other_cpu_pct'], 0, '%')} | {_f(row['loadavg_1m'], 2)} |")
        add("")
    if mod:
        add("### Costs the sizing model uses")
        add("")
        add("One core's worth of each unit, from the CPU per unit above (a core to itself, "
            "at the dearest of the node counts measured): the inputs of "
            "[the sizing model](deployment.md#sizing-model-from-measured-costs).")
        add("")
        add("| cost | measured | one core sustains |")
        add("|---|---|---|")
        for workload in FANOUTS:
            per_core = mod.get(f"{workload}_deliveries_per_core")
            if per_core is not None:
                add(f"| node CPU per fan-out delivery, {LABELS[workload]} "
                    f"({mod['fanout_subscribers']:,} subscribers, dearest of 1-{nodes[-1]} "
                    f"nodes) | {_f(1e6 / per_core, 2, ' µs')} | {_f(per_core)} "
                    "deliveries/s |")
        if mod.get("publications_per_core") is not None:
            add(f"| node CPU per acked publication (1 node, no subscribers) | "
                f"{_f(mod['publish_node_us'], 1, ' µs')} | "
                f"{_f(mod['publications_per_core'])} publications/s |")
        if mod.get("redis_publications_per_core") is not None:
            add(f"| Redis CPU per publication (dearest of 1-{nodes[-1]} nodes x "
                f"{', '.join(f'{s:,}' for s in pub)} subscribers) | "
                f"{_f(mod['redis_us_worst'], 1, ' µs')} | "
                f"{_f(mod['redis_publications_per_core'])} publications/s |")
        if mod.get("redis_us_per_node") is not None:
            add(f"| Redis CPU per publication as a line in the nodes subscribed to its "
                f"channel ({pub[-1]:,} subscribers) | {_f(mod['redis_us_fixed'], 1)} µs + "
                f"{_f(mod['redis_us_per_node'], 1)} µs per node | |")
        if mod.get("idle_us_per_conn_s") is not None:
            add(f"| node CPU per idle connection | "
                f"{_f(mod['idle_us_per_conn_s'], 2, ' µs/s')} | "
                f"{_f(1e6 / mod['idle_us_per_conn_s'] if mod['idle_us_per_conn_s'] else None)}"
                " connections |")
        add("")
    add("### Sizing method")
    add("")
    add(f"* Each node count runs with fresh nodes (`{meta.get('staywire_command')}` "
        "plus `--broker redis://127.0.0.1:PORT/0`) on one private redis-server (no "
        "persistence, flushed before each topology); for each subscriber count "
        f"({', '.join(f'{s:,}' for s in cfg['levels'])}) the same connections stay open "
        "and more are added.")
    add("* One load generator process (`staywire_bench.sizingload`, picows on uvloop) "
        "reads the CPU of the nodes from /proc, of redis-server from `INFO cpu`, and its "
        "own, just before and just after each window.")
    add("* Every process is stopped by its PID, also on errors and Ctrl-C; everything "
        "listens on 127.0.0.1; every wait is bounded.")
    add("")
    if sz.get("warnings"):
        add("Warnings from the sizing run:")
        add("")
        for w in sz["warnings"][:30]:
            add(f"* {w}")
        add("")
    add("Raw data: the `sizing` key of the results JSON (every round of every node count).")
    add("")
    return lines
