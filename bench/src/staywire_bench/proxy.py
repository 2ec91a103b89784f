"""nginx in front of the Staywire nodes, as a process the harness owns (``scaleout``).

The configuration is the one ``staywire nginx`` prints (docs/deployment.md), with
``--runtime-dir``: ``daemon off`` (the PID held is the master's), pid, logs and
temp files in a private folder, listening on 127.0.0.1 only. It is stopped by
PID: SIGTERM to the master (nginx's fast shutdown stops its workers), then any
worker of its process group still alive is killed by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from staywire_bench.config import BenchError
from staywire_bench.servers import Proc, ProcessRegistry, free_port, wait_port

__all__ = ["NginxProcess", "nginx_binary", "nginx_version"]


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _is_nginx(pid: int, group: int) -> bool:
    """Whether ``pid`` is an nginx process of the process group ``group`` (the master's:
    ``Proc`` starts every process in a group of its own), not a reused PID."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        pgrp = int(stat[stat.rfind(b")") + 2:].split()[2])
    except (OSError, ValueError, IndexError):
        return False
    return comm == "nginx" and pgrp == group


class NginxProcess:
    """nginx in front of the nodes, with the configuration ``staywire nginx`` prints:
    ``daemon off`` (the PID is the master's), pid/logs/temp files in a private folder."""

    def __init__(self, registry: ProcessRegistry, backends: list[int]) -> None:
        self.registry = registry
        self.backends = backends
        self.port = 0
        self.proc: Proc | None = None
        self.workers: list[int] = []
        self.dir: str | None = None

    def start(self, binary: str) -> NginxProcess:
        self.dir = tempfile.mkdtemp(prefix="staywire-bench-nginx-")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)  # nginx's default log
        self.port = free_port()
        argv = [sys.executable, "-m", "staywire", "nginx", "--listen", f"127.0.0.1:{self.port}",
                "--runtime-dir", self.dir]
        for port in self.backends:
            argv += ["--backend", f"127.0.0.1:{port}"]
        try:
            conf = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL).stdout
        except (subprocess.SubprocessError, OSError) as exc:
            raise BenchError(f"staywire nginx failed: {exc}") from exc
        path = os.path.join(self.dir, "nginx.conf")
        Path(path).write_text(conf)
        self.proc = self.registry.start("nginx", [binary, "-c", path, "-p", self.dir + "/"],
                                        cwd=self.dir)
        if not wait_port(self.port, 10.0, self.proc.alive):
            tail = self.proc.log_tail() + self._error_log()
            self.stop()
            raise BenchError(f"nginx did not start on port {self.port}:\n{tail}")
        # The workers (``worker_processes auto``: one per CPU) are forked one after the
        # other: wait until the set has not changed for 0.3 s (bounded), so that none is
        # missed by the CPU figures or by the cleanup.
        deadline = time.monotonic() + 5.0
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            found = [pid for pid in _children(self.proc.pid) if _is_nginx(pid, self.proc.pid)]
            if found != self.workers:
                self.workers, stable_since = found, time.monotonic()
            elif self.workers and time.monotonic() - stable_since >= 0.3:
                break
            time.sleep(0.02)
        self.registry.started.extend(self.workers)
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        return ([self.proc.pid] if self.proc is not None else []) + self.workers

    def _error_log(self) -> str:
        try:
            return Path(self.dir or "", "error.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        group = self.proc.pid if self.proc is not None else 0
        if self.proc is not None:
            self.proc.stop(grace=5.0)  # SIGTERM: nginx's fast shutdown, workers included
            self.registry.forget(self.proc)
            self.proc = None
        for pid in self.workers:  # only if the master died without them
            if _is_nginx(pid, group):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def nginx_version(binary: str | None) -> str | None:
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError):
        return None
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ") or None
