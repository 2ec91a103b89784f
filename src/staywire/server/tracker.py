"""The node's open connections: the set, the count per client IP, and the open/close
log lines and counters.

A connection is counted once its upgrade completed: a handshake that fails after
routing never reaches ``closed``, and would leak a count.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Generic, Protocol, TypeVar

from staywire.protocol.codes import CloseCode
from staywire.server.auth import Identity
from staywire.server.metrics import NOTABLE_CLOSES, Stats

__all__ = ["ConnectionTable", "Tracked"]

log = logging.getLogger("staywire.server")


class Tracked(Protocol):
    """What the table reads of a connection."""

    @property
    def id(self) -> str: ...
    @property
    def ip(self) -> str: ...
    @property
    def identity(self) -> Identity | None: ...
    @property
    def session(self) -> str: ...
    @property
    def resumed(self) -> bool: ...
    @property
    def opened_at(self) -> float: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str: ...


C = TypeVar("C", bound=Tracked)


class ConnectionTable(Generic[C]):
    __slots__ = ("connections", "per_ip", "_stats")

    def __init__(self, stats: Stats) -> None:
        self.connections: set[C] = set()
        self.per_ip: Counter[str] = Counter()
        self._stats = stats

    def __len__(self) -> int:
        return len(self.connections)

    def opened(self, conn: C) -> None:
        self.per_ip[conn.ip] += 1
        self.connections.add(conn)
        self._stats.connections_opened += 1

    def welcomed(self, conn: C) -> None:
        ident = conn.identity
        log.info("open conn=%s ip=%s user=%s session=%s%s", conn.id, conn.ip,
                 (ident.user or "-") if ident else "-", conn.session,
                 " resumed" if conn.resumed else "")

    def closed(self, conn: C) -> None:
        self.connections.discard(conn)
        self.per_ip[conn.ip] -= 1
        if self.per_ip[conn.ip] <= 0:
            del self.per_ip[conn.ip]
        code = conn.close_code if conn.close_code is not None else int(CloseCode.ABNORMAL)
        self._stats.closes[code] += 1
        if code in NOTABLE_CLOSES:
            ident = conn.identity
            self._stats.recent_closes.append((time.time(), code, conn.close_reason or "",
                                              ident.user if ident else "", conn.id))
        log.info("close conn=%s ip=%s code=%d reason=%s duration=%.1fs", conn.id, conn.ip, code,
                 conn.close_reason or "-", time.monotonic() - conn.opened_at)
