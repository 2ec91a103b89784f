"""What /proc says about a process: resident memory and CPU time (no psutil)."""

from __future__ import annotations

import os

__all__ = ["CLK_TCK", "core_times", "cpu_seconds", "machine_busy", "rss_kib", "run_seconds"]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User plus system CPU time of ``pid`` (``"self"``: this process), None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    except (IndexError, ValueError):
        return None


def run_seconds(pid: int | str = "self") -> float | None:
    """Seconds ``pid`` spent on a CPU (user plus system, every thread), with nanosecond
    precision from ``/proc/PID/task/*/schedstat``; None when it is gone or the kernel has
    no schedstat. ``cpu_seconds`` counts 10 ms ticks: a node's share of a window of a few
    hundred milliseconds would be off by several percent, where this is exact."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                total += int(fh.read().split()[0])
        except FileNotFoundError:
            continue  # a thread that ended between the listing and the read
        except (OSError, ValueError, IndexError):
            return None
    return total / 1e9 if tasks else None


def core_times() -> dict[str, tuple[float, float]]:
    """Per core (``"cpu0"``...): (busy seconds, steal seconds) since boot, from /proc/stat."""
    out: dict[str, tuple[float, float]] = {}
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if not line.startswith(b"cpu") or line.startswith(b"cpu "):
                    continue
                parts = line.split()
                v = [int(x) for x in parts[1:9]]
                # user nice system idle iowait irq softirq steal. Interrupt time is left
                # out: the loopback traffic of the benchmark itself lands there, and it is
                # charged to no process.
                busy = v[0] + v[1] + v[2]
                out[parts[0].decode()] = (busy / CLK_TCK, v[7] / CLK_TCK)
    except (OSError, ValueError, IndexError):
        return {}
    return out


def machine_busy() -> float | None:
    """Seconds all cores together spent busy since boot, interrupt handling included
    (user, nice, system, irq, softirq: the loopback traffic's softirq time is CPU the
    machine does not have for anything else), from the first line of /proc/stat."""
    try:
        with open("/proc/stat", "rb") as fh:
            parts = fh.readline().split()
        v = [int(x) for x in parts[1:8]]
    except (OSError, ValueError, IndexError):
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK
