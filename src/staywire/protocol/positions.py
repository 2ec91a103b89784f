"""Per-channel stream positions: what a client delivered, and what it asks for after a reconnect.

A subscriber remembers the ``(epoch, offset)`` of the last publication it
delivered on each channel. That position is both its dedupe filter (an offset
at or below it was delivered already: drop it) and its recovery request (``sub``
with ``since`` after every reconnect). ``ChannelCursor`` holds one channel's
position and the small state machine around a (re)subscribe::

    IDLE ──subscribe()──> SUBSCRIBING ──ack──> LIVE
     ^                        │  ^               │
     │                  new epoch  unsub ack     │
     │                        v  │               │
     │                     RESYNCING             │
     └────────────── connection_lost() ──────────┘

Why RESYNCING: when the server restarted (memory broker) the stream has a new
epoch, and the server replays nothing for a ``since`` of the old epoch. Other
clients may already have published into the new stream before this one came
back; those offsets are new to us, so the cursor restarts the subscription
from the start of the new epoch (``since = (new epoch, 0)``). It drops every
``msg`` until the ``unsub`` is acknowledged, because everything it drops is in
history and is replayed in order by the second ``sub``. The application is
still told ``recovered=False``: the stream it followed is gone.

Sans-I/O: the caller sends the frames the cursor asks for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from staywire.protocol.stream import Position

__all__ = [
    "AckOutcome",
    "ChannelCursor",
    "CursorState",
    "Position",
    "Verdict",
]

# A server that changes the epoch on every resubscribe would otherwise make
# the cursor resync forever; after this many in a row it settles for the ack.
MAX_RESYNCS = 3



class Verdict(enum.Enum):
    """What to do with one inbound ``msg``."""

    DELIVER = "deliver"  # the next publication: deliver it
    GAP = "gap"  # deliver it, but offsets between the last one and it never arrived
    RESYNC = "resync"  # a live subscription skipped offsets: drop it, resubscribe with since
    NEW_EPOCH = "new_epoch"  # deliver it: the stream was recreated while we were live
    DUPLICATE = "duplicate"  # at or below the delivered position: drop
    STALE = "stale"  # not for the current subscription (resyncing, or not subscribed): drop

    @property
    def deliver(self) -> bool:
        return self in (Verdict.DELIVER, Verdict.GAP, Verdict.NEW_EPOCH)


class CursorState(enum.Enum):
    IDLE = "idle"  # not subscribed on the current connection
    SUBSCRIBING = "subscribing"  # ``sub`` sent, its ack not yet received
    RESYNCING = "resyncing"  # ``unsub`` sent to restart from another position; dropping msgs
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What the client must do after a ``sub`` ack.

    ``unrecovered``: tell the application that its state may be incomplete
    (``recovered`` was false for a ``since`` we asked, or the epoch changed).
    ``resync_from``: send ``unsub`` and then ``sub`` with this ``since``.
    ``missing``: offsets the server acked as recovered but never sent (a server
    bug; reported, not hidden).
    """

    live: bool = False
    unrecovered: bool = False
    epoch_changed: bool = False
    previous: Position | None = None
    resync_from: Position | None = None
    missing: int = 0


