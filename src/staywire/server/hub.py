"""The hub: which local connections listen to which channel, and the fan-out path.

Fan-out is the hottest path in Staywire. A publication is encoded to JSON and
to a WebSocket frame once; the same bytes object is appended to every
subscriber's pending output; each connection's pending output is written with
one ``write`` at the end of the event-loop tick (``flush``), so a connection that
receives 50 messages in one tick costs one system call, not 50. Fan-out never
awaits anything: a slow subscriber is detected by the size of its backlog and
closed (4008), it cannot delay the others.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from staywire.brokers.base import Publication
from staywire.protocol.envelope import msg_envelope
from staywire.server.transport import text_frame

if TYPE_CHECKING:
    from staywire.server.connection import Connection

__all__ = ["Hub"]


class Hub:
    __slots__ = ("channels", "_dirty", "_loop", "_flush_scheduled", "stats")

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: object) -> None:
        self.channels: dict[str, set[Connection]] = {}
        self._dirty: list[Connection] = []
        self._loop = loop
        self._flush_scheduled = False
        self.stats = stats

    def add(self, channel: str, conn: Connection) -> bool:
        """Add a subscriber; True when it is the channel's first on this node."""
        subs = self.channels.get(channel)
        if subs is None:
            self.channels[channel] = {conn}
            return True
        subs.add(conn)
        return False

    def remove(self, channel: str, conn: Connection) -> bool:
        """Remove a subscriber; True when the channel has none left on this node."""
        subs = self.channels.get(channel)
        if subs is None:
            return False
        subs.discard(conn)
        if not subs:
            del self.channels[channel]
            return True
        return False

    def subscribers(self, channel: str) -> int:
        subs = self.channels.get(channel)
        return len(subs) if subs else 0

    def on_publication(self, pub: Publication) -> None:
        """Called by the broker for every publication of a channel this node listens to."""
        subs = self.channels.get(pub.channel)
        if not subs:
            return
        frame = text_frame(msg_envelope(pub.channel, pub.epoch, pub.offset, pub.data))
        # A copy: a delivery may close a slow consumer, which leaves the set.
        for conn in list(subs):
            conn.deliver(pub, frame)

    def mark_dirty(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every connection's pending output, one write per connection."""
        self._flush_scheduled = False
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            conn.flush()
