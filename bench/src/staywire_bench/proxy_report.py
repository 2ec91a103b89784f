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


def summarize_proxy(meta: dict[str, Any], records: list[dict[str, Any]],
                    warnings: list[str]) -> dict[str, Any]:
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        for phase in ("connect", "subscribe"):
            if rec["metrics"].get(phase):
                by[(rec["setup"], phase)].append(rec["metrics"][phase])
    rows = {f"{setup} {phase}": _phase_row(ws) for (setup, phase), ws in by.items()}
    for row in rows.values():
        row["limit"] = _limit(row)
    ratios: dict[str, Any] = {}
    verdicts: dict[str, Any] = {}
    for phase in ("connect", "subscribe"):
        direct, proxy = rows.get(f"direct {phase}"), rows.get(f"proxy {phase}")
        alone = rows.get(f"backend {phase}")
        if direct and proxy and direct["rate"] and proxy["rate"] is not None:
            ratio = proxy["rate"] / direct["rate"]
            ratios[f"{phase}_rate_proxy_vs_direct"] = ratio
            verdicts[f"{phase} rate ≥ {GOAL:.0%} of direct (measured, all on 2 cores)"] = (
                ratio >= GOAL)
        if direct and proxy and direct["node A us"] and proxy["node A us"]:
            # What the node itself can do with a core of its own: one operation per its CPU
            # cost. On 2 cores the measured rates also share the cores with the backend and
            # the generator, which a deployment gives machines of their own.
            capacity = direct["node A us"] / proxy["node A us"]
            ratios[f"{phase}_node_capacity_proxy_vs_direct"] = capacity
            ratios[f"{phase}_node_capacity_direct"] = 1e6 / direct["node A us"]
            ratios[f"{phase}_node_capacity_proxy"] = 1e6 / proxy["node A us"]
            verdicts[f"{phase}: the node's own capacity with the proxy ≥ {GOAL:.0%} of "
                     "without"] = capacity >= GOAL
        if direct and proxy and direct["node A us"] is not None and proxy["node A us"] is not None:
            added = proxy["node A us"] - direct["node A us"]
            ratios[f"{phase}_node_added_us"] = added
            if alone and alone["backend us"] is not None:
                ratios[f"{phase}_backend_alone_us"] = alone["backend us"]
                ratios[f"{phase}_node_added_vs_backend"] = (added / alone["backend us"]
                                                            if alone["backend us"] else None)
                verdicts[f"{phase}: node's added CPU ≤ the backend's own cost per call"] = (
                    added <= alone["backend us"])
        if proxy and alone and alone["rate"]:
            ratios[f"{phase}_rate_proxy_vs_backend_alone"] = proxy["rate"] / alone["rate"]
    return {"meta": meta, "summary": rows, "ratios": ratios, "verdicts": verdicts,
            "warnings": warnings, "records": records}


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
        "without proxies, with the connect and subscribe proxies calling a FastAPI backend "
        "(docs/proxy.md, docs/fastapi.md), and the same calls posted to that backend alone. "
        "Its own command:")
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
    add("| setup | phase | rate (/s) | node µs/op | backend µs/op | generator µs/op | "
        "node % | backend % | generator % | limit |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for setup in ("direct", "proxy", "backend"):
        for phase in ("connect", "subscribe"):
            row = rows.get(f"{setup} {phase}")
            if not row:
                continue
            add(f"| {setup} | {phase} | {_f(row['rate'])} | {_f(row['node A us'])} | "
                f"{_f(row['backend us'])} | {_f(row['generator us'])} | "
                f"{_f(row['node A pct'])} | {_f(row['backend pct'])} | "
                f"{_f(row['generator pct'])} | {row['limit']} |")
    add("")
    for phase in ("connect", "subscribe"):
        r = ratios.get(f"{phase}_rate_proxy_vs_direct")
        added = ratios.get(f"{phase}_node_added_us")
        alone = ratios.get(f"{phase}_backend_alone_us")
        cap = ratios.get(f"{phase}_node_capacity_proxy_vs_direct")
        add(f"* **{phase}**: with the proxy, {_f(r, '{:.0%}')} of the direct rate as measured "
            f"here; the proxy adds {_f(added)} µs of node CPU per {phase}, against "
            f"{_f(alone)} µs of backend CPU per call when the backend is called alone. The "
            f"node's own capacity (one {phase} per its CPU µs, a core to itself): "
            f"{_f(ratios.get(f'{phase}_node_capacity_direct'))}/s without the proxy, "
            f"{_f(ratios.get(f'{phase}_node_capacity_proxy'))}/s with it "
            f"({_f(cap, '{:.0%}')}).")
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
