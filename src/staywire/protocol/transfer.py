"""Transfers: a payload of any size as a run of binary publications, one chunk each.

docs/protocol.md, *Transfers*, is the contract. Three parts, none of which does I/O
(time is passed in, the broker lookup is the caller's):

* ``TransferTable``: a node's view of the transfers its clients publish. Each chunk is
  checked on its own, in O(1) plus the hash of that one chunk, so no step of the
  server ever handles more than one chunk (the event loop is never blocked by a large
  transfer).
* ``Chunker``: a publisher's side. It cuts a source into chunks of at most the
  server's ``max_data_size``, keeps at most ``window`` unacknowledged and, after a
  reconnect, resumes from the first unacknowledged chunk.
* ``Receiver``: a subscriber's side. It assembles the chunks of each transfer from a
  subscription's publications, checks their continuity and the SHA-256, and ends a
  transfer that cannot complete with an error, never with truncated data.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

import msgspec

from staywire.exceptions import TransferFailed
from staywire.protocol.binary import Chunk
from staywire.protocol.codes import ErrorCode

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "Chunker",
    "OutChunk",
    "Receiver",
    "Received",
    "Step",
    "TransferCorrupt",
    "TransferFailed",
    "TransferRefused",
    "TransferTable",
    "chunk_key",
]

DEFAULT_WINDOW: Final = 8  # unacknowledged chunks a publisher keeps in flight
DEFAULT_TIMEOUT: Final = 30.0  # seconds without a chunk after which a transfer is given up
MAX_TRANSFERS: Final = 10_000  # transfers a node tracks at once; the idlest one goes first
_KEY_PREFIX: Final = "xfer:"


def chunk_key(transfer: str, seq: int) -> str:
    """The idempotency key the server derives for a chunk (at most 5 + 64 + 1 + 16 chars)."""
    return f"{_KEY_PREFIX}{transfer}:{seq}"


class TransferRefused(Exception):
    """A chunk the server does not publish: its ``error`` reply has this code and reason."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TransferCorrupt(TransferRefused):
    """The last chunk's ``sha256`` does not match what this node saw. When ``abort`` is
    set, earlier chunks were published: the caller publishes ``abort`` (no payload) so
    that subscribers end the transfer at once instead of at their timeout."""

    def __init__(self, reason: str, abort: Chunk | None) -> None:
        super().__init__(ErrorCode.TRANSFER_CORRUPT, reason)
        self.abort = abort


