"""A persistent outbox store in one SQLite file (stdlib ``sqlite3``).

Why: an unacknowledged publish lives only in memory, so a client process that
crashes or restarts would lose it. With ``outbox_path`` set, every publish is
written here before it is sent and deleted when acked; the next process with the
same file replays what is left, with the same idempotency keys, so the server's
dedupe (``dedupe_window``, default 120 s) makes each land exactly once.

Writes are synchronous and small (one row); WAL mode with ``synchronous=NORMAL``
keeps each under a millisecond on a local disk while surviving a process crash
(not necessarily a power loss). One file must be used by one client at a time.
"""

from __future__ import annotations

import os
import sqlite3

from staywire.protocol.outbox import OutboxEntry

__all__ = ["SqliteOutboxStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY,
    key     TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    data    BLOB NOT NULL,
    binary  INTEGER NOT NULL DEFAULT 0
)
"""


class SqliteOutboxStore:
    """``OutboxStore`` over a SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "binary" not in columns:  # a file from before binary data: every entry is JSON
            self._db.execute("ALTER TABLE outbox ADD COLUMN binary INTEGER NOT NULL DEFAULT 0")

    def load(self) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT seq, key, channel, data, binary FROM outbox ORDER BY seq")
        return [
            OutboxEntry(seq=seq, key=key, channel=channel, data=bytes(data), binary=bool(kind))
            for seq, key, channel, data, kind in rows
        ]

    def add(self, entry: OutboxEntry) -> None:
        self._db.execute(
            "INSERT INTO outbox (seq, key, channel, data, binary) VALUES (?, ?, ?, ?, ?)",
            (entry.seq, entry.key, entry.channel, entry.data, int(entry.binary)),
        )

    def remove(self, key: str) -> None:
        self._db.execute("DELETE FROM outbox WHERE key = ?", (key,))

    def close(self) -> None:
        self._db.close()
