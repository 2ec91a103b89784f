"""The ``scaleout`` section: medians per topology, the two-node ratio, the markdown."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from staywire_bench.stats import median

__all__ = ["GOAL", "markdown_section", "standalone_page", "summarize_scaleout"]

#: Issue 5: two nodes on one Redis should deliver at least this much of one node on Redis.
GOAL = 1.6
ONE, ONE_NGINX, TWO, MEMORY = "redis-1", "redis-1-nginx", "redis-2-nginx", "memory-1"


def _node_value(m: dict[str, Any], name: str, key: str) -> float | None:
    for node in m.get("nodes") or []:
        if node.get("name") == name:
            value = node.get(key)
            return None if value is None else float(value)
    return None


def _node_cpu_sum(m: dict[str, Any]) -> float | None:
    values = [n.get("cpu_pct") for n in m.get("nodes") or []]
    return sum(values) if values and None not in values else None


def summarize_scaleout(meta: dict[str, Any], records: list[dict[str, Any]],
                       warnings: list[str]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    by_topo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec["metrics"].get("complete"):
            by_topo[rec["topology"]].append(rec)
    for topo, recs in by_topo.items():
        ms = [r["metrics"] for r in recs]

        def med(key: str, ms: list[dict[str, Any]] = ms) -> float | None:
            return median([m.get(key) for m in ms])

        row: dict[str, Any] = {"rounds": len(ms)}
        for key in ("rate", "p50_ms", "p99_ms", "max_ms", "connect_rate", "subscribe_s",
                    "gen_cpu_pct", "nginx_cpu_pct", "redis_cpu_pct", "other_cpu_pct",
                    "machine_busy_pct", "interrupts_pct", "first_p50_ms", "first_p99_ms", "near_p50_ms",
                    "near_p99_ms", "near_max_ms", "near_first_p50_ms", "near_first_p99_ms",
                    "pacing_lag_p99_ms"):
            row[key] = med(key)
        rates = [m["rate"] for m in ms if m.get("rate") is not None]
        row["rate_min"], row["rate_max"] = (min(rates), max(rates)) if rates else (None, None)
        row["per_round"] = {str(r["round"] + 1): r["metrics"].get("rate") for r in recs}
        for name in ("A", "B"):
            row[f"cpu_{name}"] = median([_node_value(m, name, "cpu_pct") for m in ms])
            row[f"conns_{name}"] = median([_node_value(m, name, "connections") for m in ms])
            row[f"out_{name}"] = median([_node_value(m, name, "messages_out") for m in ms])
        node_cpu = median([_node_cpu_sum(m) for m in ms])
        row["node_cpu_pct"] = node_cpu
        # Deliveries per second of node CPU: flat from one node to two means the nodes
        # themselves scale, and what is missing from the ratio is the machine's cores.
        row["per_node_core"] = (row["rate"] / (node_cpu / 100.0)
                                if row.get("rate") and node_cpu else None)
        rows[topo] = row

    def ratio(a: str, b: str, key: str = "rate") -> float | None:
        x, y = rows.get(a, {}).get(key), rows.get(b, {}).get(key)
        return x / y if x is not None and y else None

    per_round: list[float] = []
    rounds: dict[int, dict[str, float]] = defaultdict(dict)
    for rec in records:
        if rec["metrics"].get("complete") and rec["topology"] in (ONE, TWO):
            rounds[rec["round"]][rec["topology"]] = rec["metrics"]["rate"]
    for pair in rounds.values():
        if ONE in pair and TWO in pair and pair[ONE]:
            per_round.append(pair[TWO] / pair[ONE])
    two = ratio(TWO, ONE)
    ratios = {
        "two_vs_one_redis": two,
        "two_vs_one_redis_per_round": per_round,
        "two_vs_one_redis_nginx": ratio(TWO, ONE_NGINX),
        "redis_vs_memory": ratio(ONE, MEMORY),
        "nginx_vs_direct": ratio(ONE_NGINX, ONE),
        "per_node_core_two_vs_one_nginx": ratio(TWO, ONE_NGINX, "per_node_core"),
    }
    two_row, one_row = rows.get(TWO, {}), rows.get(ONE, {})
    if (two_row.get("per_node_core") and one_row.get("per_node_core") and one_row.get("rate")
            and one_row.get("node_cpu_pct")):
        # Not a measurement: two nodes on cores of their own, each as busy as the single
        # node was, at the lower of the per-core rates measured with one node and with two,
        # against one node on Redis (at most 2x by construction).
        per_core = min(two_row["per_node_core"], one_row["per_node_core"])
        projected = 2 * per_core * one_row["node_cpu_pct"] / 100.0
        ratios["extrapolated_node_cpu_pct"] = one_row["node_cpu_pct"]
        ratios["extrapolated_ratio"] = projected / one_row["rate"]
        ratios["extrapolated_rate"] = projected
        # What the rest of the two-node topology would need at that rate, in cores, at the
        # CPU per delivery it used here.
        scale = projected / two_row["rate"] if two_row.get("rate") else None
        rest = [two_row.get(k) for k in ("nginx_cpu_pct", "gen_cpu_pct", "redis_cpu_pct",
                                         "interrupts_pct")]
        if scale is not None and None not in rest:
            ratios["extrapolated_cores"] = 2 + scale * sum(rest) / 100.0  # type: ignore[arg-type]
    target = {"target": f"fan-out with two nodes on one Redis (through nginx) >= {GOAL}x one "
                        "node on Redis",
              "measured": two, "met": None if two is None else bool(two >= GOAL)}
    return {"meta": meta, "records": records, "summary": rows, "ratios": ratios,
            "target": target, "warnings": warnings}


# ---------------------------------------------------------------------- markdown


def _f(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _subs(row: dict[str, Any], topo: str) -> str:
    a, b = row.get("conns_A"), row.get("conns_B")
    if a is None:
        return "n/a"
    a -= 1  # the publisher is on node A too
    return f"{a:,.0f}" if topo != TWO else f"{a:,.0f} / {_f(b)}"


def markdown_section(so: dict[str, Any]) -> list[str]:
    meta, rows, ratios = so["meta"], so["summary"], so["ratios"]
    cfg, topos = meta["config"], meta["topologies"]
    place = meta.get("placement", {})
    mach = meta.get("machine", {})
    lines: list[str] = []
    add = lines.append
    add("## Scale-out: two nodes on one Redis behind nginx")
    add("")
    add("Staywire only (not run against the peers): fan-out deliveries/s with one node on the "
        "memory broker, one node on Redis, and two nodes on the same Redis behind nginx "
        "(docs/deployment.md), then the publish-to-deliver latency across nodes. Measured "
        "separately from the peer table above, with its own command:")
    add("")
    add("```")
    add(meta["command"])
    add("```")
    add("")
    quick = " (**quick mode**: small numbers; not for comparison)" if meta.get("quick") else ""
    add(f"Run {meta['started']}, {meta['duration_s']:.0f} s{quick}. {cfg['rounds']} round(s) "
        f"(the order of the topologies rotates each round), medians shown; K = {cfg['k']:,} "
        f"subscribers, M = {cfg['m']} publications per fan-out. Machine: "
        f"{mach.get('cpu') or 'unknown CPU'}, {mach.get('cores')} cores, "
        f"{mach.get('redis') or 'no redis-server'}, nginx {meta.get('nginx') or 'n/a'}.")
    add("")
    cores = mach.get("cores") or 0
    a_core, b_core = place.get("node A core"), place.get("node B core")
    pinned = a_core is not None
    add("**Placement, and what 2 cores allow.** "
        + (f"Node A is pinned to core {a_core} and node B to core {b_core}; "
           if pinned else "Nothing is pinned (no taskset or fewer than 2 cores); ")
        + "the load generator, redis-server and nginx are not pinned and are reported with "
        "their CPU use (100% = one core). "
        + (f"This machine has {cores} cores, so with two server nodes there is no core left "
           "for the generator, nginx and Redis: they run on the nodes' cores and take CPU "
           "from them. The two-node ratio below is therefore what a second node adds on a "
           "machine that is already full, not what a second machine would add; "
           "*deliveries per node-core-second* (deliveries/s divided by the nodes' summed CPU) "
           "is the figure that tells whether the nodes themselves scale."
           if cores and cores <= 2 else
           "Check below whether the generator, nginx and Redis had cores of their own."))
    add("")
    t = so["target"]
    met = "n/a" if t["met"] is None else ("**met**" if t["met"] else "**not met**")
    per_round = ", ".join(_r(x) for x in ratios.get("two_vs_one_redis_per_round") or [])
    add("| target | measured | |")
    add("|---|---|---|")
    add(f"| {t['target']} | {_r(t['measured'])} (per round: {per_round or 'n/a'}) | {met} |")
    add("")
    add("### Fan-out")
    add("")
    add("Every subscriber gets every publication: deliveries/s = K x M / (last receipt - "
        "first send). The publisher is always connected straight to node A; the subscribers "
        "go to node A, or through nginx. *Subscribers*: where they landed, from each node's "
        "`/metrics`. CPU: % of one core over the fan-out window; *machine*: all cores, "
        "interrupt handling included (200% = both cores of a 2-core machine full), and in "
        "parentheses the busy time of processes that are not the benchmark's (noise).")
    add("")
    add("| topology | deliveries/s | min-max over rounds | vs 1 node on Redis | p50 (ms) | "
        "p99 (ms) | subscribers (A / B) | node A CPU | node B CPU | nginx CPU | Redis CPU | "
        "generator CPU | machine (other) | deliveries per node-core-second |")
    add("|---" * 14 + "|")
    for name in (MEMORY, ONE, ONE_NGINX, TWO):
        row = rows.get(name)
        if row is None:
            continue
        base = rows.get(ONE, {}).get("rate")
        vs = row["rate"] / base if base and row.get("rate") is not None else None
        add(f"| {topos[name]['label']} (`{name}`) | {_f(row['rate'])} | "
            f"{_f(row['rate_min'])}-{_f(row['rate_max'])} | {_r(vs)} | "
            f"{_f(row['p50_ms'], 1)} | {_f(row['p99_ms'], 1)} | {_subs(row, name)} | "
            f"{_f(row['cpu_A'], 0, '%')} | {_f(row['cpu_B'], 0, '%')} | "
            f"{_f(row['nginx_cpu_pct'], 0, '%')} | {_f(row['redis_cpu_pct'], 0, '%')} | "
            f"{_f(row['gen_cpu_pct'], 0, '%')} | {_f(row['machine_busy_pct'], 0, '%')} "
            f"({_f(row['other_cpu_pct'], 0, '%')}) | "
            f"{_f(row['per_node_core'])} |")
    add("")
    two, one_ng = rows.get(TWO), rows.get(ONE_NGINX)
    notes = []
    if ratios.get("two_vs_one_redis") is not None:
        notes.append(f"Two nodes deliver {_r(ratios['two_vs_one_redis'])} what one node on "
                     f"Redis delivers with the subscribers connected to it directly, and "
                     f"{_r(ratios.get('two_vs_one_redis_nginx'))} one node behind the same "
                     f"nginx (the proxy's cost, {_r(ratios.get('nginx_vs_direct'))} of direct "
                     "for one node, is in both).")
    if two is not None and two.get("machine_busy_pct") is not None:
        busy = two["machine_busy_pct"]
        notes.append(f"During the two-node fan-out the machine was busy {busy:.0f}% of "
                     f"{cores * 100}%: nodes {_f(two.get('node_cpu_pct'), 0, '%')}, nginx "
                     f"{_f(two.get('nginx_cpu_pct'), 0, '%')}, generator "
                     f"{_f(two.get('gen_cpu_pct'), 0, '%')}, Redis "
                     f"{_f(two.get('redis_cpu_pct'), 0, '%')}, interrupt handling of the "
                     f"loopback traffic charged to no process "
                     f"{_f(two.get('interrupts_pct'), 0, '%')} (process CPU time may include "
                     "some of it, so the parts can add up to more than the whole).")
    one = rows.get(ONE)
    if two and one and two.get("per_node_core") and one.get("per_node_core"):
        notes.append(f"Per second of node CPU, two nodes deliver "
                     f"{_f(two.get('per_node_core'))} (one node on Redis: "
                     f"{_f(one.get('per_node_core'))}"
                     + (f", behind nginx: {_f(one_ng.get('per_node_core'))}" if one_ng else "")
                     + ").")
    if ratios.get("extrapolated_ratio") is not None and two:
        cores_needed = ratios.get("extrapolated_cores")
        notes.append(f"*Extrapolation, not a measurement*: two nodes on cores of their own, "
                     f"each as busy as the single node on Redis was "
                     f"({_f(ratios.get('extrapolated_node_cpu_pct'), 0, '%')}), at the lower "
                     "of the two nodes' and the single node's per-core rates, would deliver "
                     "about "
                     f"{_f(ratios.get('extrapolated_rate'))}/s, "
                     f"{_r(ratios['extrapolated_ratio'])} one node on Redis, "
                     "provided the generator, nginx and Redis had cores of their own too"
                     + (f" (about {cores_needed:.1f} cores in all at the CPU per delivery "
                        "measured here)" if cores_needed else "")
                     + "; only a run on such a machine can confirm it.")
    if notes:
        add(" ".join(notes))
        add("")
    lat = rows.get("latency-2")
    if lat is not None:
        add("### Publish-to-deliver latency across nodes")
        add("")
        add(f"The publisher on node A, {cfg['lat_subs']:,} subscribers connected straight to "
            f"node B, and as a reference {cfg['lat_ref_subs']:,} on node A (the publisher's "
            "node: with the Redis broker its own publications also come back to it through "
            f"Redis pub/sub, so the two paths differ only in the node). {cfg['lat_messages']} "
            f"publications paced at {cfg['lat_rate']:g} per second (not a burst), the first "
            f"{cfg['lat_warmup']} not counted; latency = receipt - send time, one clock (the "
            "generator's), for every delivery. *First delivery*: per publication, the "
            "earliest subscriber of that node to get it: the path alone. The p50/p99 over "
            "all deliveries also hold the time a node takes to write one publication to all "
            "its subscribers and the time the single generator process takes to read all "
            f"{cfg['lat_subs'] + cfg['lat_ref_subs']:,} copies, one after the other: an upper "
            "bound for what one client sees.")
        add("")
        add("| path | p50 (ms) | p99 (ms) | max (ms) | first delivery p50 (ms) | "
            "first delivery p99 (ms) |")
        add("|---|---|---|---|---|---|")
        add(f"| node A -> Redis -> node B (cross-node) | {_f(lat['p50_ms'], 2)} | "
            f"{_f(lat['p99_ms'], 2)} | {_f(lat['max_ms'], 2)} | {_f(lat['first_p50_ms'], 2)} | "
            f"{_f(lat['first_p99_ms'], 2)} |")
        add(f"| node A -> Redis -> node A (reference) | {_f(lat['near_p50_ms'], 2)} | "
            f"{_f(lat['near_p99_ms'], 2)} | {_f(lat['near_max_ms'], 2)} | "
            f"{_f(lat['near_first_p50_ms'], 2)} | {_f(lat['near_first_p99_ms'], 2)} |")
        add("")
        add(f"Node A CPU {_f(lat['cpu_A'], 0, '%')}, node B CPU {_f(lat['cpu_B'], 0, '%')}, "
            f"Redis {_f(lat['redis_cpu_pct'], 0, '%')}, machine "
            f"{_f(lat['machine_busy_pct'], 0, '%')} of {cores * 100}%, generator "
            f"{_f(lat['gen_cpu_pct'], 0, '%')} over the paced window; p99 of the generator's "
            f"lag behind the pacing schedule: {_f(lat['pacing_lag_p99_ms'], 2)} ms (the "
            "generator is not pinned: its own scheduling delays are part of these figures).")
        add("")
    add("### Scale-out method")
    add("")
    add("* Each topology runs with fresh processes: the nodes "
        f"(`{meta.get('staywire_command', 'staywire serve')}`, plus "
        "`--broker redis://127.0.0.1:PORT/0` on Redis), one private redis-server (no "
        "persistence, flushed before each topology), and for the nginx topologies the "
        "configuration printed by `staywire nginx --backend 127.0.0.1:PA [--backend "
        "127.0.0.1:PB] --listen 127.0.0.1:PORT --runtime-dir DIR`, run as `nginx -c CONF -p "
        "DIR` (2 worker processes, round robin).")
    add("* One load generator process (`staywire_bench.scaleload`, picows on uvloop) opens "
        f"the {cfg['k']:,} subscribers ({cfg['concurrency']} handshakes in flight), "
        "subscribes them, then the publisher sends the publications back to back as in the "
        "peer fan-out. It reads the CPU time of every process (nodes, nginx master and "
        "workers, redis-server, itself) from `/proc` around the window, and each node's "
        "`/metrics` for connections and messages out.")
    add("* Every process is stopped by its PID (nginx: SIGTERM to the master; any worker "
        "left is killed by PID), also on errors and Ctrl-C; everything listens on "
        "127.0.0.1; every wait is bounded.")
    add("")
    if so.get("warnings"):
        add("Warnings from the scale-out run:")
        add("")
        for w in so["warnings"][:30]:
            add(f"* {w}")
        add("")
    add("Raw data: the `scaleout` key of the results JSON (every round of every topology).")
    add("")
    return lines


def standalone_page(results: dict[str, Any]) -> str:
    """The page when the results hold no peer benchmark yet, only the scale-out."""
    head = ["# Benchmarks", "",
            "<!-- Generated by `staywire bench` (bench/src/staywire_bench/report.py); edit the "
            "generator, not this file. -->", "",
            "No peer benchmark in this results file yet (`staywire bench` runs it).", ""]
    if results.get("scaleout"):
        head += markdown_section(results["scaleout"])
    if results.get("proxy"):
        from staywire_bench.proxy_report import markdown_section as proxy_section

        head += proxy_section(results["proxy"])
    if results.get("sizing"):
        from staywire_bench.sizing_markdown import markdown_section as sizing_section

        head += sizing_section(results["sizing"])
    return "\n".join(head)