# -- the server's table ---------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    next_seq: int
    at: int  # bytes so far
    touched: float
    digest: hashlib._Hash | None  # None: this node did not see every chunk (a resume)
    done: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with a chunk the table accepted.

    ``again``: a chunk sent before (a resend after a reconnect or a refusal): publish it
    with ``key`` all the same, and the broker's dedupe acks it ``duplicate`` when it did
    land. ``lookup``: this node never saw the transfer; publish only when the broker
    knows ``lookup`` (the previous chunk's key, so the transfer was resumed from another
    node), then call ``TransferTable.resume``; otherwise refuse with ``transfer_unknown``.
    """

    key: str
    again: bool = False
    lookup: str | None = None


class TransferTable:
    """A node's transfers, by (channel, transfer id): the next chunk each one expects.

    Entries idle for ``timeout`` seconds are forgotten, and at most ``max_entries`` are
    kept (the idlest goes first), so a publisher that never finishes costs nothing for
    long. A forgotten transfer is remembered as gone for as long again, so its late
    chunks get ``transfer_unknown`` here rather than being resumed."""

    def __init__(self, *, max_size: int, timeout: float = DEFAULT_TIMEOUT,
                 max_entries: int = MAX_TRANSFERS) -> None:
        if max_size < 1 or timeout <= 0 or max_entries < 1:
            raise ValueError("max_size, timeout and max_entries must be > 0")
        self.max_size = max_size
        self.timeout = timeout
        self.max_entries = max_entries
        # Least recently touched first: expiry and eviction pop from the front.
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._gone: OrderedDict[tuple[str, str], float] = OrderedDict()  # name -> since

    def __len__(self) -> int:
        return len(self._entries)

    def step(self, channel: str, chunk: Chunk, payload: bytes | memoryview, now: float) -> Step:
        """Check one chunk of ``channel``; raise ``TransferRefused`` when it is not published."""
        self.sweep(now)
        name = (channel, chunk.transfer)
        size = len(payload)
        key = chunk_key(chunk.transfer, chunk.seq)
        entry = self._entries.get(name)
        if entry is None:
            if name in self._gone:
                raise TransferRefused(ErrorCode.TRANSFER_UNKNOWN,
                                      f"transfer {chunk.transfer!r} ended or timed out")
            if chunk.seq > 0:
                self._check_size(chunk.at + size)
                return Step(key, lookup=chunk_key(chunk.transfer, chunk.seq - 1))
            self._check_size(size)
            entry = _Entry(next_seq=0, at=0, touched=now, digest=hashlib.sha256())
            self._entries[name] = entry
            self._bound()
        if chunk.seq < entry.next_seq:
            self._touch(name, entry, now)
            return Step(key, again=True)
        if entry.done or chunk.seq != entry.next_seq or chunk.at != entry.at:
            expected = "no more chunks" if entry.done else (
                f"seq {entry.next_seq} at {entry.at}")
            raise TransferRefused(ErrorCode.TRANSFER_ORDER,
                                  f"chunk seq {chunk.seq} at {chunk.at}: expected {expected}")
        self._check_size(entry.at + size)
        if entry.digest is not None:
            entry.digest.update(payload)
        if chunk.last and entry.digest is not None and entry.digest.hexdigest() != chunk.sha256:
            self._forget(name, now)
            abort = (Chunk(transfer=chunk.transfer, seq=chunk.seq, at=entry.at,
                           abort=ErrorCode.TRANSFER_CORRUPT.value) if chunk.seq else None)
            raise TransferCorrupt("the last chunk's sha256 does not match the payload", abort)
        entry.next_seq += 1
        entry.at += size
        entry.done = chunk.last
        self._touch(name, entry, now)
        return Step(key)

    def resume(self, channel: str, chunk: Chunk, payload: bytes | memoryview,
               now: float) -> Step:
        """The broker knew the previous chunk's key: the transfer was started on another
        node. Track it from this chunk on; its digest is left to the subscribers, since
        this node did not see the bytes before it."""
        name = (channel, chunk.transfer)
        if name not in self._entries:
            self._entries[name] = _Entry(next_seq=chunk.seq, at=chunk.at, touched=now,
                                         digest=None)
            self._bound()
        return self.step(channel, chunk, payload, now)

    def sweep(self, now: float) -> int:
        """Forget transfers idle for ``timeout``; the number forgotten."""
        forgotten = 0
        entries = self._entries
        while entries:
            name, entry = next(iter(entries.items()))
            if now - entry.touched < self.timeout:
                break
            self._forget(name, now)
            forgotten += 1
        gone = self._gone
        while gone and now - next(iter(gone.values())) >= self.timeout:
            gone.popitem(last=False)
        return forgotten

    def _check_size(self, total: int) -> None:
        if total > self.max_size:
            raise TransferRefused(ErrorCode.TRANSFER_TOO_LARGE,
                                  f"transfer over max_transfer_size ({self.max_size} bytes)")

    def _touch(self, name: tuple[str, str], entry: _Entry, now: float) -> None:
        entry.touched = now
        self._entries.move_to_end(name)

    def _forget(self, name: tuple[str, str], now: float) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None and not entry.done:
            self._gone[name] = now
            self._gone.move_to_end(name)
            while len(self._gone) > self.max_entries:
                self._gone.popitem(last=False)

    def _bound(self) -> None:
        while len(self._entries) > self.max_entries:
            name = next(iter(self._entries))
            self._forget(name, self._entries[name].touched)


# -- the publisher's side -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutChunk:
    """One chunk to send: its header's ``chunk`` object (JSON) and its payload."""

    seq: int
    chunk: Chunk
    payload: bytes

    @property
    def header(self) -> bytes:
        return msgspec.json.encode(self.chunk)


