"""Sessions: what a reconnecting client resumes (its user, channels and positions).

A session record lives in the broker for ``session_ttl``, so a client that reconnects
to any node within it gets its subscriptions back. A session is a convenience, not a
guarantee: the client holds its own positions, so an unavailable broker costs the
resume, never data.
"""

from __future__ import annotations

import logging

import msgspec

from staywire.brokers.base import Broker
from staywire.exceptions import BrokerUnavailable
from staywire.protocol.stream import Position
from staywire.server.background import Background

__all__ = ["SessionRecord", "Sessions", "decode_session"]

log = logging.getLogger("staywire.server")


class SessionRecord(msgspec.Struct):
    user: str
    subs: dict[str, Position] = {}


class _StoredRecord(msgspec.Struct):
    user: str
    # Records written before 0.1.0's Position type held ``[epoch, offset]`` arrays; a
    # node reading one during a rolling upgrade must still resume that session.
    subs: dict[str, Position | tuple[str, int]] = {}


_decoder = msgspec.json.Decoder(_StoredRecord)


def decode_session(raw: bytes) -> SessionRecord | None:
    try:
        stored = _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    return SessionRecord(stored.user, {
        c: p if isinstance(p, Position) else Position(p[0], p[1]) for c, p in stored.subs.items()})


def encode_session(user: str, subs: dict[str, Position]) -> bytes:
    return msgspec.json.encode(SessionRecord(user=user, subs=subs))


class Sessions:
    __slots__ = ("_broker", "_ttl", "_background")

    def __init__(self, broker: Broker, ttl: float, background: Background) -> None:
        self._broker = broker
        self._ttl = ttl
        self._background = background

    async def load(self, session_id: str) -> SessionRecord | None:
        try:
            raw = await self._broker.load_session(session_id)
        except BrokerUnavailable:
            return None
        return decode_session(raw) if raw is not None else None

    async def save(self, session_id: str, record: bytes) -> None:
        try:
            await self._broker.save_session(session_id, record, self._ttl)
        except BrokerUnavailable:
            pass  # a session is a convenience: the client holds its own positions

    def save_later(self, session_id: str, record: bytes) -> None:
        """Save without waiting (a connection that is closing); ``stop()`` waits for it."""
        self._background.spawn(self.save(session_id, record))
