"""Free loopback ports for the processes the bench and the test suite start.

Asking the kernel for port 0 returns a port from the *ephemeral* range, the same
range it hands out as the local port of every outgoing connection. Between the
moment the port is picked and the moment the child process binds it, any client
on the machine may be given that port for a connect(), and the child then fails
with "address already in use" (this happened in CI). Ports below the ephemeral
range are never handed out that way, so the pick is made there: at random, never
twice in one process, and only when nothing is bound to it right now.
"""

from __future__ import annotations

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


def free_port() -> int:
    """A loopback TCP port that nothing holds and the kernel will not hand out."""
    low, high = _ephemeral_range()
    if low - _LOWEST >= 1_000:
        span = (_LOWEST, low - 1)
    else:  # an unusual range: use what lies above it
        span = (high + 1, 65_535)
    for _ in range(500):  # bounded: the span has thousands of ports
        port = random.randint(*span)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket() as s:  # nothing found: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
