"""The CPU time of the bench's redis-server, from ``INFO cpu`` (microseconds, where
/proc's clock ticks are 10 ms: too coarse for a window of a few hundred publications).

Read by the load generator around a workload, so that the Redis CPU per publication
can be reported next to the subscriber count (one ``PUBLISH`` per node per channel:
the figure must not grow with the subscribers)."""

from __future__ import annotations

import socket

__all__ = ["redis_cpu_seconds"]


def redis_cpu_seconds(port: int, timeout: float = 1.0) -> float | None:
    """``used_cpu_sys + used_cpu_user`` of the redis-server on 127.0.0.1:``port``;
    None when it cannot be asked."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"INFO cpu\r\n")
            data = b""
            # A bulk reply: "$<len>\r\n<body>\r\n"; bounded reads, one small reply.
            for _ in range(64):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n")
                if sep and head.startswith(b"$") and len(body) >= int(head[1:]):
                    break
    except (OSError, ValueError):
        return None
    total = 0.0
    found = 0
    for line in data.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key in (b"used_cpu_sys", b"used_cpu_user"):
            try:
                total += float(value)
            except ValueError:
                return None
            found += 1
    return total if found == 2 else None
