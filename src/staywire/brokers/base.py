"""The broker interface: where streams, history, idempotency keys and sessions live.

A node talks to exactly one broker. ``MemoryBroker`` keeps everything in this
process (one node); ``RedisBroker`` keeps it in Redis so that several nodes
share it and a client can move between them. Both must pass the same contract
suite (``tests/brokers/contract.py``).

Publication data is kept as the bytes the publisher sent, JSON or (``binary``) the
application's bytes, with its kind and any chunk header: the broker never decodes
it, and the fan-out path splices it into the ``msg`` as is.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from staywire.protocol.stream import Position, Publication

__all__ = [
    "Broker",
    "HistoryLimits",
    "HistoryPolicy",
    "HistoryResult",
    "Publication",
    "PublicationHandler",
    "Position",
    "PublishResult",
]


class PublishResult(msgspec.Struct, frozen=True):
    """Made once per publish: a Struct is built in C, where a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``."""

    epoch: str
    offset: int
    duplicate: bool = False  # the key was seen within the dedupe window: not published again


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What a broker still holds of a channel after a position.

    ``position`` is the stream's current top. ``publications`` are the entries
    after ``since.offset`` that history still holds, oldest first (with ``reverse``:
    the entries before it, newest first); empty when ``since`` was ``None`` or its
    epoch is not the current one. Whether they are a complete recovery is decided by
    ``staywire.protocol.recovery``.
    """

    position: Position
    publications: list[Publication]


PublicationHandler = Callable[[Publication], None]


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """What a channel's history keeps: entries, their age, and their data bytes in total."""

    size: int = 100
    ttl: float = 300.0
    max_bytes: int | None = None  # None: bounded by ``size`` x ``max_data_size`` only


# The limits of each channel (per-channel options); a broker without one uses its own.
HistoryPolicy = Callable[[str], HistoryLimits]


class Broker(abc.ABC):
    """Every method may raise ``BrokerUnavailable``; none may lose a publication silently."""

    @abc.abstractmethod
    async def start(self, on_publication: PublicationHandler) -> None:
        """Connect. ``on_publication`` is then called, on the event loop, for every
        publication of every channel this node subscribed to, in offset order per channel."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect and release everything; idempotent."""

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes, *, key: str | None = None,
                      binary: bool = False, chunk: bytes | None = None) -> PublishResult:
        """Append to the channel's history and deliver to every subscribed node, atomically.

        ``binary``: ``data`` is bytes, not JSON; ``chunk``: the chunk header JSON of a
        transfer's piece. Both are stored with the publication and given back unchanged.

        With ``key``: a key seen within the dedupe window returns the first result with
        ``duplicate=True`` and publishes nothing."""

    @abc.abstractmethod
    async def key_seen(self, channel: str, key: str) -> bool:
        """Was ``key`` published to ``channel`` within the dedupe window? A node that
        never saw a transfer start asks it of the previous chunk's key, to resume a
        transfer begun on another node (docs/protocol.md, *Transfers*)."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start delivering the channel's publications to this node (idempotent)."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering the channel's publications to this node (idempotent)."""

    @abc.abstractmethod
    async def history(self, channel: str, since: Position | None, *, limit: int | None = None,
                      reverse: bool = False) -> HistoryResult:
        """The channel's current position and what history holds after ``since``.

        ``limit``: at most this many publications (``None``: all that history holds; ``0``:
        the position only). ``reverse``: the publications *before* ``since.offset``, newest
        first, so ``Position(epoch, top + 1)`` with a limit reads the newest ones."""

    @abc.abstractmethod
    async def save_session(self, session_id: str, record: bytes, ttl: float) -> None:
        """Store a session record for ``ttl`` seconds (replacing any earlier one)."""

    @abc.abstractmethod
    async def load_session(self, session_id: str) -> bytes | None:
        """The session record, or ``None`` when unknown or expired."""

    @abc.abstractmethod
    async def delete_session(self, session_id: str) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise ``BrokerUnavailable`` when the broker cannot serve requests now."""

    @property
    @abc.abstractmethod
    def available(self) -> bool:
        """Last known reachability, without I/O: ``/readyz`` reads it."""
