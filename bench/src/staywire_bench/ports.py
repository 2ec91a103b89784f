"""Free loopback ports for the processes the bench and the test suite start.

Asking the kernel for port 0 returns a port from the *ephemeral* range, the same
range it hands out as the local port of every outgoing connection. Between the
moment the port is picked and the moment the child process binds it, any client
on the machine may be given that port for a connect(), and the child then fails
with "address already in use" (this happened in CI). Ports below the ephemeral
range are never handed out that way, so the pick is made there: at random, never
twice in one process, and only when nothing is bound to it right now.

Under pytest-xdist each worker is a process of its own, with its own memory of the
ports it handed out: two could pick the same port in the moment before its server
binds it, or while a server restarts on it. So each worker picks from a slice of
the span of its own (the port modulo the number of workers).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below this live the well-known and registered services
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default
    return low, high


def _bindable(port: int) -> bool:
    # No SO_REUSEADDR: a socket in TIME_WAIT or any listener makes this fail.
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _worker_slice() -> tuple[int, int]:
    """``(index, workers)`` of this pytest-xdist worker, ``(0, 1)`` outside one."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if name.startswith("gw") and name[2:].isdigit() and count.isdigit() and int(count) > 1:
        return int(name[2:]) % int(count), int(count)
    return 0, 1


def free_port() -> int:
    """A loopback TCP port that nothing holds and the kernel will not hand out."""
    low, high = _ephemeral_range()
    if low - _LOWEST >= 1_000:
        span = (_LOWEST, low - 1)
    else:  # an unusual range: use what lies above it
        span = (high + 1, 65_535)
    index, workers = _worker_slice()
    for _ in range(500):  # bounded: the span has thousands of ports
        port = random.randint(*span)
        if port % workers != index:
            continue  # another worker's
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket() as s:  # nothing found: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
