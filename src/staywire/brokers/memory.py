"""The embedded broker: streams, history, idempotency keys and sessions in this process.

For one node. Everything is lost when the process stops, which is why every
stream gets a fresh epoch at start: a client that recovers across a restart is
told ``recovered: false`` instead of being handed offsets of another stream.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from staywire.protocol.stream import Position, Publication
from staywire.brokers.base import (
    Broker,
    HistoryLimits,
    HistoryPolicy,
    HistoryResult,
    PublicationHandler,
    PublishResult,
)

__all__ = ["MemoryBroker"]

# Streams no node listens to and whose history has expired are forgotten once there are
# this many (see _maybe_forget_idle).
_FORGET_AT = 10_000


class _Stream:
    __slots__ = ("epoch", "offset", "entries", "last_publish", "limits", "bytes")

    def __init__(self, now: float, limits: HistoryLimits) -> None:
        self.epoch = secrets.token_hex(4)
        self.offset = 0
        self.entries: deque[tuple[float, Publication]] = deque()
        self.last_publish = now
        self.limits = limits  # read once: a stream keeps the limits it was created with
        self.bytes = 0  # data bytes in entries


class MemoryBroker(Broker):
    def __init__(
        self,
        *,
        history_size: int = 100,
        history_ttl: float = 300.0,
        dedupe_window: float = 120.0,
        max_dedupe_keys: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
        policy: HistoryPolicy | None = None,
    ) -> None:
        default = HistoryLimits(history_size, history_ttl)
        self._policy: HistoryPolicy = policy or (lambda channel: default)
        self._dedupe_window = dedupe_window
        self._max_dedupe_keys = max_dedupe_keys
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._subscribed: set[str] = set()
        # (channel, key) -> (expires_at, result); insertion order is expiry order
        # because the window is the same for every key.
        self._keys: OrderedDict[tuple[str, str], tuple[float, PublishResult]] = OrderedDict()
        self._sessions: dict[str, tuple[float, bytes]] = {}
        self._on_publication: PublicationHandler | None = None
        self._started = False

    async def start(self, on_publication: PublicationHandler) -> None:
        self._on_publication = on_publication
        self._started = True

    async def close(self) -> None:
        self._started = False
        self._on_publication = None

    @property
    def available(self) -> bool:
        return self._started

    async def ping(self) -> None:
        return None

    def _stream(self, channel: str, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._streams[channel] = _Stream(now, self._policy(channel))
        return stream

    def _trim(self, stream: _Stream, now: float) -> None:
        entries = stream.entries
        size = stream.limits.size
        max_bytes = stream.limits.max_bytes
        while entries and (len(entries) > size or entries[0][0] <= now
                           or (max_bytes is not None and stream.bytes > max_bytes)):
            stream.bytes -= len(entries.popleft()[1].data)

    def _expire_keys(self, now: float) -> None:
        keys = self._keys
        while keys:
            k, (expires, _) = next(iter(keys.items()))
            if expires > now and len(keys) <= self._max_dedupe_keys:
                break
            del keys[k]

    def publish_nowait(self, channel: str, data: bytes, key: str | None = None,
                       binary: bool = False, chunk: bytes | None = None) -> PublishResult:
        """``publish`` without a coroutine: the memory broker never waits."""
        now = self._clock()
        if key is not None:
            self._expire_keys(now)
            seen = self._keys.get((channel, key))
            if seen is not None:
                r = seen[1]
                return PublishResult(r.epoch, r.offset, duplicate=True)
        stream = self._streams.get(channel) or self._stream(channel, now)
        stream.offset += 1
        stream.last_publish = now
        pub = Publication(channel, stream.epoch, stream.offset, data, binary, chunk)
        if stream.limits.size > 0:
            stream.entries.append((now + stream.limits.ttl, pub))
            stream.bytes += len(data)
            self._trim(stream, now)
        result = PublishResult(stream.epoch, stream.offset)
        if key is not None:
            self._keys[(channel, key)] = (now + self._dedupe_window, result)
        if channel in self._subscribed and self._on_publication is not None:
            self._on_publication(pub)
        if len(self._streams) >= _FORGET_AT:  # checked here: a call per publish otherwise
            self._maybe_forget_idle(now)
        return result

    async def publish(self, channel: str, data: bytes, *, key: str | None = None,
                      binary: bool = False, chunk: bytes | None = None) -> PublishResult:
        return self.publish_nowait(channel, data, key, binary, chunk)

    def key_seen_nowait(self, channel: str, key: str) -> bool:
        self._expire_keys(self._clock())
        return (channel, key) in self._keys

    async def key_seen(self, channel: str, key: str) -> bool:
        return self.key_seen_nowait(channel, key)

    def _maybe_forget_idle(self, now: float) -> None:
        # Streams whose history has fully expired and that no node listens to are
        # dropped so that channel names cannot grow memory without bound. A later
        # publish recreates the stream with a new epoch: correct, since nothing of
        # the old one can be recovered any more.
        if len(self._streams) < _FORGET_AT:
            return
        for name in [
            n
            for n, s in self._streams.items()
            if n not in self._subscribed and now - s.last_publish > s.limits.ttl
        ]:
            del self._streams[name]

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def history(self, channel: str, since: Position | None, *, limit: int | None = None,
                      reverse: bool = False) -> HistoryResult:
        now = self._clock()
        stream = self._stream(channel, now)
        self._trim(stream, now)
        position = Position(stream.epoch, stream.offset)
        if since is None or since.epoch != stream.epoch or limit == 0:
            return HistoryResult(position, [])
        if reverse:
            pubs = [p for _, p in reversed(stream.entries) if p.offset < since.offset]
        else:
            pubs = [p for _, p in stream.entries if p.offset > since.offset]
        return HistoryResult(position, pubs if limit is None else pubs[:limit])

    async def save_session(self, session_id: str, record: bytes, ttl: float) -> None:
        now = self._clock()
        self._sessions[session_id] = (now + ttl, record)
        if len(self._sessions) % 1024 == 0:
            for sid in [s for s, (exp, _) in self._sessions.items() if exp <= now]:
                del self._sessions[sid]

    async def load_session(self, session_id: str) -> bytes | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._sessions[session_id]
            return None
        return entry[1]

    async def delete_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