class ChannelCursor:
    """One channel's delivered position and subscribe state."""

    __slots__ = ("_asked", "_reported", "_resyncs", "channel", "position", "state")

    def __init__(self, channel: str, position: Position | None = None) -> None:
        self.channel = channel
        self.position = position
        self.state = CursorState.IDLE
        self._asked: Position | None = None  # the ``since`` of the pending ``sub``
        self._resyncs = 0
        self._reported = False  # recovered=False already reported for this resubscribe

    def subscribe(self) -> Position | None:
        """A ``sub`` is about to be sent; return its ``since`` (``None``: from now on)."""
        self.state = CursorState.SUBSCRIBING
        self._asked = self.position
        return self._asked

    def connection_lost(self) -> None:
        """The connection ended: the position stays, the subscription must be made again."""
        self.state = CursorState.IDLE
        self._asked = None

    def on_message(self, epoch: str, offset: int) -> Verdict:
        """Judge one ``msg``; a delivered one advances the position."""
        if self.state in (CursorState.IDLE, CursorState.RESYNCING):
            return Verdict.STALE
        asked = self._asked
        if self.state is CursorState.SUBSCRIBING and asked is not None and epoch != asked.epoch:
            # A publication of a stream we did not ask about, before the ack: the ack will
            # name the new epoch and the resync replays this publication in order.
            return Verdict.STALE
        current = self.position
        if current is None:
            self.position = Position(epoch, offset)
            return Verdict.DELIVER
        if epoch != current.epoch:
            self.position = Position(epoch, offset)
            return Verdict.NEW_EPOCH
        if offset <= current.offset:
            return Verdict.DUPLICATE
        if offset > current.offset + 1 and self.state is CursorState.LIVE:
            # Offsets were skipped on a live subscription (a node that lost publications
            # it could not refill). Delivering this one would break the order; asking the
            # server again from the delivered position either replays the missing ones
            # or says recovered=false, so nothing is lost silently.
            self.state = CursorState.RESYNCING
            return Verdict.RESYNC
        self.position = Position(epoch, offset)
        return Verdict.DELIVER if offset == current.offset + 1 else Verdict.GAP

    def on_subscribed(self, epoch: str, offset: int, recovered: bool) -> AckOutcome:
        """The ``sub`` was acked with the stream's current position."""
        if self.state is not CursorState.SUBSCRIBING:
            return AckOutcome()
        asked = self._asked
        previous = self.position
        if asked is not None and epoch != asked.epoch and self._resyncs < MAX_RESYNCS:
            self._resyncs += 1
            self.position = Position(epoch, 0)
            self.state = CursorState.RESYNCING
            report = not self._reported
            self._reported = True
            return AckOutcome(
                unrecovered=report,
                epoch_changed=True,
                previous=previous,
                resync_from=self.position,
            )
        missing = 0
        if previous is None or previous.epoch != epoch:
            self.position = Position(epoch, offset)
        elif offset > previous.offset:
            if asked is not None and recovered:
                missing = offset - previous.offset
            self.position = Position(epoch, offset)
        unrecovered = asked is not None and not recovered and not self._reported
        epoch_changed = asked is not None and asked.epoch != epoch
        self.state = CursorState.LIVE
        self._asked = None
        self._resyncs = 0
        self._reported = False
        return AckOutcome(
            live=True,
            unrecovered=unrecovered,
            epoch_changed=epoch_changed,
            previous=previous,
            missing=missing,
        )

    def joined(self, epoch: str, offset: int) -> Position | None:
        """The server subscribed this channel itself, at ``(epoch, offset)``: a welcome's
        ``server_subs``. ``None``: LIVE from there, nothing was missed (a first welcome,
        or a reconnect at the position delivered). Otherwise the ``since`` to restart
        from (the caller sends ``unsub``, then ``sub``), as for a gap: RESYNCING drops
        the live ``msg``s until the ``unsub`` ack, and the ``sub`` replays them in order."""
        current = self.position
        if current is not None and current != Position(epoch, offset):
            self.state = CursorState.RESYNCING
            return current
        if current is None:
            self.position = Position(epoch, offset)
        self.state = CursorState.LIVE
        self._asked = None
        return None

    def begin_resync(self) -> Position | None:
        """Restart the subscription from the current position (``unsub`` then ``sub``).

        Used when the server says ``already_subscribed`` (say, a resumed session);
        returns the ``since`` for the follow-up ``sub``."""
        self.state = CursorState.RESYNCING
        return self.position

    def on_unsubscribed(self) -> None:
        """The resync's ``unsub`` was acked: what arrives now answers the follow-up ``sub``."""
        if self.state is CursorState.RESYNCING:
            self.state = CursorState.SUBSCRIBING
            self._asked = self.position
