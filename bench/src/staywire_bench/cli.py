"""``staywire bench``: one command, one run, every server against the same load generator."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

__all__ = ["register"]


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def register(subparsers: Any) -> None:
    # Only the catalog: the harness is imported when the command runs, not by every
    # `staywire serve` that builds the parser.
    from staywire_bench.catalog import EXTRA_WORKLOADS
    from staywire_bench.catalog import SERVERS as ALL_SERVERS
    from staywire_bench.catalog import WORKLOADS as ALL_WORKLOADS

    p = subparsers.add_parser(
        "bench", help="benchmark Staywire against other WebSocket servers",
        description="Run Staywire and peer servers (bare picows, websockets, python-socketio, "
                    "Node ws, Node socket.io) against one load generator; write "
                    "bench/results/latest.json, docs/benchmarks.md and docs/bench-chart.png.")
    p.add_argument("--quick", action="store_true",
                   help="small numbers and one round (outputs go to bench/results/quick.*)")
    p.add_argument("--servers", type=_csv, metavar="A,B",
                   help=f"servers to run (default: all): {','.join(ALL_SERVERS)}")
    p.add_argument("--workloads", type=_csv, metavar="A,B",
                   help=f"workloads to run (default: all): {','.join(ALL_WORKLOADS)}; "
                        f"{','.join(EXTRA_WORKLOADS)} (Staywire only; scaleout: one node on "
                        "memory, one on Redis, two on Redis behind nginx; proxy: connect and "
                        "subscribe through a FastAPI backend; sizing: CPU per delivery and per "
                        "publication with 1 to 3 nodes on one Redis; transfer: one large "
                        "payload to 10 subscribers, beside a bare picows relay) run only "
                        "when named")
    p.add_argument("--rounds", type=int, help="rounds; medians are reported (default 3)")
    p.add_argument("-k", "--subscribers", dest="k", type=int,
                   help="fan-out subscribers = idle connections = storm clients (default 5000)")
    p.add_argument("-m", "--messages", dest="m", type=int,
                   help="fan-out publications (default 20)")
    p.add_argument("--echo-duration", type=float,
                   help="seconds measured per echo workload (default 1.5)")
    p.add_argument("--transfer-mib", type=float,
                   help="MiB of the transfer workload's payload (default 256, quick 16)")
    p.add_argument("--echo-conns", type=int, help="connections of the echo-100 workload")
    p.add_argument("--concurrency", type=int, help="handshakes in flight while opening")
    p.add_argument("--pad", type=int, help="padding bytes in each publication")
    p.add_argument("--backoff-base", type=float, help="storm reconnect backoff base (s)")
    p.add_argument("--retry-noisy", type=int, metavar="N",
                   help="run a group again (at most N times) when other processes were busy "
                        "on the benchmark cores (default 2)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="time budget of the run; noisy groups are rerun only within it "
                        "(default 480)")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--no-low-latency", action="store_true",
                   help="do not hold /dev/cpu_dma_latency at 0 during the run")
    p.add_argument("--no-progress", action="store_true", help="plain log lines, no progress bar")
    p.add_argument("--profile", action="store_true",
                   help="attach py-spy to the Python servers during echo100, publish and fanout")
    p.add_argument("--from-json", metavar="PATH",
                   help="run nothing: rewrite the markdown and the chart from a results JSON")
    p.add_argument("--json", dest="json_path", help="JSON output path")
    p.add_argument("--markdown", dest="markdown_path", help="markdown output path")
    p.add_argument("--chart", dest="chart_path", help="PNG chart output path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from staywire_bench.harness import BenchConfig, BenchError, run_bench
    from staywire_bench.report import write_outputs

    values: dict[str, Any] = {}
    if args.quick:
        values.update(BenchConfig.quick_defaults())
        values["quick"] = True
    for name in ("servers", "workloads", "rounds", "k", "m", "echo_duration", "echo_conns",
                 "concurrency", "pad", "backoff_base", "retry_noisy", "budget", "transfer_mib",
                 "json_path",
                 "markdown_path", "chart_path"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    values["pin"] = not args.no_pin
    values["progress"] = not args.no_progress
    values["profile"] = args.profile
    values["low_latency"] = not args.no_low_latency
    argv = sys.argv[1:]
    values["command"] = ("staywire " + shlex.join(argv) if argv[:1] == ["bench"]
                         else _command(args))
    for name in ("rounds", "k", "m", "echo_conns", "concurrency"):
        if name in values and values[name] < 1:
            print(f"staywire bench: --{name} must be >= 1", file=sys.stderr)
            return 2
    cfg = BenchConfig(**values)
    if args.from_json:
        return _rerender(args.from_json, cfg)
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every finally: all processes are stopped

    previous = signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        results = run_bench(cfg, write_outputs)
    except BenchError as exc:
        print(f"staywire bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("staywire bench: interrupted (every process it started was stopped)",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print_summary(results, cfg)
    return 0


def _rerender(path: str, cfg: Any) -> int:
    import json
    from pathlib import Path

    from staywire_bench.harness import find_root
    from staywire_bench.report import write_outputs

    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        print(f"staywire bench: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    root = find_root(cfg.root)
    if Path(path).resolve() == (root / cfg.json_path).resolve():
        cfg.json_path = str(Path(path).resolve())  # rewritten as it was read
    write_outputs(results, cfg, root)
    print(f"wrote {cfg.markdown_path} and {cfg.chart_path} from {path}")
    return 0


def _command(args: argparse.Namespace) -> str:
    parts = ["staywire", "bench"]
    if args.quick:
        parts.append("--quick")
    for flag, name in (("--servers", "servers"), ("--workloads", "workloads")):
        value = getattr(args, name)
        if value:
            parts += [flag, ",".join(value)]
    for flag, name in (("--rounds", "rounds"), ("-k", "k"), ("-m", "m")):
        value = getattr(args, name)
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _print_summary(results: dict[str, Any], cfg: Any) -> None:
    from staywire_bench.catalog import WORKLOADS

    if "scaleout" in cfg.workloads and results.get("scaleout"):
        _print_scaleout(results["scaleout"])
    if "sizing" in cfg.workloads and results.get("sizing"):
        from staywire_bench.sizing_markdown import markdown_section as sizing_section

        print("\n".join(sizing_section(results["sizing"])))
    if "transfer" in cfg.workloads and results.get("transfer"):
        from staywire_bench.transfer_report import markdown_section as transfer_section

        print("\n".join(transfer_section(results["transfer"])))
    if not any(w in WORKLOADS for w in cfg.workloads):
        print(f"wrote {cfg.json_path}, {cfg.markdown_path}, {cfg.chart_path}")
        return
    from staywire_bench.report import METRICS, _fmt, _fmt_ratio

    summary = results["summary"]
    ratios = results["ratios_vs_reference"]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        for server, row in summary.items():
            print(server, {k: v for k, v in row.items() if v is not None})
        return
    shown = [m for m in METRICS if m.key in ("echo1_rate", "echo100_rate", "echo100_server_us", "publish_rate",
                                                "publish_p99", "fanout_rate", "fanout_p99",
                                                "idle_kib", "connrate", "storm_s")]
    table = Table(title="staywire bench (medians; ratio vs Node ws)")
    table.add_column("server")
    for m in shown:
        table.add_column(f"{m.label}\n{m.unit}", justify="right")
    for server, info in results["servers"].items():
        cells = []
        for m in shown:
            v = summary.get(server, {}).get(m.key)
            r = ratios.get(server, {}).get(m.key)
            cells.append(_fmt(v, m.digits) + (f"\n{_fmt_ratio(r)}" if r is not None else ""))
        table.add_row(info["label"], *cells)
    console = Console()
    console.print(table)
    for t in results["targets"]:
        met = {True: "[green]met", False: "[red]not met", None: "n/a"}[t["met"]]
        console.print(f"target: {t['target']}: {t['measured']} -> {met}")
    for g in results.get("redis_goals", []):
        met = {True: "[green]met", False: "[red]not met", None: "n/a"}[g["met"]]
        ratio = "n/a" if g["ratio"] is None else f"{g['ratio']:.2f}"
        console.print(f"redis/memory: {g['goal']}: memory {g['memory']}, Redis {g['redis']},"
                      f" ratio {ratio} -> {met}")
    for w in results["warnings"][:20]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"wrote {cfg.json_path}, {cfg.markdown_path}, {cfg.chart_path}")


def _print_scaleout(so: dict[str, Any]) -> None:
    rows = so["summary"]
    print("scaleout (medians):")
    for name, row in rows.items():
        if "p50_ms" in row and row.get("first_p50_ms") is not None:
            print(f"  {name:14} cross-node p50 {row['p50_ms']:.2f} ms, p99 "
                  f"{row['p99_ms']:.2f} ms; same node p50 {row['near_p50_ms']:.2f} ms")
        elif row.get("rate") is not None:
            print(f"  {name:14} {row['rate']:>10,.0f} deliveries/s  p99 {row['p99_ms']:.1f} ms")
    t = so["target"]
    met = {True: "met", False: "not met", None: "n/a"}[t["met"]]
    ratio = "n/a" if t["measured"] is None else f"{t['measured']:.2f}x"
    print(f"target: {t['target']}: {ratio} -> {met}")
    for w in so.get("warnings", [])[:20]:
        print(f"warning: {w}")
