"""The ``proxy`` section: medians per setup, the ratios against the goal, the markdown."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from staywire_bench.stats import median

__all__ = ["GOAL", "markdown_section", "summarize_proxy"]

#: Issue 14: a node's rate with the connect/subscribe proxy on, against its rate without.
GOAL = 0.5
#: A process at this % of one core (or more) is the one that ran out of CPU.
SATURATED = 85.0
PROCS = ("node A", "backend", "generator")


def _phase_row(ws: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"rounds": len(ws), "rate": median([w.get("rate") for w in ws]),
                           "other_cpu_pct": median([w.get("other_cpu_pct") for w in ws])}
    rates = [w["rate"] for w in ws if w.get("rate") is not None]
    row["rate_min"], row["rate_max"] = (min(rates), max(rates)) if rates else (None, None)
    for proc in PROCS:
        row[f"{proc} us"] = median([(w.get("cpu_us_per_op") or {}).get(proc) for w in ws])
        row[f"{proc} pct"] = median([(w.get("cpu_pct") or {}).get(proc) for w in ws])
    return row


def _limit(row: dict[str, Any]) -> str:
    """The process that ran out of CPU (the highest, if at or above SATURATED)."""
    loads = [(row.get(f"{p} pct") or 0.0, p) for p in PROCS]
    pct, proc = max(loads)
    return proc if pct >= SATURATED else "none saturated"


#: The setups through a node with proxies, and the phases whose verdicts each one carries:
#: ``batched`` only batches subscribes (its connects are ``proxy``'s, measured again).
THROUGH = {"proxy": ("connect", "subscribe"), "batched": ("subscribe",)}
SETUPS = ("direct", "proxy", "batched", "backend", "backend batched")


def _alone(setup: str, phase: str) -> str:
    """The backend-alone row a proxied setup's phase is held against: the same calls."""
    return "backend batched" if (setup, phase) == ("batched", "subscribe") else "backend"


def summarize_proxy(meta: dict[str, Any], records: list[dict[str, Any]],
                    warnings: list[str]) -> dict[str, Any]:
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        metrics = rec["metrics"]
        for phase in ("connect", "subscribe"):
            if metrics.get(phase):
                by[(rec["setup"], phase)].append(metrics[phase])
        if metrics.get("subscribe_batched"):  # the backend alone, answering batches
            by[(f"{rec['setup']} batched", "subscribe")].append(metrics["subscribe_batched"])
    rows = {f"{setup} {phase}": _phase_row(ws) for (setup, phase), ws in by.items()}
    for (setup, phase), ws in by.items():
        rows[f"{setup} {phase}"]["batch_mean"] = median([w.get("batch_mean") for w in ws])
    for row in rows.values():
        row["limit"] = _limit(row)
    ratios: dict[str, Any] = {}
    verdicts: dict[str, Any] = {}
    for setup, phases in THROUGH.items():
        for phase in phases:
            _judge(setup, phase, rows, ratios, verdicts)
    return {"meta": meta, "summary": rows, "ratios": ratios, "verdicts": verdicts,
            "warnings": warnings, "records": records}


