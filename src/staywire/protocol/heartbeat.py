"""Heartbeat deadlines, with time passed in.

The server pings every ``interval``; after a ping, the peer must send *anything*
within ``timeout`` or it is dead (close 4000). Any inbound traffic proves the
peer alive, so a busy connection is never pinged out; TCP keepalive is not
relied on (too infrequent, and proxies answer it for dead peers).
"""

from __future__ import annotations

import enum

__all__ = ["Heartbeat", "HeartbeatAction"]


class HeartbeatAction(enum.Enum):
    NONE = 0
    PING = 1
    DEAD = 2


class Heartbeat:
    """Pings on a fixed schedule, whether or not the peer talks: a proxy's read timeout
    (nginx ``proxy_read_timeout``) counts only what the server sends, so a server that
    stays silent while its client talks would still be cut off."""

    __slots__ = ("interval", "timeout", "last_seen", "ping_sent_at")

    def __init__(self, interval: float, timeout: float, now: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.last_seen = now
        self.ping_sent_at = now  # the schedule starts at the connection's start

    def seen(self, now: float) -> None:
        """Inbound traffic of any kind arrived: the peer is alive."""
        self.last_seen = now

    @property
    def awaiting(self) -> bool:
        """A ping is out and nothing has arrived since it was sent."""
        return self.last_seen < self.ping_sent_at

    def poll(self, now: float) -> HeartbeatAction:
        """What to do now: nothing, send a ping (recorded as sent), or declare the peer dead."""
        if self.awaiting:
            if now - self.ping_sent_at >= self.timeout:
                return HeartbeatAction.DEAD
            return HeartbeatAction.NONE
        if now - self.ping_sent_at >= self.interval:
            self.ping_sent_at = now
            return HeartbeatAction.PING
        return HeartbeatAction.NONE

    def next_deadline(self) -> float:
        """When ``poll`` next has something to do."""
        if self.awaiting:
            return self.ping_sent_at + self.timeout
        return self.ping_sent_at + self.interval
