"""Run the real ``staywire doctor`` command, and start peer servers on free loopback
ports (each stopped by PID)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from staywire_bench.ports import free_port

__all__ = ["ROOT", "Peer", "checks", "doctor", "start_peer"]

ROOT = Path(__file__).resolve().parents[2]
T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))


def doctor(url: str, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    """(exit status, the --json document, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "staywire", "doctor", url, "--json", *args],
                          capture_output=True, text=True, timeout=timeout * T,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["checks"]}


class Peer:
    def __init__(self, argv: list[str], port: int, cwd: Path | None = None) -> None:
        self.port = port
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, text=True)
        deadline = time.monotonic() + 15 * T
        assert self.proc.stdout is not None
        # Every peer prints "listening PORT" once it accepts (the bench peers' contract).
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"peer {argv} exited with {self.proc.returncode}")
            if line.startswith("listening"):
                return
        self.stop()
        raise TimeoutError(f"peer {argv} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@contextlib.contextmanager
def start_peer(argv: list[str], cwd: Path | None = None) -> Iterator[Peer]:
    port = free_port()
    peer = Peer([*argv, str(port)], port, cwd)
    try:
        yield peer
    finally:
        peer.stop()
