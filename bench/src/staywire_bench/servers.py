"""The servers under test, and the processes the harness starts: each stopped by PID.

Every server runs as its own process on 127.0.0.1, pinned to core 0 with
``taskset`` (the load generator gets core 1). ``taskset`` execs the command, so
the PID the harness holds is the server's own, which is what VmRSS, CPU time and
the kill of the reconnect storm need.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from staywire_bench.catalog import EXTRA_SERVERS, SERVERS
from staywire_bench.ports import free_port

__all__ = [
    "ALL_SERVERS",
    "Proc",
    "ProcessRegistry",
    "RedisProcess",
    "ServerDef",
    "free_port",
    "node_ready",
    "wait_port",
]

NODE_DEPS = {"ws": "8.23.0", "socket.io": "4.8.4"}


def wait_port(port: int, timeout: float, alive: Callable[[], bool]) -> bool:
    """Wait until 127.0.0.1:port accepts a TCP connection (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.01)
    return False


class Proc:
    """A child process the harness owns; ``stop`` ends it by its PID."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
                 log_path: str | None = None, cwd: str | None = None,
                 stdin: int | None = subprocess.DEVNULL, stdout: int | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path or tempfile.mktemp(prefix=f"staywire-bench-{name}-",
                                                    suffix=".log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=stdin,
            stdout=stdout if stdout is not None else self._log, stderr=self._log,
            # Own process group: a Ctrl-C in the terminal reaches the harness only, which
            # stops everything by PID. Same session: with sched_autogroup a new session
            # would be a scheduling group of its own.
            process_group=0,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID (a crash) and reap."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM by PID, SIGKILL after ``grace`` seconds."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            self._log.close()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                data = fh.read()
        except OSError:
            return ""
        return data[-chars:].decode(errors="replace")


class ProcessRegistry:
    """Every process started by the run, so that an error or Ctrl-C still stops them all."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []
        self.started: list[int] = []  # every PID, for the record (and the smoke test)

    def start(self, *args: object, **kwargs: object) -> Proc:
        proc = Proc(*args, **kwargs)  # type: ignore[arg-type]
        self._procs.append(proc)
        self.started.append(proc.pid)
        return proc

    def forget(self, proc: Proc) -> None:
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            with contextlib.suppress(Exception):
                proc.stop(grace=1.0)
        self._procs.clear()


def pinned(argv: list[str], core: int | None) -> list[str]:
    """``taskset -c CORE argv`` (taskset execs: the PID stays the command's)."""
    if core is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(core), *argv]


@dataclass
class ServerDef:
    """One server under test: how to start it and what protocol it speaks."""

    name: str
    label: str
    protocol: str  # staywire | bare | socketio
    runtime: str  # python | node
    note: str
    build: Callable[[ServerContext, int], tuple[list[str], dict[str, str]]]
    needs: tuple[str, ...] = ()  # "redis", "node", "python:module"


@dataclass
class ServerContext:
    root: Path
    python: str = sys.executable
    node: str | None = None
    redis_url: str | None = None
    api_ports: dict[int, int] = field(default_factory=dict)


# Limits raised so that the bench measures throughput, not the limiter; the whole protocol
# path (envelopes, validation, token buckets, offsets, history, sessions) stays on. Each
# is passed as a `staywire serve` flag when the server has one, else as its STAYWIRE_*
# environment variable; options this version of the server does not have are left out.
STAYWIRE_RAISED: dict[str, str] = {
    "rate_messages": "1000000000",
    "rate_burst": "1000000000",
    "rate_bytes": "1e12",
    "rate_bytes_burst": "1e12",
    "max_connections_per_ip": "1000000",
    "max_connections": "1000000",
    "handshake_rate": "1000000000",
    "handshake_burst": "1000000000",
}
STAYWIRE_BASE_FLAGS = ["--allow-anonymous", "--anonymous-channel", "*", "--log-level", "warning"]


@functools.lru_cache(maxsize=1)
def staywire_settings() -> tuple[list[str], dict[str, str]]:
    """The flags and environment that raise Staywire's limits, for this server version."""
    import argparse
    import dataclasses

    from staywire.config import Config

    fields = {f.name for f in dataclasses.fields(Config)}
    flags: set[str] = set()
    try:
        from staywire.cli import build_parser

        parser = build_parser()
        for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                serve = action.choices.get("serve")
                if serve is not None:
                    for a in serve._actions:  # noqa: SLF001
                        flags.update(a.option_strings)
    except Exception:  # noqa: BLE001 - fall back to the environment for everything
        flags = set()
    argv = list(STAYWIRE_BASE_FLAGS)
    env: dict[str, str] = {}
    for name, value in STAYWIRE_RAISED.items():
        if name not in fields:
            continue
        flag = "--" + name.replace("_", "-")
        if flag in flags:
            argv += [flag, value]
        else:
            env["STAYWIRE_" + name.upper()] = value
    return argv, env


