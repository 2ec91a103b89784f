"""The harness: rounds of every server against the same load generator, then the reports.

One run::

    for each round (the order of the servers rotates every round):
        for each server:
            group A: fresh server; echo over 1 connection; echo over 100 connections
            group B: fresh server; open K connections (handshakes/s; KiB per idle
                     connection from VmRSS before and after); subscribe them; fan-out of
                     M publications; reconnect storm (kill the server, start it again)

The server runs pinned to core 0, the load generator to core 1, the harness
itself also on core 1 (it mostly waits). Every process is started through a
``ProcessRegistry`` and stopped by its PID, on errors and Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from staywire.bench import procfs
from staywire.bench.catalog import WORKLOADS
from staywire.bench.servers import (
    ALL_SERVERS,
    Proc,
    ProcessRegistry,
    RedisProcess,
    ServerContext,
    ServerDef,
    free_port,
    node_ready,
    pinned,
    wait_port,
)

__all__ = ["ALL_WORKLOADS", "BenchConfig", "run_bench"]

ALL_WORKLOADS = WORKLOADS
GROUP_A = ("echo1", "echo100")
GROUP_B = ("connrate", "idle", "fanout", "storm")
REFERENCE = "node-ws"


@dataclass
class BenchConfig:
    servers: list[str] = field(default_factory=lambda: list(ALL_SERVERS))
    workloads: list[str] = field(default_factory=lambda: list(ALL_WORKLOADS))
    rounds: int = 3
    k: int = 5000  # fan-out subscribers = idle connections = storm clients
    # Fan-out publications. 20, not 50: python-socketio delivers ~6,000 messages/s here, so
    # 5,000 x 50 deliveries alone took ~40 s per round and the run would not stay well
    # under 10 minutes.
    m: int = 20
    echo_duration: float = 1.5
    echo_conns: int = 100
    warmup: float = 0.3
    concurrency: int = 100  # handshakes in flight while opening the K connections
    pad: int = 32  # bytes of padding in each publication
    settle: float = 0.5  # seconds between opening the idle connections and reading VmRSS
    phase_timeout: float = 90.0
    storm_timeout: float = 30.0
    group_timeout: float = 360.0
    backoff_base: float = 0.1
    backoff_cap: float = 5.0
    backoff_retries: int = 20
    quick: bool = False
    pin: bool = True
    server_core: int = 0
    gen_core: int = 1
    progress: bool = True
    profile: bool = False
    # Hold /dev/cpu_dma_latency at 0 for the run (what tuned's latency-performance profile
    # does): idle cores poll instead of halting. On a VM, waking a halted vCPU costs ~100 us,
    # which would otherwise dominate every single round trip.
    low_latency: bool = True
    # A group whose measured windows saw other processes busy on the benchmark cores (over
    # noise_pct of a core) is run again, up to this many times; the least noisy attempt is
    # kept. Shared machines are noisy.
    retry_noisy: int = 2
    noise_pct: float = 25.0
    # Seconds the whole run should stay under: noisy groups are run again only while the
    # estimate of what is left still fits.
    budget: float = 480.0
    root: str = "."
    json_path: str = "bench/results/latest.json"
    markdown_path: str = "docs/benchmarks.md"
    chart_path: str = "docs/bench-chart.png"
    command: str = "staywire bench"

    @classmethod
    def quick_defaults(cls) -> dict[str, Any]:
        return dict(rounds=1, k=200, m=10, echo_duration=0.5, warmup=0.2, echo_conns=100,
                    concurrency=50, settle=0.2, phase_timeout=20.0, storm_timeout=20.0,
                    group_timeout=60.0, budget=120.0, backoff_cap=1.0,
                    json_path="bench/results/quick.json",
                    markdown_path="bench/results/quick.md",
                    chart_path="bench/results/quick.png")

    def gen_params(self) -> dict[str, Any]:
        return {
            "K": self.k, "M": self.m, "echo_duration": self.echo_duration,
            "echo_conns": self.echo_conns, "warmup": self.warmup,
            "concurrency": self.concurrency, "pad": self.pad, "settle": self.settle,
            "phase_timeout": self.phase_timeout, "storm_timeout": self.storm_timeout,
            "backoff_base": self.backoff_base, "backoff_cap": self.backoff_cap,
            "backoff_retries": self.backoff_retries, "profile": self.profile,
        }


class BenchError(Exception):
    pass


class _Ui:
    """The rich progress bar, or plain lines when rich is missing or it is turned off."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._console: Any = None
        if enabled:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:  # pragma: no cover - rich is in the bench extra
                pass
            else:
                self._console = Console(stderr=True)
                self._progress = Progress(
                    SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                    console=self._console, transient=False)
                self._task = self._progress.add_task("staywire bench", total=total, detail="")

    def __enter__(self) -> _Ui:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description, detail="")
        else:
            print(f"[bench] {description}", file=sys.stderr, flush=True)

    def detail(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, detail=text)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def log(self, text: str) -> None:
        if self._console is not None:
            self._console.log(text)
        else:
            print(f"[bench] {text}", file=sys.stderr, flush=True)


