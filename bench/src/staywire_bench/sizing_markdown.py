"""The markdown of the ``sizing`` section (docs/benchmarks.md, and the terminal)."""

from __future__ import annotations

from typing import Any

from staywire_bench.sizing_report import (
    FANOUTS,
    GOAL,
    LABELS,
    PUBLISHES,
    levels,
    node_counts,
    row_of,
)

__all__ = ["markdown_section"]


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
    nodes = node_counts(rows)
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
        fan = levels(rows, workload)
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
            for subs in levels(rows, workload):
                base = row_of(rows, workload, 1, subs).get("node_us")
                for n in nodes:
                    row = row_of(rows, workload, n, subs)
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
    pub = levels(rows, "publish")
    if pub:
        add("### Redis CPU per publication, against nodes and subscribers")
        add("")
        add(f"Acked publications to {cfg['sizing_channels']} channels in turn; the "
            "subscribers (spread over the nodes, each on one of those channels) get every "
            f"publication of their channel. *Many in flight*: {cfg['sizing_pubs']:,} from "
            f"{cfg['sizing_publishers']} connections spread over the nodes, one in flight "
            "each, so that a node pipelines several to Redis in one write (the cheap case); "
            f"*one in flight*: {max(1, cfg['sizing_pubs'] // 4):,} from one connection on "
            "node A, each a round trip of its own (the dear case). Redis µs per publication "
            "= redis-server's `INFO cpu` (user + sys) over the window, less its idle rate "
            "measured just after, / publications; *PUBLISH per publication* and the "
            "commands per publication are exact (`INFO commandstats`). Node µs per "
            "publication: the nodes' summed CPU over the same window (with subscribers: "
            "their deliveries too). *Idle*: the nodes' summed CPU over "
            f"{cfg['sizing_idle_s']} s before the level, with the subscribers connected "
            "and nothing published (heartbeats, timers).")
        add("")
        add("| publications | nodes | subscribers | Redis µs per publication | PUBLISH per "
            "publication | Redis commands per publication | node µs per publication | "
            "acked/s | idle nodes CPU | other CPU (noise) | load avg |")
        add("|---" * 11 + "|")
        for workload in PUBLISHES:
            for subs in levels(rows, workload):
                for n in nodes:
                    r = row_of(rows, workload, n, subs)
                    if not r:
                        continue
                    add(f"| {LABELS[workload]} | {n} | {subs:,} | {_f(r['redis_us'], 1)} | "
                        f"{_f(r['redis_publish_per_pub'], 2)} | "
                        f"{_calls(r.get('redis_calls_per_unit'))} | {_f(r['node_us'], 1)} | "
                        f"{_f(r['rate'])} | {_f(r['idle_node_cpu_pct'], 1, '%')} | "
                        f"{_f(r['other_cpu_pct'], 0, '%')} | {_f(r['loadavg_1m'], 2)} |")
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
        span = f"dearest of 1-{nodes[-1]} nodes"
        for workload in FANOUTS:
            per_core = mod.get(f"{workload}_deliveries_per_core")
            if per_core is not None:
                add(f"| node CPU per fan-out delivery, {LABELS[workload]} "
                    f"({mod['fanout_subscribers']:,} subscribers, {span}) | "
                    f"{_f(1e6 / per_core, 2, ' µs')} | {_f(per_core)} deliveries/s |")
        for workload in PUBLISHES:
            small = mod.get(f"{workload}_small_delivery_us")
            if small is not None and small > 0:
                add(f"| node CPU per delivery, small fan-out (about "
                    f"{_f(mod[f'{workload}_small_per_node'], 1)} subscribers per node per "
                    f"publication, {LABELS[workload]}): the node µs per publication at "
                    f"{mod['small_subscribers']:,} subscribers less at none, per delivery; "
                    f"{span} | {_f(small, 2, ' µs')} | {_f(1e6 / small)} deliveries/s |")
        for workload in PUBLISHES:
            receive = mod.get(f"{workload}_receive_us")
            if receive is not None:
                add(f"| node CPU to receive a publication from Redis, per node with a "
                    f"subscriber on its channel, {LABELS[workload]}: the above less its "
                    "deliveries at the one-at-a-time cost, per node; range over 1-"
                    f"{nodes[-1]} nodes | {_f(mod[f'{workload}_receive_us_min'], 1)}-"
                    f"{_f(receive, 1)} µs | {_f(1e6 / receive if receive > 0 else None)} "
                    "publications/s |")
        for workload in PUBLISHES:
            if mod.get(f"{workload}_per_core") is not None:
                add(f"| node CPU per acked publication, {LABELS[workload]} (no "
                    f"subscribers, {span}) | {_f(mod[f'{workload}_node_us'], 1, ' µs')} | "
                    f"{_f(mod[f'{workload}_per_core'])} publications/s |")
        for workload in PUBLISHES:
            if mod.get(f"{workload}_redis_per_core") is not None:
                add(f"| Redis CPU per publication, {LABELS[workload]} ({span} x "
                    f"{', '.join(f'{s:,}' for s in pub)} subscribers) | "
                    f"{_f(mod[f'{workload}_redis_us_worst'], 1, ' µs')} | "
                    f"{_f(mod[f'{workload}_redis_per_core'])} publications/s |")
        for workload in PUBLISHES:
            if mod.get(f"{workload}_redis_us_per_node") is not None:
                add(f"| Redis CPU per publication, {LABELS[workload]}, as a line in the "
                    f"nodes subscribed to its channel ({pub[-1]:,} subscribers) | "
                    f"{_f(mod[f'{workload}_redis_us_fixed'], 1)} µs + "
                    f"{_f(mod[f'{workload}_redis_us_per_node'], 1)} µs per node | |")
        if mod.get("connections_per_gib") is not None:
            add(f"| node resident memory per connection subscribed to 2 channels (the "
                f"connections added to reach {mod['fanout_subscribers']:,}, {span}) | "
                f"{_f(mod['rss_kib_per_conn'], 2, ' KiB')} | "
                f"{_f(mod['connections_per_gib'])} connections per GiB |")
        if mod.get("node_base_rss_mib") is not None:
            add(f"| a node's resident memory with no subscriber ({span}) | "
                f"{_f(mod['node_base_rss_mib'], 1, ' MiB')} | |")
        if mod.get("idle_us_per_conn_s") is not None:
            add(f"| node CPU per idle connection ({mod['fanout_subscribers']:,} connected, "
                f"{nodes[-1]} nodes) | {_f(mod['idle_us_per_conn_s'], 2, ' µs/s')} | "
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
