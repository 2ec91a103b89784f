"""Medians, ratios, targets, and the three outputs: JSON, markdown, PNG chart."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staywire_bench.profiles import summarize_profile
from staywire_bench.findings import FINDINGS
from staywire_bench.gc_section import GC_SECTION
from staywire_bench.method import METHOD
from staywire_bench.request_path import REQUEST_PATH
from staywire_bench.redis_goals import redis_goals, redis_goals_markdown
from staywire_bench.stats import median

__all__ = ["METRICS", "summarize", "summarize_profile", "write_outputs"]

REFERENCE = "node-ws"
SUBJECT = "staywire"
FLOOR = "picows"


@dataclass(frozen=True)
class Metric:
    key: str
    workload: str
    field: str
    label: str
    unit: str
    better: str  # "up" or "down"
    digits: int = 0


METRICS = [
    Metric("echo1_rate", "echo1", "rate", "Echo, 1 conn", "round trips/s", "up"),
    Metric("echo1_p50", "echo1", "p50_us", "Echo, 1 conn p50", "µs", "down", 1),
    Metric("echo1_p99", "echo1", "p99_us", "Echo, 1 conn p99", "µs", "down", 1),
    Metric("echo100_rate", "echo100", "rate", "Echo, 100 conns", "messages/s", "up"),
    Metric("echo100_server_us", "echo100", "server_us_per_msg", "Echo, 100 conns, server CPU",
           "µs/message", "down", 1),
    Metric("echo100_p99", "echo100", "p99_us", "Echo, 100 conns p99", "µs", "down"),
    Metric("publish_rate", "publish", "rate", "Publish, 100 conns", "acked publications/s",
           "up"),
    Metric("publish_server_us", "publish", "server_us_per_msg", "Publish, server CPU",
           "µs/publication", "down", 1),
    Metric("publish_p99", "publish", "p99_ms", "Publish ack p99", "ms", "down", 1),
    Metric("publish_redis_us", "publish", "redis_us_per_pub", "Redis CPU per publication, "
           "0 subscribers", "µs", "down", 1),
    Metric("fanout_rate", "fanout", "rate", "Fan-out", "deliveries/s", "up"),
    Metric("fanout_p50", "fanout", "p50_ms", "Fan-out p50", "ms", "down", 1),
    Metric("fanout_p99", "fanout", "p99_ms", "Fan-out p99", "ms", "down", 1),
    Metric("fanout_redis_publishes", "fanout", "redis_publish_per_pub", "Redis PUBLISH "
           "commands per publication, K subscribers", "", "down", 2),
    Metric("binfanout_rate", "binfanout", "rate", "Binary fan-out, 1 KiB", "deliveries/s",
           "up"),
    Metric("binfanout_p99", "binfanout", "p99_ms", "Binary fan-out p99", "ms", "down", 1),
    Metric("idle_kib", "idle", "kib_per_conn", "Idle memory", "KiB/conn", "down", 2),
    Metric("connrate", "connrate", "rate", "Connection rate", "handshakes/s", "up"),
    Metric("storm_s", "storm", "seconds", "Reconnect storm", "s until all resubscribed",
           "down", 2),
    Metric("storm_peak", "storm", "peak_hs_per_s", "Storm peak", "handshakes/s", "up"),
]
_BY_KEY = {m.key: m for m in METRICS}
_WORKLOAD_NAMES = {"fanout": "fan-out", "echo100": "echo over 100 connections",
                   "publish": "publish from 100 connections"}


# ---------------------------------------------------------------------- summary


def summarize(meta: dict[str, Any], servers: dict[str, Any], records: list[dict[str, Any]],
              warnings: list[str], profiles: dict[str, Any] | None = None) -> dict[str, Any]:
    per_round: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    gen_cpu: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    saturated: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        m = rec["metrics"]
        for metric in METRICS:
            if metric.workload == rec["workload"]:
                value = m.get(metric.field)
                if (metric.workload in ("fanout", "binfanout", "storm", "publish")
                        and m.get("complete") is False):
                    value = None  # an incomplete run has no valid figure
                per_round[rec["server"]][metric.key].append(value)
        if m.get("gen_cpu_pct") is not None:
            gen_cpu[rec["server"]][rec["workload"]].append(m["gen_cpu_pct"])
        if m.get("generator_saturated"):
            saturated[rec["server"]].add(rec["workload"])
    summary: dict[str, dict[str, float | None]] = {}
    for server in servers:
        summary[server] = {m.key: median(per_round[server].get(m.key, [])) for m in METRICS}
    ratios: dict[str, dict[str, float | None]] = {}
    ref = summary.get(REFERENCE)
    for server in servers:
        ratios[server] = {}
        for metric in METRICS:
            value = summary[server].get(metric.key)
            base = ref.get(metric.key) if ref else None
            ratios[server][metric.key] = (value / base if value is not None and base
                                          else None)
    results = {
        "meta": meta,
        "servers": servers,
        "metrics": [m.__dict__ for m in METRICS],
        "records": records,
        "per_round": {s: dict(v) for s, v in per_round.items()},
        "summary": summary,
        "ratios_vs_reference": ratios,
        "generator_cpu_pct": {s: {w: median(v) for w, v in ws.items()}
                              for s, ws in gen_cpu.items()},
        "generator_saturated": {s: sorted(v) for s, v in saturated.items()},
        "targets": targets(summary),
        "issue2": issue2(summary),
        "redis_goals": redis_goals(summary),
        "warnings": warnings,
        "profiles": profiles or {},
    }
    return results


def targets(summary: dict[str, dict[str, float | None]]) -> list[dict[str, Any]]:
    sw = summary.get(SUBJECT, {})
    ref = summary.get(REFERENCE, {})
    out = []

    def ratio(key: str) -> float | None:
        a, b = sw.get(key), ref.get(key)
        return a / b if a is not None and b else None

    r = ratio("fanout_rate")
    p99, ref_p99 = sw.get("fanout_p99"), ref.get("fanout_p99")
    out.append({
        "target": "fan-out deliveries/s >= 5x Node ws, with p99 below Node ws's",
        "measured": (f"{_fmt_ratio(r)} Node ws; p99 {_fmt(p99, 1)} ms vs {_fmt(ref_p99, 1)} ms"
                     if r is not None else "n/a"),
        "met": (None if r is None or p99 is None or ref_p99 is None
                else bool(r >= 5.0 and p99 < ref_p99)),
    })
    r = ratio("echo100_rate")
    out.append({
        "target": "echo over 100 connections >= 1.3x Node ws",
        "measured": f"{_fmt_ratio(r)} Node ws" if r is not None else "n/a",
        "met": None if r is None else bool(r >= 1.3),
    })
    kib = sw.get("idle_kib")
    out.append({
        "target": "idle memory <= 10 KiB per connection",
        "measured": f"{_fmt(kib, 2)} KiB" if kib is not None else "n/a",
        "met": None if kib is None else bool(kib <= 10.0),
    })
    return out


def issue2(summary: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    sw = summary.get(SUBJECT, {})
    floor = summary.get(FLOOR, {})
    out: dict[str, Any] = {}
    for key in ("fanout_rate", "fanout_p99", "idle_kib"):
        a, b = sw.get(key), floor.get(key)
        out[key] = {"staywire": a, "picows": b, "ratio": a / b if a is not None and b else None}
    return out


# ---------------------------------------------------------------------- formatting


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**met**" if flag else "**not met**")


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    cfg = meta["config"]
    servers: dict[str, Any] = results["servers"]
    summary = results["summary"]
    ratios = results["ratios_vs_reference"]
    saturated = results.get("generator_saturated", {})
    mach = meta["machine"]
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add("<!-- Generated by `staywire bench` (bench/src/staywire_bench/report.py); edit the "
        "generator, not this file. -->")
    add("")
    add("Staywire against other WebSocket servers, all driven by the same load generator, "
        "on one machine. Machines are noisy: read the **ratios** (against Node `ws`), not "
        "the absolute numbers.")
    add("")
    add("```")
    add(meta["command"])
    add("```")
    add("")
    if results.get("scaleout"):
        add("Scale-out (two Staywire nodes on one Redis behind nginx) is measured separately, "
            "with its own command: [its section](#scale-out-two-nodes-on-one-redis-behind-nginx)"
            " is at the end of this page.")
        add("")
    if results.get("sizing"):
        add("The CPU per delivery and per publication with 1 to 3 nodes on one Redis, the "
            "costs of the sizing model in deployment.md, has its own command too: "
            "[its section](#sizing-cpu-per-delivery-and-per-publication-1-to-3-nodes-on-one-"
            "redis).")
        add("")
    quick = " (**quick mode**: small numbers, one round; not for comparison)" \
        if meta.get("quick") else ""
    add(f"Run {meta['started']}, {meta['duration_s']:.0f} s{quick}. "
        f"{cfg['rounds']} round(s), medians shown; K = {cfg['k']:,} subscribers / idle "
        f"connections / storm clients, M = {cfg['m']} publications; echo "
        f"{cfg['echo_duration']} s after {cfg['warmup']} s warm-up.")
    add("")
    add(f"Machine: {mach.get('cpu') or 'unknown CPU'}, {mach.get('cores')} cores, Linux "
        f"{mach.get('kernel')}, Python {mach.get('python')}, Node {mach.get('node') or 'n/a'}"
        f", {mach.get('redis') or 'no redis-server'}. Server pinned to core "
        f"{meta['pinned']['server_core']}, load generator to core "
        f"{meta['pinned']['generator_core']}.")
    add("")
    pk = mach.get("packages", {})
    add("Versions: " + ", ".join(f"{k} {v}" for k, v in pk.items())
        + ", Node ws 8.23.0, Node socket.io 4.8.4.")
    add("")

    # Targets
    add("## Targets")
    add("")
    add("| target | measured (Staywire, memory broker) | |")
    add("|---|---|---|")
    for t in results["targets"]:
        add(f"| {t['target']} | {t['measured']} | {_met(t['met'])} |")
    add("")

    # Results table
    shown = [m for m in METRICS if any(summary.get(s, {}).get(m.key) is not None
                                       for s in servers)]
    add("## Results (medians)")
    add("")
    add("Each cell: the median over the rounds, and in parentheses the ratio to Node `ws` "
        "(for ↑ metrics above 1 is better, for ↓ metrics below 1 is better). † marks a "
        "figure where the load generator saturated its core in at least one round: that "
        "figure is a floor, the server may do better.")
    add("")
    cols = [f"{m.label} ({m.unit}) {'↑' if m.better == 'up' else '↓'}" for m in shown]
    add("| server | " + " | ".join(cols) + " |")
    add("|---|" + "---|" * len(shown))
    for server, info in servers.items():
        cells = []
        for m in shown:
            value = summary.get(server, {}).get(m.key)
            ratio = ratios.get(server, {}).get(m.key)
            cell = _fmt(value, m.digits)
            if ratio is not None and server != REFERENCE:
                cell += f" ({_fmt_ratio(ratio)})"
            if m.workload in saturated.get(server, []):
                cell += " †"
            cells.append(cell)
        add(f"| {info['label']} | " + " | ".join(cells) + " |")
    add("")
    add("![benchmark chart](bench-chart.png)")
    add("")
    lines.extend(redis_goals_markdown(results.get("redis_goals", []), cfg["k"]))

    # Issue 2
    i2 = results.get("issue2", {})
    if i2:
        add("## Staywire against the bare picows server")
        add("")
        add("The cost of Staywire's protocol (envelopes, validation, offsets, history, "
            "sessions) over the transport it is built on.")
        add("")
        add("| | Staywire | bare picows | Staywire / picows |")
        add("|---|---|---|---|")
        labels = {"fanout_rate": ("Fan-out deliveries/s", 0),
                  "fanout_p99": ("Fan-out p99 (ms)", 1),
                  "idle_kib": ("KiB per idle connection", 2)}
        for key, (label, digits) in labels.items():
            row = i2.get(key, {})
            add(f"| {label} | {_fmt(row.get('staywire'), digits)} | "
                f"{_fmt(row.get('picows'), digits)} | {_fmt_ratio(row.get('ratio'))} |")
        add("")

    # Generator CPU
    gcpu = results.get("generator_cpu_pct", {})
    if gcpu:
        add("## Load generator CPU")
        add("")
        add("Median CPU use of the load generator's core during each measured window "
            "(100% = one core; over 90% is flagged as saturated).")
        add("")
        wl = ["echo1", "echo100", "connrate", "fanout", "storm"]
        add("| server | " + " | ".join(wl) + " |")
        add("|---|" + "---|" * len(wl))
        for server, info in servers.items():
            row = gcpu.get(server, {})
            add(f"| {info['label']} | " + " | ".join(
                f"{_fmt(row.get(w))}%" if row.get(w) is not None else "n/a" for w in wl) + " |")
        add("")

    other: defaultdict[str, defaultdict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results["records"]:
        v = r["metrics"].get("other_cpu_pct")
        if v is not None:
            other[r["server"]][r["workload"]].append(v)
    if other:
        add("Median CPU used on the two benchmark cores by other processes during the same "
            "windows (noise from a shared machine; 100% = one core):")
        add("")
        wl = ["echo1", "echo100", "connrate", "fanout"]
        add("| server | " + " | ".join(wl) + " |")
        add("|---|" + "---|" * len(wl))
        for server, info in servers.items():
            row = other.get(server, {})
            add(f"| {info['label']} | " + " | ".join(
                f"{_fmt(median(row.get(w, [])))}%" if row.get(w) else "n/a" for w in wl) + " |")
        add("")
        retried = meta.get("retried_noisy") or []
        if retried:
            add(f"{len(retried)} group(s) were run more than once because of noise "
                "(details in the JSON, `meta.retried_noisy`).")
            add("")

    fan = [r for r in results["records"] if r["workload"] == "fanout"]
    if fan:
        add("## Fan-out details")
        add("")
        add("Medians. *sub errors*: error replies to the K subscriptions before the fan-out "
            "(each retried on its connection after jittered 0.5 s x attempt, as the Staywire "
            "client does); *server CPU*: % of a core over the fan-out window.")
        add("")
        add("| server | deliveries/s | p50 (ms) | p99 (ms) | max (ms) | subscribe (s) | "
            "sub errors | server CPU |")
        add("|---|---|---|---|---|---|---|---|")
        for server, info in servers.items():
            rows = [r["metrics"] for r in fan if r["server"] == server and r["metrics"].get(
                "complete")]
            if not rows:
                continue
            add(f"| {info['label']} | {_fmt(median([r.get('rate') for r in rows]))} | "
                f"{_fmt(median([r.get('p50_ms') for r in rows]), 1)} | "
                f"{_fmt(median([r.get('p99_ms') for r in rows]), 1)} | "
                f"{_fmt(median([r.get('max_ms') for r in rows]), 1)} | "
                f"{_fmt(median([r.get('subscribe_s') for r in rows]), 2)} | "
                f"{_fmt(median([r.get('sub_errors') for r in rows]))} | "
                f"{_fmt(median([r.get('server_cpu_pct') for r in rows]))}% |")
        add("")

    # Storm details
    storm = [r for r in results["records"] if r["workload"] == "storm"]
    if storm:
        add("## Reconnect storm details")
        add("")
        add("Medians. *restart*: from the SIGKILL until the new process accepts TCP; "
            "*all back*: from the SIGKILL until every client has reconnected and "
            "resubscribed; *after ready*: the same from the moment the new process accepted.")
        add("")
        add("| server | restart (s) | all back (s) | after ready (s) | peak handshakes/s | "
            "failed connects | sub errors (retried) |")
        add("|---|---|---|---|---|---|---|")
        for server, info in servers.items():
            rows = [r["metrics"] for r in storm if r["server"] == server]
            if not rows:
                continue
            add(f"| {info['label']} | {_fmt(median([r.get('restart_s') for r in rows]), 2)} | "
                f"{_fmt(median([r.get('seconds') for r in rows if r.get('complete')]), 2)} | "
                f"{_fmt(median([r.get('after_ready_s') for r in rows if r.get('complete')]), 2)}"
                f" | {_fmt(median([r.get('peak_hs_per_s') for r in rows]))} | "
                f"{_fmt(median([r.get('failed_attempts') for r in rows]))} | "
                f"{_fmt(median([r.get('sub_errors') for r in rows]))} |")
        add("")

    # Profile
    for key, prof in (results.get("profiles") or {}).items():
        server, _, workload = key.partition(" ")
        workload = workload or "fanout"
        add(f"## Profile: {server}, {_WORKLOAD_NAMES.get(workload, workload)} (py-spy)")
        add("")
        add(f"{prof.get('samples', 0):,} samples of the server process during the {workload} "
            f"(`{prof.get('file', '')}`, py-spy raw format). Self time per function:")
        add("")
        add("| function | self % | total % |")
        add("|---|---|---|")
        inclusive = dict((f, p) for f, p in prof.get("top_total", []))
        for func, pct in prof.get("top_self", [])[:15]:
            add(f"| `{func}` | {pct:.1f} | {inclusive.get(func, pct):.1f} |")
        add("")

    # Servers
    add("## Servers")
    add("")
    add("| server | protocol | runtime | what |")
    add("|---|---|---|---|")
    for server, info in servers.items():
        add(f"| {info['label']} (`{server}`) | {info['protocol']} | {info['runtime']} | "
            f"{info['note']} |")
    for name, why in meta.get("skipped", {}).items():
        add(f"| `{name}` | | | skipped: {why} |")
    add("")
    add(FINDINGS)
    add(REQUEST_PATH)
    add(GC_SECTION)
    add(METHOD.format(staywire_cmd=meta.get("staywire_command", "staywire serve"), **cfg))
    warnings = results.get("warnings") or []
    if warnings:
        add("## Warnings from this run")
        add("")
        for w in warnings[:50]:
            add(f"* {w}")
        if len(warnings) > 50:
            add(f"* ... and {len(warnings) - 50} more (see the JSON)")
        add("")
    add("Raw data: `bench/results/latest.json` (every round of every workload, with the "
        "generator's and the server's CPU use).")
    add("")
    if results.get("scaleout"):
        from staywire_bench.scaleout_report import markdown_section

        lines += markdown_section(results["scaleout"])
    if results.get("proxy"):
        from staywire_bench.proxy_report import markdown_section as proxy_section

        lines += proxy_section(results["proxy"])
    if results.get("sizing"):
        from staywire_bench.sizing_markdown import markdown_section as sizing_section

        lines += sizing_section(results["sizing"])
    if results.get("transfer"):
        from staywire_bench.transfer_report import markdown_section as transfer_section

        lines += transfer_section(results["transfer"])
    return "\n".join(lines)


# ---------------------------------------------------------------------- chart


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    servers: dict[str, Any] = results["servers"]
    summary = results["summary"]
    keys = ["echo1_rate", "echo100_rate", "fanout_rate", "fanout_p99", "idle_kib", "connrate",
            "storm_s", "storm_peak"]
    keys = [k for k in keys if any(summary.get(s, {}).get(k) is not None for s in servers)]
    if not keys:
        keys = ["echo1_rate"]
    ncols = 4
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 0.45 * len(servers) * nrows
                                                    + 1.6 * nrows), squeeze=False)
    names = list(servers)
    labels = [servers[s]["label"] for s in names]
    for ax, key in zip(axes.flat, keys):
        metric = _BY_KEY[key]
        values = [summary.get(s, {}).get(key) for s in names]
        plotted = [v if v is not None else 0.0 for v in values]
        colors = ["#1f77b4" if s.startswith("staywire") else
                  "#d62728" if s == REFERENCE else "#9e9e9e" for s in names]
        ax.barh(range(len(names)), plotted, color=colors)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        arrow = "higher is better" if metric.better == "up" else "lower is better"
        ax.set_title(f"{metric.label}\n{metric.unit}, {arrow}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        top = max(plotted) if plotted else 0
        ref = summary.get(REFERENCE, {}).get(key)
        for i, (name, v) in enumerate(zip(names, values)):
            text = "n/a" if v is None else _fmt(v, metric.digits)
            if v is not None and ref and name != REFERENCE:
                text += f" ({_fmt_ratio(v / ref)})"
            ax.text((v or 0) + top * 0.01, i, text, va="center", fontsize=7)
        ax.set_xlim(0, top * 1.45 if top > 0 else 1)
        ax.xaxis.set_major_formatter(FuncFormatter(_short))
        ax.xaxis.set_major_locator(MaxNLocator(4))
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    meta = results["meta"]
    fig.suptitle(f"staywire bench: medians of {meta['config']['rounds']} round(s), "
                 f"K={meta['config']['k']}, M={meta['config']['m']} "
                 f"(blue: Staywire, red: Node ws reference; ratio to Node ws in parentheses)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _short(value: float, _pos: int) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


# ---------------------------------------------------------------------- outputs


def write_outputs(results: dict[str, Any], cfg: Any, root: Path) -> None:
    json_path = _resolve(root, cfg.json_path)
    md_path = _resolve(root, cfg.markdown_path)
    png_path = _resolve(root, cfg.chart_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if "meta" not in results:  # a scale-out or proxy run with no peer results to keep
        from staywire_bench.scaleout_report import standalone_page

        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(standalone_page(results))
        return
    text = markdown(results)
    if png_path.parent != md_path.parent or png_path.name != "bench-chart.png":
        text = text.replace("](bench-chart.png)", f"]({_rel(png_path, md_path.parent)})")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text)
    try:
        chart(results, png_path)
    except ImportError as exc:  # pragma: no cover - matplotlib is in the bench extra
        results.setdefault("warnings", []).append(f"no chart: {exc}")


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def _rel(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)
