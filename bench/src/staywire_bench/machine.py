"""Where the run happens: the repository root, the machine, the load average, quiet cores."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from staywire_bench.config import BenchError

__all__ = ["find_root", "hold_low_latency", "loadavg", "machine_info", "redis_missing",
           "staywire_command"]


def find_root(start: str | None = None) -> Path:
    """The repository root: the first folder up from ``start`` (or the cwd) holding
    bench/peers, else the checkout this package is installed from (editable install:
    ``<root>/bench/src/staywire_bench/machine.py``)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "bench" / "peers").is_dir():
            return folder
    candidate = Path(__file__).resolve().parents[3]
    if (candidate / "bench" / "peers").is_dir():
        return candidate
    raise BenchError("cannot find bench/peers: run from the Staywire repository")


def hold_low_latency(enabled: bool, warnings: list[str]) -> Any:
    """Keep /dev/cpu_dma_latency at 0 while the returned file is open; None if not
    possible (not root, no such device): the run goes on and says so."""
    if not enabled:
        return None
    try:
        fh = open("/dev/cpu_dma_latency", "wb", buffering=0)  # noqa: SIM115
        fh.write((0).to_bytes(4, sys.byteorder, signed=True))
    except OSError as exc:
        warnings.append(f"cpu_dma_latency not held ({exc.strerror}): idle cores "
                        "halt, single round trips pay the wake-up")
        return None
    return fh


def staywire_command() -> str:
    from staywire_bench.servers import staywire_settings

    flags, env = staywire_settings()
    return " ".join([*(f"{k}={v}" for k, v in env.items()),
                     shlex.join(["staywire", "serve", "--host", "127.0.0.1", "--port", "PORT",
                                 "--api-port", "PORT2", *flags])])


def redis_missing() -> str | None:
    """Why the Redis broker cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed"
    try:
        importlib.import_module("staywire.brokers.redis")
    except ImportError as exc:
        return f"staywire.brokers.redis does not import ({exc})"
    return None


def loadavg() -> str:
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
