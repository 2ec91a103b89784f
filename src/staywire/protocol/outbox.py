"""The client's outbox: every publish, in order, until the server acknowledges it.

Why it exists: a publish written to a socket that then dies may or may not have
reached the server. The only way to lose nothing is to keep each publish until
its ``ack`` arrives and send it again on the next connection; the idempotency
``key`` it carries makes the server's dedupe turn the second copy into an ack
of the first, so each lands exactly once.

Life of an entry::

    add() ──> unsent ──assign(id)──> in flight ──ack(id)──> gone
                 ^                        │
                 └──── connection_lost() ─┘     (replayed in seq order)

The bound (``max_messages``, ``max_bytes``) counts every entry held, sent or
not: after a disconnect all of them are replayed, so all of them are memory
the client must keep. Over the bound ``add`` raises ``QueueFull`` and keeps
nothing, so the application learns at once instead of losing data later.

Sans-I/O: storage is injected (``OutboxStore``), request ids are chosen by the
caller, and nothing here awaits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from staywire.exceptions import QueueFull

__all__ = ["Outbox", "OutboxEntry", "OutboxStore"]


@dataclass(slots=True)
class OutboxEntry:
    """One publish: ``data`` is its JSON encoding (or, with ``binary``, the bytes to send
    in a binary frame), kept so that a replay sends the same bytes."""

    seq: int
    key: str
    channel: str
    data: bytes
    request_id: int | None = None  # the ``pub`` id on the current connection; None: not sent
    refusals: int = 0  # transient refusals (rate_limited, unavailable) so far
    binary: bool = False  # protocol v2 binary data, not JSON
    # A piece of a transfer: the JSON of its chunk object (``data`` is then its bytes,
    # sent in a binary frame) and the transfer's id. Never stored: a transfer does not
    # outlive the process that reads its source.
    chunk: bytes | None = None
    transfer: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


class OutboxStore(Protocol):
    """Where entries survive a restart of the client process (see ``SqliteOutboxStore``)."""

    def load(self) -> list[OutboxEntry]:
        """Every stored entry, in ``seq`` order."""
        ...

    def add(self, entry: OutboxEntry) -> None: ...

    def remove(self, key: str) -> None: ...


class Outbox:
    """Publishes waiting for an ack, in the order they were made."""

    def __init__(
        self,
        *,
        max_messages: int | None = None,
        max_bytes: int | None = None,
        store: OutboxStore | None = None,
    ) -> None:
        if max_messages is not None and max_messages < 1:
            raise ValueError("max_messages must be >= 1 or None")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1 or None")
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._store = store
        self._entries: dict[str, OutboxEntry] = {}  # key -> entry, insertion (= seq) order
        self._by_request: dict[int, str] = {}
        self._bytes = 0
        self._unsent_bytes = 0
        self._next_seq = 1
        if store is not None:
            self._restore(store.load())

    def _restore(self, entries: Iterable[OutboxEntry]) -> None:
        """Take back what an earlier process left, without applying the bound: it is already ours."""
        for entry in sorted(entries, key=lambda e: e.seq):
            entry.request_id = None
            self._entries[entry.key] = entry
            self._bytes += entry.size
            self._unsent_bytes += entry.size
            self._next_seq = max(self._next_seq, entry.seq + 1)

    # -- queries -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[OutboxEntry]:
        return iter(list(self._entries.values()))

    @property
    def total_bytes(self) -> int:
        """Bytes of every entry held (the bound applies to this)."""
        return self._bytes

    @property
    def unsent_bytes(self) -> int:
        """Bytes of entries not yet written to the current connection."""
        return self._unsent_bytes

    @property
    def in_flight(self) -> int:
        """Entries written to the current connection and not yet answered."""
        return len(self._by_request)

    def get(self, key: str) -> OutboxEntry | None:
        return self._entries.get(key)

    def unsent(self) -> list[OutboxEntry]:
        """Entries not sent on the current connection, oldest first: the next to send."""
        return [e for e in self._entries.values() if e.request_id is None]

    def by_request(self, request_id: int) -> OutboxEntry | None:
        key = self._by_request.get(request_id)
        return None if key is None else self._entries.get(key)

    # -- transitions -------------------------------------------------------------

    def add(self, channel: str, data: bytes, key: str, binary: bool = False, *,
            chunk: bytes | None = None, transfer: str | None = None) -> OutboxEntry:
        """Queue a publish; raise ``QueueFull`` (keeping nothing) when it would exceed the bound."""
        if key in self._entries:
            raise ValueError(f"idempotency key already in the outbox: {key!r}")
        if self._max_messages is not None and len(self._entries) + 1 > self._max_messages:
            raise QueueFull(
                f"outbox holds {len(self._entries)} messages (max {self._max_messages})"
            )
        if self._max_bytes is not None and self._bytes + len(data) > self._max_bytes:
            raise QueueFull(
                f"outbox holds {self._bytes} bytes; {len(data)} more exceeds max {self._max_bytes}"
            )
        entry = OutboxEntry(seq=self._next_seq, key=key, channel=channel, data=data,
                            binary=binary or chunk is not None, chunk=chunk,
                            transfer=transfer)
        self._next_seq += 1
        if self._store is not None and chunk is None:
            self._store.add(entry)  # before holding it: a store failure leaves nothing half-done
        self._entries[key] = entry
        self._bytes += entry.size
        self._unsent_bytes += entry.size
        return entry

    def assign(self, entry: OutboxEntry, request_id: int) -> None:
        """Record that ``entry`` was written to the current connection as ``pub`` ``request_id``."""
        if entry.key not in self._entries:
            raise KeyError(entry.key)
        if entry.request_id is None:
            self._unsent_bytes -= entry.size
        else:
            self._by_request.pop(entry.request_id, None)
        entry.request_id = request_id
        self._by_request[request_id] = entry.key

    def ack(self, request_id: int) -> OutboxEntry | None:
        """The server acknowledged ``pub`` ``request_id``: forget its entry and return it."""
        return self._remove_request(request_id)

    def reject(self, request_id: int) -> OutboxEntry | None:
        """The server answered ``error``: the publish will never land; forget it and return it."""
        return self._remove_request(request_id)

    def refused(self, request_id: int) -> OutboxEntry | None:
        """The server refused ``pub`` ``request_id`` for now (rate limited, broker down):
        nothing was published, so the entry stays, unsent, to be sent again with its key."""
        key = self._by_request.pop(request_id, None)
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            return None
        entry.request_id = None
        entry.refusals += 1
        self._unsent_bytes += entry.size
        return entry

    def discard(self, key: str) -> OutboxEntry | None:
        """Drop an entry whatever its state (the application gave up on it)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._forget(entry)
        return entry

    def connection_lost(self) -> None:
        """Every in-flight entry becomes unsent again: it is replayed, in seq order, next time."""
        for entry in self._entries.values():
            if entry.request_id is not None:
                entry.request_id = None
                self._unsent_bytes += entry.size
        self._by_request.clear()

    def _remove_request(self, request_id: int) -> OutboxEntry | None:
        key = self._by_request.pop(request_id, None)
        if key is None:
            return None
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        entry.request_id = None  # already popped from _by_request
        self._bytes -= entry.size
        if self._store is not None and entry.chunk is None:
            self._store.remove(entry.key)
        return entry

    def _forget(self, entry: OutboxEntry) -> None:
        self._bytes -= entry.size
        if entry.request_id is None:
            self._unsent_bytes -= entry.size
        else:
            self._by_request.pop(entry.request_id, None)
            entry.request_id = None
        if self._store is not None and entry.chunk is None:
            self._store.remove(entry.key)