def find_root(start: str | None = None) -> Path:
    """The repository root: the first folder up from ``start`` (or the cwd) holding
    bench/peers, else the one above the installed package's src/."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "bench" / "peers").is_dir():
            return folder
    candidate = Path(__file__).resolve().parents[3]
    if (candidate / "bench" / "peers").is_dir():
        return candidate
    raise BenchError("cannot find bench/peers: run from the Staywire repository")


class Harness:
    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.root = find_root(cfg.root)
        self.registry = ProcessRegistry()
        self.records: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.skipped: dict[str, str] = {}
        self.profiles: dict[str, Any] = {}
        self.redis: RedisProcess | None = None
        cores = os.cpu_count() or 1
        self.pin = cfg.pin and cores >= 2 and shutil.which("taskset") is not None
        self.server_core = cfg.server_core if self.pin else None
        self.gen_core = cfg.gen_core if self.pin else None
        self.ctx = ServerContext(root=self.root)
        self.ui: _Ui | None = None
        self.loadavg_at_start = ""
        self.retried: list[dict[str, Any]] = []
        self.timings: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.groups_done = 0
        self.group_seconds = 0.0
        self.groups_left = 0

    # ------------------------------------------------------------------ setup

    def _available(self, ui: _Ui) -> list[ServerDef]:
        wanted = []
        for name in self.cfg.servers:
            if name not in ALL_SERVERS:
                raise BenchError(f"unknown server {name!r} (known: {', '.join(ALL_SERVERS)})")
            wanted.append(ALL_SERVERS[name])
        out = []
        for sdef in wanted:
            reason = self._missing(sdef, ui)
            if reason:
                self.skipped[sdef.name] = reason
                self.warnings.append(f"{sdef.name} skipped: {reason}")
                ui.log(f"skipping {sdef.name}: {reason}")
            else:
                out.append(sdef)
        return out

    def _missing(self, sdef: ServerDef, ui: _Ui) -> str | None:
        for need in sdef.needs:
            if need == "node":
                if self.ctx.node is None:
                    self.ctx.node = node_ready(self.root, ui.log)
                if self.ctx.node is None:
                    return "node/npm or the Node packages are not available"
            elif need == "redis":
                if shutil.which("redis-server") is None:
                    return "redis-server is not installed"
                if importlib.util.find_spec("redis") is None:
                    return "the redis package is not installed"
                try:
                    importlib.import_module("staywire.brokers.redis")
                except ImportError as exc:
                    return f"staywire.brokers.redis does not import ({exc})"
                if self.redis is None:
                    self.redis = RedisProcess(self.registry, self.server_core).start()
                    self.ctx.redis_url = self.redis.url
            elif need.startswith("python:"):
                module = need.split(":", 1)[1]
                if importlib.util.find_spec(module) is None:
                    return f"python package {module!r} is not installed"
        return None

    # ------------------------------------------------------------------ processes

    def _start_server(self, sdef: ServerDef, port: int, *, restart: bool = False) -> Proc:
        if sdef.name == "staywire-redis" and self.redis is not None and not restart:
            self.redis.flush()
        argv, extra_env = sdef.build(self.ctx, port)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
        proc = self.registry.start(sdef.name, pinned(argv, self.server_core), env=env,
                                   cwd=str(self.root))
        if not wait_port(port, 30.0, proc.alive):
            tail = proc.log_tail()
            proc.stop()
            self.registry.forget(proc)
            raise BenchError(f"{sdef.name} did not start on port {port}:\n{tail}")
        return proc

    def _hold_low_latency(self) -> Any:
        """Keep /dev/cpu_dma_latency at 0 while the returned file is open; None if not
        possible (not root, no such device): the run goes on and says so."""
        if not self.cfg.low_latency:
            return None
        try:
            fh = open("/dev/cpu_dma_latency", "wb", buffering=0)  # noqa: SIM115
            fh.write((0).to_bytes(4, sys.byteorder, signed=True))
        except OSError as exc:
            self.warnings.append(f"cpu_dma_latency not held ({exc.strerror}): idle cores "
                                 "halt, single round trips pay the wake-up")
            return None
        return fh

    def _stop(self, proc: Proc | None) -> None:
        if proc is not None:
            proc.stop()
            self.registry.forget(proc)

    def _start_generator(self, sdef: ServerDef, port: int, pid: int, workloads: list[str]
                         ) -> Proc:
        spec = {
            "server": sdef.name, "protocol": sdef.protocol, "url": f"ws://127.0.0.1:{port}",
            "pid": pid, "workloads": workloads, "params": self.cfg.gen_params(),
            "cores": [self.server_core, self.gen_core] if self.pin else [],
        }
        argv = pinned([sys.executable, "-m", "staywire.bench.loadgen", json.dumps(spec)],
                      self.gen_core)
        return self.registry.start(f"loadgen-{sdef.name}", argv, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, cwd=str(self.root),
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))

    # ------------------------------------------------------------------ one group

    def run_group(self, sdef: ServerDef, rnd: int, workloads: list[str], ui: _Ui) -> None:
        port = free_port()
        server: Proc | None = self._start_server(sdef, port)
        assert server is not None
        gen: Proc | None = None
        spy: Proc | None = None
        try:
            gen = self._start_generator(sdef, port, server.pid, workloads)
            lines: queue.Queue[bytes | None] = queue.Queue()
            stdout = gen.popen.stdout
            assert stdout is not None

            def pump() -> None:
                for line in iter(stdout.readline, b""):
                    lines.put(line)
                lines.put(None)

            threading.Thread(target=pump, daemon=True).start()
            deadline = time.monotonic() + self.cfg.group_timeout
            finished = False
            while time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    continue
                if line is None:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                kind = event.get("event")
                if kind == "progress":
                    ui.detail(f"{event['phase']} {event['done']}/{event['total']}")
                elif kind == "result":
                    metrics = event["metrics"]
                    self.records.append({"server": sdef.name, "round": rnd,
                                         "workload": event["workload"], "metrics": metrics})
                    self._check(sdef.name, rnd, event["workload"], metrics)
                elif kind == "request":
                    op = event.get("op")
                    if op == "rss":
                        reply: dict[str, Any] = {"rss_kib": procfs.rss_kib(server.pid)}
                    elif op == "restart":
                        killed_at = time.monotonic()
                        server.kill()
                        self.registry.forget(server)
                        server = None
                        server = self._start_server(sdef, port, restart=True)
                        reply = {"killed_at": killed_at, "ready_at": time.monotonic(),
                                 "pid": server.pid}
                    elif op == "profile-start":
                        spy = self._start_profile(sdef, server.pid)
                        reply = {"ok": spy is not None}
                    elif op == "profile-stop":
                        self._stop_profile(sdef, spy)
                        spy = None
                        reply = {"ok": True}
                    else:
                        reply = {"error": f"unknown op {op!r}"}
                    assert gen.popen.stdin is not None
                    gen.popen.stdin.write((json.dumps(reply) + "\n").encode())
                    gen.popen.stdin.flush()
                elif kind == "error":
                    raise BenchError(f"{sdef.name}: load generator: {event.get('error')}")
                elif kind == "done":
                    finished = True
                    break
            if not finished:
                if time.monotonic() >= deadline:
                    raise BenchError(f"{sdef.name}: group {workloads} over "
                                     f"{self.cfg.group_timeout:.0f} s")
                raise BenchError(f"{sdef.name}: load generator ended early:\n{gen.log_tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                gen.popen.wait(timeout=10)
        finally:
            if spy is not None:
                self._stop_profile(sdef, spy)
            self._stop(gen)
            self._stop(server)

    def _run_group_retrying(self, sdef: ServerDef, rnd: int, group: list[str], ui: _Ui) -> None:
        """Run a group; again (bounded) while its windows were noisy; keep the least noisy."""
        attempts: list[tuple[float, list[dict[str, Any]], list[str]]] = []
        for attempt in range(1 + max(0, self.cfg.retry_noisy)):
            records_before, warnings_before = len(self.records), len(self.warnings)
            started = time.monotonic()
            try:
                self.run_group(sdef, rnd, group, ui)
            except BenchError as exc:
                self.warnings.append(f"round {rnd + 1}: {exc}")
                ui.log(f"[red]{exc}")
            records = self.records[records_before:]
            warnings = self.warnings[warnings_before:]
            del self.records[records_before:]
            del self.warnings[warnings_before:]
            noise = max((r["metrics"].get("other_cpu_pct") or 0.0 for r in records),
                        default=0.0)
            attempts.append((noise if records else float("inf"), records, warnings))
            self.groups_done += 1
            took = time.monotonic() - started
            self.group_seconds += took
            self.timings.append({"server": sdef.name, "round": rnd + 1, "group": "+".join(group),
                                 "attempt": attempt + 1, "seconds": round(took, 1)})
            if records and noise <= self.cfg.noise_pct:
                break
            if not self._may_retry(time.monotonic() - started):
                ui.log(f"{sdef.name} {'+'.join(group)}: noisy ({noise:.0f}%), no time left "
                       "in the budget to run it again")
                break
            if attempt < self.cfg.retry_noisy:
                ui.log(f"{sdef.name} {'+'.join(group)}: noisy ({noise:.0f}% of a core used by "
                       "other processes); running it again")
                time.sleep(1.0)
        best = min(attempts, key=lambda a: a[0])
        self.records.extend(best[1])
        self.warnings.extend(best[2])
        if len(attempts) > 1:
            self.retried.append({"server": sdef.name, "round": rnd + 1, "group": group,
                                 "attempts": len(attempts),
                                 "noise_pct": [round(a[0], 1) for a in attempts]})

    def _may_retry(self, this_group: float) -> bool:
        """Whether one more run of a group fits the time budget, counting the groups left."""
        elapsed = time.monotonic() - self.t0
        average = self.group_seconds / max(1, self.groups_done)
        # 1.3: later groups may well be slower than the average so far (noise, slow peers).
        return elapsed + this_group + 1.3 * average * self.groups_left <= self.cfg.budget

    def _check(self, server: str, rnd: int, workload: str, m: dict[str, Any]) -> None:
        where = f"{server} round {rnd + 1} {workload}"
        gen_cpu = m.get("gen_cpu_pct")
        if gen_cpu is not None and gen_cpu > 90.0:
            m["generator_saturated"] = True
            self.warnings.append(f"{where}: load generator at {gen_cpu:.0f}% of a core "
                                 "(saturated: the figure is a floor for this server)")
        other = m.get("other_cpu_pct")
        if other is not None and other > self.cfg.noise_pct:
            m["noisy"] = True
            self.warnings.append(f"{where}: other processes used {other:.0f}% of a core on the "
                                 "two benchmark cores during the window (noisy)")
        if m.get("complete") is False:
            self.warnings.append(f"{where}: incomplete ({m})")
        if m.get("lost"):
            self.warnings.append(f"{where}: {m['lost']} connections lost unexpectedly")
        if m.get("connect_failures"):
            self.warnings.append(f"{where}: {m['connect_failures']} failed connection "
                                 f"attempts (retried; last: {m.get('last_error', '')})")

    # ------------------------------------------------------------------ profiling

    def _start_profile(self, sdef: ServerDef, pid: int) -> Proc | None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if sdef.runtime != "python" or not os.access(spy, os.X_OK):
            return None
        out = self.root / "bench" / "results" / f"profile-{sdef.name}-fanout.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            out.unlink()
        proc = self.registry.start(
            "py-spy", pinned([spy, "record", "--pid", str(pid), "--rate", "500", "--format",
                              "raw", "--nonblocking", "--output", str(out)], self.gen_core))
        time.sleep(1.0)  # attach before the load starts
        return proc if proc.alive() else None

    def _stop_profile(self, sdef: ServerDef, spy: Proc | None) -> None:
        if spy is None:
            return
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.kill(spy.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.popen.wait(timeout=15)
        self._stop(spy)
        out = self.root / "bench" / "results" / f"profile-{sdef.name}-fanout.txt"
        if out.exists():
            from staywire.bench.report import summarize_profile

            self.profiles[sdef.name] = summarize_profile(out.read_text())
            self.profiles[sdef.name]["file"] = str(out.relative_to(self.root))

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.time()
        t0 = self.t0 = time.monotonic()
        self.loadavg_at_start = _loadavg()
        workloads = [w for w in ALL_WORKLOADS if w in cfg.workloads]
        unknown = set(cfg.workloads) - set(ALL_WORKLOADS)
        if unknown:
            raise BenchError(f"unknown workload(s) {sorted(unknown)} (known: "
                             f"{', '.join(ALL_WORKLOADS)})")
        group_a = [w for w in workloads if w in GROUP_A]
        group_b = [w for w in workloads if w in GROUP_B]
        if self.pin:
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setaffinity(0, {cfg.gen_core})
        else:
            self.warnings.append("not pinned (fewer than 2 cores or no taskset): the server "
                                 "and the generator share CPUs")
        ui_total = 1
        with _Ui(cfg.progress, ui_total) as ui:
            self.ui = ui
            latency_hold = self._hold_low_latency()
            try:
                servers = self._available(ui)
                if not servers:
                    raise BenchError("no server to benchmark")
                groups = [g for g in (group_a, group_b) if g]
                total = cfg.rounds * len(servers) * len(groups)
                if ui._progress is not None:
                    ui._progress.update(ui._task, total=total)
                self.groups_left = total
                for rnd in range(cfg.rounds):
                    shift = rnd % len(servers)
                    for sdef in servers[shift:] + servers[:shift]:
                        for group in groups:
                            self.groups_left -= 1
                            ui.step(f"round {rnd + 1}/{cfg.rounds} · {sdef.name} · "
                                    f"{'+'.join(group)}")
                            self._run_group_retrying(sdef, rnd, group, ui)
                            ui.advance()
            finally:
                if self.redis is not None:
                    self.redis.stop()
                self.registry.stop_all()
                if latency_hold is not None:
                    latency_hold.close()
        return self._results(started, time.monotonic() - t0, servers)

    def _results(self, started: float, duration: float, servers: list[ServerDef]
                 ) -> dict[str, Any]:
        from staywire.bench.report import summarize

        cfg = self.cfg
        meta = {
            "command": cfg.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(duration, 1),
            "quick": cfg.quick,
            "config": {k: v for k, v in asdict(cfg).items()
                       if k not in ("json_path", "markdown_path", "chart_path", "root",
                                    "command", "progress")},
            "machine": machine_info(self.ctx.node),
            "pinned": {"server_core": self.server_core, "generator_core": self.gen_core},
            "loadavg_at_start": self.loadavg_at_start,
            "reference": REFERENCE,
            "skipped": self.skipped,
            "retried_noisy": self.retried,
            "group_seconds": self.timings,
            "staywire_command": _staywire_command(),
            "pids": list(self.registry.started),
        }
        servers_meta = {s.name: {"label": s.label, "protocol": s.protocol,
                                 "runtime": s.runtime, "note": s.note} for s in servers}
        return summarize(meta, servers_meta, self.records, self.warnings, self.profiles)


def _staywire_command() -> str:
    from staywire.bench.servers import staywire_settings

    flags, env = staywire_settings()
    import shlex

    return " ".join([*(f"{k}={v}" for k, v in env.items()),
                     shlex.join(["staywire", "serve", "--host", "127.0.0.1", "--port", "PORT",
                                 "--api-port", "PORT2", *flags])])


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def machine_info(node: str | None) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in ("staywire", "picows", "uvloop", "msgspec", "websockets", "python-socketio",
                 "python-engineio", "aiohttp", "redis"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    node_version = None
    if node:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            node_version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                          timeout=10).stdout.strip()
    redis_version = None
    redis_bin = shutil.which("redis-server")
    if redis_bin:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            redis_version = subprocess.run([redis_bin, "--version"], capture_output=True,
                                           text=True, timeout=10).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "node": node_version, "redis": redis_version,
        "packages": versions,
        "node_packages": {"ws": "8.23.0", "socket.io": "4.8.4"},
    }


def run_bench(cfg: BenchConfig, write: Callable[[dict[str, Any], BenchConfig, Path], None]
              ) -> dict[str, Any]:
    harness = Harness(cfg)
    results = harness.run()
    write(results, cfg, harness.root)
    return results
