"""The Python client's heartbeat rule: when to ping, and when a silent connection is dead.

Why the client needs its own deadline: a black-holed link (a NAT entry gone, a
cable pulled, a proxy that stopped forwarding) delivers no FIN and no RST, so
TCP keeps the socket "up" for many minutes. The only way to notice is that
nothing arrives. The client pings every ``interval``; the server answers (and
pings on its own schedule), so on a healthy link something arrives at least
every ``interval``. When nothing at all has arrived for ``interval + timeout``
the connection is dead, and the client drops it without waiting for TCP.

This is a silence deadline, not the server's per-ping rule
(``staywire.protocol.heartbeat.ServerHeartbeat``): the client's own pings and the
server's pings both count as proof of life, so it needs no schedule of its own
verdicts, only the time of the last byte.

Sans-I/O: times are passed in (``loop.time()`` in the client, a fake clock in
tests).
"""

from __future__ import annotations

__all__ = ["ClientHeartbeat"]


class ClientHeartbeat:
    """Ping schedule and liveness deadline for one connection."""

    __slots__ = ("interval", "last_received", "next_ping_at", "timeout")

    def __init__(self, *, interval: float, timeout: float, now: float) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("heartbeat interval and timeout must be > 0")
        self.interval = interval
        self.timeout = timeout
        self.last_received = now  # the connection just opened: that counts as traffic
        self.next_ping_at = now + interval

    @property
    def deadline(self) -> float:
        """The connection is dead at this time unless something arrives before it."""
        return self.last_received + self.interval + self.timeout

    def received(self, now: float) -> None:
        """Anything arrived (a message of any type): the link is alive."""
        self.last_received = max(self.last_received, now)

    def ping_due(self, now: float) -> bool:
        return now >= self.next_ping_at

    def ping_sent(self, now: float) -> None:
        self.next_ping_at = now + self.interval

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def next_wakeup(self) -> float:
        """When the caller must look again: the next ping or the deadline, whichever is first."""
        return min(self.next_ping_at, self.deadline)
