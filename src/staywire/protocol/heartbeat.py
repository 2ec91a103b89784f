"""The server's heartbeat rule, with time passed in.

The server pings every ``interval``; after a ping, the peer must send *anything*
within ``timeout`` or it is dead (close 4000). Any inbound traffic proves the
peer alive, so a busy connection is never pinged out; TCP keepalive is not
relied on (too infrequent, and proxies answer it for dead peers).

The browser client's ``static/heartbeat.js`` follows this same per-ping rule (and
adds its allowance for throttled background timers). The Python client follows
its own rule, a silence deadline (``staywire.client.heartbeat.ClientHeartbeat``).
"""

from __future__ import annotations

import enum

__all__ = ["HeartbeatAction", "ServerHeartbeat"]


class HeartbeatAction(enum.Enum):
    NONE = 0
    PING = 1
    DEAD = 2


class ServerHeartbeat:
    """Pings on a fixed schedule, whether or not the peer talks: a proxy's read timeout
    (nginx ``proxy_read_timeout``) counts only what the server sends, so a server that
    stays silent while its client talks would still be cut off.

    ``last_seen`` is the input: the caller sets it to the time of any inbound frame (an
    attribute, not a method, because the connection does so for every frame)."""

    __slots__ = ("interval", "timeout", "last_seen", "ping_sent_at")

    def __init__(self, interval: float, timeout: float, now: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.last_seen = now
        self.ping_sent_at = now  # the schedule starts at the connection's start

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
