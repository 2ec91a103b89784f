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
import logging
from typing import Protocol

from staywire.brokers.base import Publication
from staywire.protocol import binary as binary_frames
from staywire.protocol.envelope import msg_envelope, msg_envelope_base64
from staywire.server.transport import OP_BINARY, data_frame, text_frame

__all__ = ["Hub", "Subscriber", "msg_frame"]

log = logging.getLogger("staywire.server")


# A publication that arrives within this long of the previous fan-out flush waits for
# the next flush instead of causing its own: a broker that delivers publications one per
# event-loop tick (Redis pub/sub) then still costs one write per subscriber per window,
# not one per publication. Bounded: at most this much latency is added, and only under
# a stream of publications; replies to requests never wait.
COALESCE_WINDOW = 0.001


class Subscriber(Protocol):
    """What the fan-out touches of a connection: its pending output, read directly.

    Attributes, not methods, on purpose: this loop runs once per delivery."""

    id: str
    binary: bool  # protocol v2: a binary publication reaches it as a binary frame
    out: list[bytes]
    out_size: int
    allowance: int  # bytes a recovery replay may add above max_send_buffer
    recovering: dict[str, list[Publication]] | None  # live publications held back per channel

    def flush(self) -> None: ...
    def slow_consumer(self) -> None: ...


def msg_frame(pub: Publication, binary: bool) -> bytes:
    """The WebSocket frame of one publication for a v2 (``binary``) or a v1 connection.

    JSON data is a text ``msg`` for both. Bytes are a binary ``msg`` (protocol/binary.py)
    under v2, and a text ``msg`` with the base64 of the bytes under v1."""
    if not pub.binary:
        return text_frame(msg_envelope(pub.channel, pub.epoch, pub.offset, pub.data))
    if binary:
        return data_frame(OP_BINARY, binary_frames.msg_frame(
            pub.channel, pub.epoch, pub.offset, pub.data, pub.chunk))
    return text_frame(msg_envelope_base64(pub.channel, pub.epoch, pub.offset, pub.data,
                                          pub.chunk))


class Hub:
    __slots__ = ("channels", "_dirty", "_loop", "_flush_soon", "_flush_timer", "_last_fanout",
                 "max_send_buffer", "deliveries")

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 max_send_buffer: int = 1024 * 1024) -> None:
        self.channels: dict[str, set[Subscriber]] = {}
        self._dirty: list[Subscriber] = []
        self._loop = loop
        self._flush_soon = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._last_fanout = 0.0
        self.max_send_buffer = max_send_buffer
        self.deliveries = 0  # publications times local subscribers (the API's info rates)

    def add(self, channel: str, conn: Subscriber) -> bool:
        """Add a subscriber; True when it is the channel's first on this node."""
        subs = self.channels.get(channel)
        if subs is None:
            self.channels[channel] = {conn}
            return True
        subs.add(conn)
        return False

    def remove(self, channel: str, conn: Subscriber) -> bool:
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
        """Called by the broker for every publication of a channel this node listens to.

        The loop is the hottest code in Staywire, so ``Connection.enqueue`` is inlined:
        one shared frame appended to each subscriber's pending output, sizes checked
        against the send-buffer bound, nothing awaited. Subscribers in the set are never
        closing (they leave every channel when they start to close); a slow consumer is
        closed after the loop, since closing leaves the set being iterated."""
        subs = self.channels.get(pub.channel)
        if not subs:
            return
        if pub.binary:
            self._on_bytes(subs, pub)
            return
        frame = text_frame(msg_envelope(pub.channel, pub.epoch, pub.offset, pub.data))
        self.deliveries += len(subs)
        n = len(frame)
        limit = self.max_send_buffer
        dirty = self._dirty
        slow: list[Subscriber] | None = None
        for conn in subs:
            recovering = conn.recovering
            if recovering is not None:
                buffered = recovering.get(pub.channel)
                if buffered is not None:
                    buffered.append(pub)
                    continue
            out = conn.out
            if not out:
                dirty.append(conn)
            out.append(frame)
            size = conn.out_size + n
            conn.out_size = size
            if size > limit and size > limit + conn.allowance:
                if slow is None:
                    slow = []
                slow.append(conn)
        self._fanned_out(slow, dirty)

    def _on_bytes(self, subs: set[Subscriber], pub: Publication) -> None:
        """``on_publication`` of binary data: the same loop, with a frame per protocol.

        A loop of its own so that the JSON one above stays free of the per-subscriber
        test (3-4% of its deliveries/s in-process). The binary frame is built once for
        every v2 subscriber, the base64 text frame once too, at the first v1 one."""
        frame = msg_frame(pub, True)
        text: bytes | None = None
        self.deliveries += len(subs)
        n = len(frame)
        limit = self.max_send_buffer
        dirty = self._dirty
        slow: list[Subscriber] | None = None
        for conn in subs:
            recovering = conn.recovering
            if recovering is not None:
                buffered = recovering.get(pub.channel)
                if buffered is not None:
                    buffered.append(pub)
                    continue
            out = conn.out
            if not out:
                dirty.append(conn)
            if conn.binary:
                out.append(frame)
                size = conn.out_size + n
            else:
                if text is None:
                    text = msg_frame(pub, False)
                out.append(text)
                size = conn.out_size + len(text)
            conn.out_size = size
            if size > limit and size > limit + conn.allowance:
                if slow is None:
                    slow = []
                slow.append(conn)
        self._fanned_out(slow, dirty)

    def _fanned_out(self, slow: list[Subscriber] | None, dirty: list[Subscriber]) -> None:
        """After a fan-out loop: close its slow consumers, schedule the flush."""
        if slow is not None:
            for conn in slow:
                conn.slow_consumer()
        if dirty and not self._flush_soon and self._flush_timer is None:
            now = self._loop.time()
            if now - self._last_fanout < COALESCE_WINDOW:
                self._flush_timer = self._loop.call_at(self._last_fanout + COALESCE_WINDOW,
                                                       self.flush)
            else:
                self._flush_soon = True
                self._loop.call_soon(self.flush)
            self._last_fanout = now

    def broadcast(self, channel: str, frame: bytes) -> None:
        """Queue one frame that is not a publication (presence ``join``/``leave``) for
        every subscriber of ``channel`` whose subscription is live; same bound as above.

        A subscriber still recovering the channel is skipped: its ``ack`` has not been
        sent, and it asks ``presence`` once it has."""
        subs = self.channels.get(channel)
        if not subs:
            return
        n = len(frame)
        limit = self.max_send_buffer
        slow: list[Subscriber] = []
        for conn in subs:
            recovering = conn.recovering
            if recovering is not None and channel in recovering:
                continue
            out = conn.out
            if not out:
                self.mark_dirty(conn)
            out.append(frame)
            size = conn.out_size + n
            conn.out_size = size
            if size > limit and size > limit + conn.allowance:
                slow.append(conn)
        for conn in slow:
            conn.slow_consumer()

    def mark_dirty(self, conn: Subscriber) -> None:
        """A connection has output to write: flush it at the end of this tick."""
        self._dirty.append(conn)
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every connection's pending output, one write per connection."""
        self._flush_soon = False
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:
                # One connection's failure must not leave the others unflushed: their
                # output would never be written (they are only re-queued when empty).
                log.exception("flush failed conn=%s", conn.id)
                conn.out.clear()
                conn.out_size = 0