class Chunker:
    """Cuts a payload into chunks and tracks which the server acknowledged.

    The caller pushes the source's bytes with ``feed`` (while ``wants_data``), then calls
    ``finish``; it sends what ``next_chunk`` gives and reports ``sent``/``acked``. At most
    ``window`` chunks are unacknowledged. After a reconnect the caller sends every
    unacknowledged chunk again, first unacknowledged first, and the first one alone
    until it is acknowledged (docs/protocol.md, *Transfers*): the Python client's outbox
    does (client/publisher.py), since it replays every publish."""

    def __init__(self, transfer: str, *, chunk_size: int, window: int = DEFAULT_WINDOW,
                 size: int | None = None, meta: bytes | None = None) -> None:
        if chunk_size < 1 or window < 1:
            raise ValueError("chunk_size and window must be >= 1")
        self.transfer = transfer
        self.chunk_size = chunk_size
        self.window = window
        self.size = size
        self._meta = msgspec.Raw(meta) if meta else None
        self._buffer = bytearray()
        self._finished = False
        self._digest = hashlib.sha256()
        self._cut_at = 0  # bytes cut into chunks so far
        self._next_seq = 0
        self._pending: deque[OutChunk] = deque()  # cut, not acknowledged, in seq order
        self._sent: set[int] = set()  # handed to the publish path, not acknowledged
        self.acked_bytes = 0

    @property
    def wants_data(self) -> bool:
        """More source bytes may be read: fewer than ``window`` chunks are held (so what is
        held is at most the window and one chunk, plus the last piece fed)."""
        return not self._finished and len(self._pending) < self.window

    @property
    def done(self) -> bool:
        """Every chunk, the last one included, was acknowledged."""
        return self._finished and not self._buffer and not self._pending and self._next_seq > 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise ValueError("feed() after finish()")
        self._buffer += data
        if self.size is not None and self._cut_at + len(self._buffer) > self.size:
            raise ValueError(f"the source is longer than its announced size {self.size}")
        # Keep back at least one byte until finish(): only then is a chunk known to be last.
        while len(self._buffer) > self.chunk_size:
            self._cut(self.chunk_size, last=False)

    def finish(self) -> None:
        if self._finished:
            return
        if self.size is not None and self._cut_at + len(self._buffer) != self.size:
            raise ValueError(f"the source ended at {self._cut_at + len(self._buffer)} bytes, "
                             f"not its announced size {self.size}")
        self._finished = True
        self._cut(len(self._buffer), last=True)

    def _cut(self, n: int, *, last: bool) -> None:
        payload = bytes(self._buffer[:n])
        del self._buffer[:n]
        self._digest.update(payload)
        seq = self._next_seq
        first = seq == 0
        chunk = Chunk(transfer=self.transfer, seq=seq, at=self._cut_at, last=last,
                      size=self.size if first else None,
                      sha256=self._digest.hexdigest() if last else None)
        if first and self._meta is not None:
            # Only then: a Raw() of its own is not the default, and would be encoded.
            chunk = msgspec.structs.replace(chunk, meta=self._meta)
        self._pending.append(OutChunk(seq, chunk, payload))
        self._next_seq += 1
        self._cut_at += n

    def next_chunk(self) -> OutChunk | None:
        """The next chunk to send now, or None (window full, or nothing cut yet)."""
        if len(self._sent) >= self.window:
            return None
        for out in self._pending:
            if out.seq not in self._sent:
                return out
        return None

    def sent(self, seq: int) -> None:
        self._sent.add(seq)

    def acked(self, seq: int) -> None:
        """The server acknowledged chunk ``seq`` (or answered it ``duplicate``). Acks come
        in order on one connection; one that does not (a chunk sent again after a
        refusal) settles only its own chunk."""
        self._sent.discard(seq)
        for i, out in enumerate(self._pending):
            if out.seq == seq:
                del self._pending[i]
                self.acked_bytes += len(out.payload)
                return