def _staywire(ctx: ServerContext, port: int, broker: str | None = None
              ) -> tuple[list[str], dict[str, str]]:
    api = ctx.api_ports.setdefault(port, free_port())
    flags, env = staywire_settings()
    env = dict(env)
    argv = [ctx.python, "-m", "staywire", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--api-port", str(api), *flags]
    if broker:
        argv += ["--broker", broker]
    return argv, env


def _staywire_pygc(ctx: ServerContext, port: int) -> tuple[list[str], dict[str, str]]:
    argv, env = _staywire(ctx, port)
    return [*argv, "--gc-policy", "python"], env


def _staywire_redis(ctx: ServerContext, port: int) -> tuple[list[str], dict[str, str]]:
    assert ctx.redis_url is not None
    return _staywire(ctx, port, ctx.redis_url)


def _py_peer(script: str) -> Callable[[ServerContext, int], tuple[list[str], dict[str, str]]]:
    def build(ctx: ServerContext, port: int) -> tuple[list[str], dict[str, str]]:
        return [ctx.python, str(ctx.root / "bench" / "peers" / script), str(port)], {}

    return build


def _node_peer(script: str) -> Callable[[ServerContext, int], tuple[list[str], dict[str, str]]]:
    def build(ctx: ServerContext, port: int) -> tuple[list[str], dict[str, str]]:
        assert ctx.node is not None
        return [ctx.node, str(ctx.root / "bench" / "peers" / "node" / script), str(port)], {}

    return build


_DEFS = {
    s.name: s
    for s in [
        ServerDef("staywire", "Staywire (memory)", "staywire", "python",
                  "picows+uvloop, memory broker, full protocol path", _staywire),
        ServerDef("staywire-redis", "Staywire (Redis)", "staywire", "python",
                  "as above with --broker redis:// (redis-server on core 0 too)",
                  _staywire_redis, needs=("redis",)),
        ServerDef("staywire-pygc", "Staywire (memory, Python GC)", "staywire", "python",
                  "as Staywire (memory) with --gc-policy python: the interpreter's GC "
                  "thresholds, nothing frozen", _staywire_pygc),
        ServerDef("picows", "bare picows", "bare", "python",
                  "bench/peers/picows_server.py: echo + one room, no protocol",
                  _py_peer("picows_server.py")),
        ServerDef("websockets", "websockets", "bare", "python",
                  "bench/peers/websockets_server.py: websockets 17 asyncio server, broadcast()",
                  _py_peer("websockets_server.py"), needs=("python:websockets",)),
        ServerDef("python-socketio", "python-socketio", "socketio", "python",
                  "bench/peers/socketio_server.py: python-socketio on aiohttp",
                  _py_peer("socketio_server.py"),
                  needs=("python:socketio", "python:aiohttp")),
        ServerDef("node-ws", "Node ws", "bare", "node",
                  "bench/peers/node/ws_server.js: ws 8.23.0", _node_peer("ws_server.js"),
                  needs=("node",)),
        ServerDef("node-socketio", "Node socket.io", "socketio", "node",
                  "bench/peers/node/socketio_server.js: socket.io 4.8.4",
                  _node_peer("socketio_server.js"), needs=("node",)),
    ]
}
ALL_SERVERS: dict[str, ServerDef] = {name: _DEFS[name] for name in SERVERS + EXTRA_SERVERS}


def node_ready(root: Path, log: Callable[[str], None]) -> str | None:
    """The node binary, after installing the pinned Node peers' packages on first use;
    None when Node or npm is missing or the install fails."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None:
        log("node not found: the Node peers are skipped")
        return None
    prefix = root / "bench" / "peers" / "node"
    if _node_deps_present(prefix):
        return node
    if npm is None:
        log("npm not found: cannot install the Node peers' packages; they are skipped")
        return None
    log(f"installing the Node peers' packages into {prefix / 'node_modules'} (first use)")
    try:
        subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                        "--loglevel=error"], check=True, timeout=300,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"npm install failed ({exc}): the Node peers are skipped")
        return None
    return node if _node_deps_present(prefix) else None


def _node_deps_present(prefix: Path) -> bool:
    import json

    for name, version in NODE_DEPS.items():
        try:
            meta = json.loads((prefix / "node_modules" / name / "package.json").read_text())
        except (OSError, ValueError):
            return False
        if meta.get("version") != version:
            return False
    return True


class RedisProcess:
    """A private redis-server on a free loopback port, nothing on disk, stopped by PID."""

    def __init__(self, registry: ProcessRegistry, core: int | None) -> None:
        self.binary = shutil.which("redis-server")
        self.registry = registry
        self.core = core
        self.port = 0
        self.proc: Proc | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        assert self.binary is not None
        self._dir = tempfile.mkdtemp(prefix="staywire-bench-redis-")
        for _ in range(3):
            self.port = free_port()
            argv = pinned([self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
                           "--save", "", "--appendonly", "no", "--dir", self._dir,
                           "--maxclients", "10000"], self.core)
            self.proc = self.registry.start("redis", argv)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.alive():
                if self.command(b"PING").startswith(b"+PONG"):
                    return self
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def command(self, line: bytes) -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(line + b"\r\n")
                return s.recv(64)
        except OSError:
            return b""

    def flush(self) -> None:
        self.command(b"FLUSHALL")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=2.0)
            self.registry.forget(self.proc)
            self.proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