def _judge(setup: str, phase: str, rows: dict[str, Any], ratios: dict[str, Any],
           verdicts: dict[str, Any]) -> None:
    """The ratios and verdicts of one proxied setup's phase against direct and alone."""
    direct, proxy = rows.get(f"direct {phase}"), rows.get(f"{setup} {phase}")
    alone = rows.get(f"{_alone(setup, phase)} {phase}")
    key, name = f"{setup}_{phase}", f"{setup} {phase}"
    if direct and proxy and direct["rate"] and proxy["rate"] is not None:
        ratio = proxy["rate"] / direct["rate"]
        ratios[f"{key}_rate_vs_direct"] = ratio
        verdicts[f"{name} rate ≥ {GOAL:.0%} of direct (measured, all on 2 cores)"] = (
            ratio >= GOAL)
    if direct and proxy and direct["node A us"] and proxy["node A us"]:
        # What the node itself can do with a core of its own: one operation per its CPU
        # cost. On 2 cores the measured rates also share the cores with the backend and
        # the generator, which a deployment gives machines of their own.
        capacity = direct["node A us"] / proxy["node A us"]
        ratios[f"{key}_node_capacity_vs_direct"] = capacity
        ratios[f"{key}_node_capacity_direct"] = 1e6 / direct["node A us"]
        ratios[f"{key}_node_capacity"] = 1e6 / proxy["node A us"]
        verdicts[f"{name}: the node's own capacity with the proxy ≥ {GOAL:.0%} of "
                 "without"] = capacity >= GOAL
    if direct and proxy and direct["node A us"] is not None and proxy["node A us"] is not None:
        added = proxy["node A us"] - direct["node A us"]
        ratios[f"{key}_node_added_us"] = added
        if alone and alone["backend us"] is not None:
            ratios[f"{key}_backend_alone_us"] = alone["backend us"]
            ratios[f"{key}_node_added_vs_backend"] = (added / alone["backend us"]
                                                      if alone["backend us"] else None)
            # The goal is per backend *request*: batched, one request carries many
            # subscribes, and the two setups batch differently (the node sends what waits
            # together, the backend-alone run half the subscribes in flight), so each side's
            # cost per subscribe is scaled by its own mean batch to a cost per request.
            per_node, per_backend = proxy.get("batch_mean"), alone.get("batch_mean")
            if per_node and per_backend:
                ratios[f"{key}_node_added_per_request_us"] = added * per_node
                ratios[f"{key}_backend_alone_per_request_us"] = (
                    alone["backend us"] * per_backend)
                verdicts[f"{name}: node's added CPU per backend request ≤ the backend's own "
                         "cost per request"] = (added * per_node
                                                <= alone["backend us"] * per_backend)
            else:
                verdicts[f"{name}: node's added CPU ≤ the backend's own cost per {phase}"] = (
                    added <= alone["backend us"])
    if proxy and alone and alone["rate"]:
        ratios[f"{key}_rate_vs_backend_alone"] = proxy["rate"] / alone["rate"]
    if proxy and proxy["node A us"] and proxy["backend us"]:
        # Which side bounds the rate when each has a core to itself (a deployment): the
        # one with the higher CPU cost per operation. Measured CPU, so it holds on a
        # shared machine where no process reaches the saturation mark.
        ratios[f"{key}_cost_limit"] = ("node" if proxy["node A us"] >= proxy["backend us"]
                                       else "backend")


