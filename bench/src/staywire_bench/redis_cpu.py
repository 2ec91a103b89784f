"""The CPU time of the bench's redis-server, from ``INFO cpu`` (microseconds, where
/proc's clock ticks are 10 ms: too coarse for a window of a few hundred publications).

Read by the load generator around a workload, so that the Redis CPU per publication
can be reported next to the subscriber count (one ``PUBLISH`` per node per channel:
the figure must not grow with the subscribers). Redis is not free when idle (its cron,
the node's pings): that rate, measured just before, is taken off the window, or a long
window (a fan-out to many subscribers) would look dearer per publication."""

from __future__ import annotations

import socket

__all__ = ["RedisCpu", "per_publication_us", "redis_cpu_seconds"]


class RedisCpu:
    """``used_cpu_sys + used_cpu_user`` of the redis-server on 127.0.0.1:``port``, asked
    on one connection kept open: a connection per sample would put its accept and close
    into the window measured."""

    def __init__(self, port: int, timeout: float = 1.0) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def sample(self) -> tuple[float, int] | None:
        """The CPU seconds so far and the ``PUBLISH`` commands run so far (their count per
        publication is exact where the CPU time is noisy: 1 means one per node); None
        when Redis cannot be asked."""
        full = self.sample_calls()
        if full is None:
            return None
        return full[0], full[1].get("publish", 0)

    def sample_calls(self) -> tuple[float, dict[str, int]] | None:
        """The CPU seconds so far and the calls so far of every command Redis has run
        (``INFO commandstats``: what a window's CPU was spent on); None when Redis cannot
        be asked."""
        try:
            if self._sock is None:
                self._sock = socket.create_connection(("127.0.0.1", self.port),
                                                      timeout=self.timeout)
            data = _ask(self._sock)
        except (OSError, ValueError):
            self.close()
            return None
        cpu = _parse(data)
        return None if cpu is None else (cpu[0], _calls(data))

    def seconds(self) -> float | None:
        sample = self.sample()
        return None if sample is None else sample[0]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def redis_cpu_seconds(port: int, timeout: float = 1.0) -> float | None:
    """One sample on a connection of its own (tests, one-off use)."""
    probe = RedisCpu(port, timeout)
    try:
        return probe.seconds()
    finally:
        probe.close()


def _ask(sock: socket.socket) -> bytes:
    sock.sendall(b"INFO cpu commandstats\r\n")
    data = b""
    # A bulk reply: "$<len>\r\n<body>\r\n"; bounded reads of one small reply.
    for _ in range(64):
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("redis-server closed the connection")
        data += chunk
        head, sep, body = data.partition(b"\r\n")
        if sep and head.startswith(b"$") and len(body) >= int(head[1:]) + 2:
            return data
    raise ValueError("INFO reply too long")


def _parse(data: bytes) -> tuple[float, int] | None:
    total = 0.0
    found = 0
    publishes = 0  # no line until the first PUBLISH
    for line in data.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key in (b"used_cpu_sys", b"used_cpu_user"):
            total += float(value)
            found += 1
        elif key == b"cmdstat_publish":
            publishes = int(value.split(b",")[0].partition(b"=")[2])
    return (total, publishes) if found == 2 else None


def _calls(data: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in data.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.startswith(b"cmdstat_"):
            try:
                out[key[8:].decode()] = int(value.split(b",")[0].partition(b"=")[2])
            except ValueError:
                continue
    return out


def per_publication_us(before: float | None, after: float | None, seconds: float,
                       idle_per_s: float | None, publications: int) -> float | None:
    """Redis CPU microseconds per publication over a window of ``seconds``, less what
    Redis spends idle in that long; None when a sample or the publications are missing."""
    if before is None or after is None or publications <= 0:
        return None
    used = after - before - (idle_per_s or 0.0) * seconds
    return max(0.0, used) * 1e6 / publications
