"""Sessions: what a reconnecting client resumes (its user, channels and positions).

A session record lives in the broker for ``session_ttl``, so a client that reconnects
to any node within it gets its subscriptions back. A session is a convenience, not a
guarantee: the client holds its own positions, so an unavailable broker costs the
resume, never data. It is never silent either: a resume that could not be loaded
says why in the welcome (``resume_failed``), and failures count and log
(``faults.py``).
"""

from __future__ import annotations

import logging

import msgspec

from staywire.brokers.base import Broker
from staywire.exceptions import BrokerUnavailable
from staywire.protocol.stream import Position
from staywire.server.background import Background
from staywire.server.faults import FaultLog

__all__ = ["ResumeFailed", "SessionRecord", "Sessions", "decode_session"]

log = logging.getLogger("staywire.server")


class ResumeFailed:
    """Why a requested session was not resumed: the ``resume_failed`` of the welcome."""

    UNKNOWN = "unknown"  # expired, never existed, or unreadable
    OTHER_USER = "other_user"  # the session belongs to another user
    UNAVAILABLE = "unavailable"  # the broker could not be asked: the session may still exist


class SessionRecord(msgspec.Struct):
    user: str
    subs: dict[str, Position] = {}
    # The channels the server API subscribed the session to (``subscribe``): joined
    # server-side again when the session resumes, on any node.
    api_subs: list[str] = []


class _StoredRecord(msgspec.Struct):
    user: str
    # Records written before 0.1.0's Position type held ``[epoch, offset]`` arrays; a
    # node reading one during a rolling upgrade must still resume that session.
    subs: dict[str, Position | tuple[str, int]] = {}
    api_subs: list[str] = []


_decoder = msgspec.json.Decoder(_StoredRecord)


def decode_session(raw: bytes) -> SessionRecord | None:
    try:
        stored = _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    return SessionRecord(stored.user, {
        c: p if isinstance(p, Position) else Position(p[0], p[1]) for c, p in stored.subs.items()},
        stored.api_subs)


def encode_session(user: str, subs: dict[str, Position],
                   api_subs: tuple[str, ...] = ()) -> bytes:
    return msgspec.json.encode(SessionRecord(user=user, subs=subs, api_subs=list(api_subs)))


class Sessions:
    __slots__ = ("_broker", "_ttl", "_background", "_faults")

    def __init__(self, broker: Broker, ttl: float, background: Background,
                 faults: FaultLog) -> None:
        self._broker = broker
        self._ttl = ttl
        self._background = background
        self._faults = faults

    async def load(self, session_id: str, user: str) -> tuple[SessionRecord | None, str | None]:
        """The record of ``user``'s session, or why there is none (``ResumeFailed``)."""
        try:
            raw = await self._broker.load_session(session_id)
        except BrokerUnavailable as exc:
            self._faults.failed("load_session", exc)
            return None, ResumeFailed.UNAVAILABLE
        self._faults.worked("load_session")
        record = decode_session(raw) if raw is not None else None
        if record is None:
            return None, ResumeFailed.UNKNOWN
        if record.user != user:
            return None, ResumeFailed.OTHER_USER
        return record, None

    async def save(self, session_id: str, record: bytes) -> None:
        try:
            await self._broker.save_session(session_id, record, self._ttl)
        except BrokerUnavailable as exc:
            # Not the client's error: it holds its own positions, and resubscribes with
            # them if the session is gone. Counted and logged once per outage.
            self._faults.failed("save_session", exc)
            return
        self._faults.worked("save_session")

    def save_later(self, session_id: str, record: bytes) -> None:
        """Save without waiting (a connection that is closing); ``stop()`` waits for it."""
        self._background.spawn(self.save(session_id, record))