def _f(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def markdown_section(px: dict[str, Any]) -> list[str]:
    # From the records, so that a page rewritten from a results file (--from-json) says
    # what this version of the report computes.
    px = summarize_proxy(px["meta"], px["records"], px["warnings"])
    meta, rows, ratios, verdicts = px["meta"], px["summary"], px["ratios"], px["verdicts"]
    cfg, mach, place = meta["config"], meta.get("machine", {}), meta.get("placement", {})
    lines: list[str] = []
    add = lines.append
    add("## Proxies: connect and subscribe through the application's backend")
    add("")
    add("Staywire only: the connection rate and the subscribe rate of one node (memory broker) "
        "without proxies (`direct`), with the connect and subscribe proxies calling a FastAPI "
        "backend (docs/proxy.md, docs/fastapi.md) one request per call (`proxy`) and with "
        f"`proxy_subscribe_batch = {meta.get('batch', 64)}` (`batched`: the subscribes that "
        "wait together go as one request, docs/proxy.md, *Batches*), and the same calls "
        "posted to that backend alone, one request each (`backend`) and in batches of "
        "half the subscribes in flight over two connections, as a batching node sends "
        "them (`backend batched`). Its own command:")
    add("")
    add("```")
    add(meta["command"])
    add("```")
    add("")
    quick = " (**quick mode**: small numbers; not for comparison)" if meta.get("quick") else ""
    add(f"Run {meta['started']}, {meta['duration_s']:.0f} s{quick}. {cfg['rounds']} round(s) "
        f"(the order of the setups rotates each round), medians shown; K = {cfg['k']:,} "
        f"connections, {cfg['concurrency']} handshakes (then subscribes) in flight, below the "
        f"node's `proxy_max_concurrency` (64). Backend: {meta['backend']}. Machine: "
        f"{mach.get('cpu') or 'unknown CPU'}, {mach.get('cores')} cores. Placement: node on "
        f"core {place.get('node core')}, backend on core {place.get('backend core')}, the "
        "load generator not pinned (no third core): each process's CPU is measured, in µs per "
        "operation and in % of one core; a process at 85% or more is the limit.")
    add("")
    add("| setup | phase | rate (/s) | per batch | node µs/op | backend µs/op | "
        "generator µs/op | node % | backend % | generator % | limit |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for setup in SETUPS:
        for phase in ("connect", "subscribe"):
            row = rows.get(f"{setup} {phase}")
            if not row:
                continue
            add(f"| {setup} | {phase} | {_f(row['rate'])} | "
                f"{_f(row.get('batch_mean'), '{:.1f}')} | {_f(row['node A us'])} | "
                f"{_f(row['backend us'])} | {_f(row['generator us'])} | "
                f"{_f(row['node A pct'])} | {_f(row['backend pct'])} | "
                f"{_f(row['generator pct'])} | {row['limit']} |")
    add("")
    add("µs/op are per connect or per subscribe, also in batches; *per batch* is the mean "
        "number of subscribes per request (the node's `staywire_proxy_batched_total` over "
        "`staywire_proxy_batches_total`).")
    add("")
    for setup, phases in THROUGH.items():
        for phase in phases:
            key = f"{setup}_{phase}"
            r = ratios.get(f"{key}_rate_vs_direct")
            added = ratios.get(f"{key}_node_added_us")
            alone = ratios.get(f"{key}_backend_alone_us")
            cap = ratios.get(f"{key}_node_capacity_vs_direct")
            row = rows.get(f"{setup} {phase}") or {}
            add(f"* **{setup} {phase}**: {_f(r, '{:.0%}')} of the direct rate as measured "
                f"here, limit: {row.get('limit', 'n/a')}; the proxy adds {_f(added)} µs of "
                f"node CPU per {phase}, against {_f(alone)} µs of backend CPU per {phase} when "
                f"the backend is called alone ({_alone(setup, phase)}). The node's own "
                f"capacity (one {phase} per its CPU µs, a core to itself): "
                f"{_f(ratios.get(f'{key}_node_capacity_direct'))}/s without the proxy, "
                f"{_f(ratios.get(f'{key}_node_capacity'))}/s with it ({_f(cap, '{:.0%}')}). "
                f"By CPU per {phase} in this setup (node {_f(row.get('node A us'))} µs, "
                f"backend {_f(row.get('backend us'))} µs), the limit with a core each: "
                f"**{ratios.get(f'{key}_cost_limit', 'n/a')}**.")
            node_req = ratios.get(f"{key}_node_added_per_request_us")
            if node_req is not None:
                lines[-1] += (
                    f" Per backend request (each side's µs per {phase} times its mean batch): "
                    f"the node adds {_f(node_req)} µs, the backend alone spends "
                    f"{_f(ratios.get(f'{key}_backend_alone_per_request_us'))} µs.")
    add("")
    add("On 2 cores the node, the backend and the load generator share the machine: the "
        "measured rate with the proxy is bounded by their summed CPU per operation, where a "
        "deployment gives the backend machines of its own. Hence both figures: the measured "
        "rate, and the node's capacity from its own CPU cost.")
    add("")
    for name, ok in verdicts.items():
        add(f"* {'✅' if ok else '❌'} {name}")
    if px.get("warnings"):
        add("")
        add("Warnings of this run:")
        add("")
        for w in px["warnings"]:
            add(f"* {w}")
    add("")
    return lines