# -- the subscriber's side ------------------------------------------------------------


@dataclass(slots=True)
class Received:
    """What one chunk means to the application: its bytes, and where the transfer is."""

    transfer: str
    data: bytes = b""
    started: bool = False  # the first chunk: ``meta`` and ``size`` are known now
    meta: bytes = b""  # the JSON of the first chunk's ``meta``, empty when none
    size: int | None = None
    done: int = 0  # bytes so far, this chunk included
    finished: bool = False  # the digest matched: nothing more comes
    failure: TransferFailed | None = None  # the transfer ended without completing


@dataclass(slots=True)
class _Incoming:
    size: int | None
    next_seq: int = 1
    at: int = 0
    touched: float = 0.0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)


class Receiver:
    """The open transfers of one subscription, assembled from its publications in order.

    A chunk of a transfer whose first chunk this subscription did not see (it subscribed
    in the middle) is ignored: there is no whole payload to give."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._open: dict[str, _Incoming] = {}

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, transfer: object) -> bool:
        return transfer in self._open

    def feed(self, chunk: Chunk, payload: bytes, now: float) -> Received | None:
        """One publication's chunk; None when it belongs to no transfer held here."""
        name = chunk.transfer
        if chunk.seq == 0 and chunk.abort is None:
            if name in self._open:  # the same id started again: the first one is broken
                return self._fail(name, ErrorCode.TRANSFER_ORDER, "the transfer started again")
            fresh = _Incoming(size=chunk.size, touched=now)
            self._open[name] = fresh
            got = Received(name, started=True, meta=bytes(chunk.meta), size=chunk.size)
            return self._take(name, fresh, chunk, payload, got)
        incoming = self._open.get(name)
        if incoming is None:
            return None
        if chunk.abort is not None:
            return self._fail(name, chunk.abort, "the server aborted the transfer")
        if chunk.seq != incoming.next_seq or chunk.at != incoming.at:
            return self._fail(name, ErrorCode.TRANSFER_ORDER,
                              f"chunk seq {chunk.seq} at {chunk.at}, expected seq "
                              f"{incoming.next_seq} at {incoming.at}")
        incoming.next_seq += 1
        incoming.touched = now
        return self._take(name, incoming, chunk, payload, Received(name, size=incoming.size))

    def _take(self, name: str, incoming: _Incoming, chunk: Chunk, payload: bytes,
              got: Received) -> Received:
        incoming.digest.update(payload)
        incoming.at += len(payload)
        if incoming.size is not None and incoming.at > incoming.size:
            return self._fail(name, ErrorCode.TRANSFER_ORDER, "more bytes than its size")
        got.data = payload
        got.done = incoming.at
        if chunk.last:
            del self._open[name]
            if incoming.digest.hexdigest() != chunk.sha256:
                got.data = b""
                got.failure = TransferFailed(name, ErrorCode.TRANSFER_CORRUPT,
                                             "the payload does not match its sha256")
            elif incoming.size is not None and incoming.at != incoming.size:
                got.data = b""
                got.failure = TransferFailed(name, ErrorCode.TRANSFER_CORRUPT,
                                             f"{incoming.at} bytes, announced {incoming.size}")
            else:
                got.finished = True
        return got

    def _fail(self, name: str, code: str, reason: str) -> Received:
        self._open.pop(name, None)
        return Received(name, failure=TransferFailed(name, code, reason))

    def lost(self, reason: str) -> list[Received]:
        """Publications were lost that history no longer holds: every open transfer
        ends with ``transfer_order`` (a chunk of each may be among them)."""
        return [self._fail(name, ErrorCode.TRANSFER_ORDER, reason) for name in list(self._open)]

    def expire(self, now: float) -> list[Received]:
        """Transfers with no chunk for ``timeout``: each ends with ``transfer_timeout``."""
        return [self._fail(name, ErrorCode.TRANSFER_TIMEOUT,
                           f"no chunk for {self.timeout:g} s")
                for name, incoming in list(self._open.items())
                if now - incoming.touched >= self.timeout]
