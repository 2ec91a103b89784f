"""The recovery rule: when is a resubscription "recovered"?

As in centrifuge: a client that comes back with the position ``since`` of the
last publication it delivered is recovered only when the stream is the same
life (same epoch) and history still holds every offset after ``since`` up to
the current top, so no offset is missing. Anything else tells the client to
refetch its state.
"""

from __future__ import annotations

from collections.abc import Sequence

from staywire.protocol.stream import Position, Publication

__all__ = ["is_recovered", "merge_live"]


def is_recovered(
    since: Position | None, top: Position, replay: Sequence[Publication]
) -> bool:
    if since is None or since.epoch != top.epoch:
        return False
    if since.offset > top.offset:  # the client claims a future offset: not this stream
        return False
    missing = top.offset - since.offset
    if missing == 0:
        return True
    if len(replay) != missing:
        return False
    return replay[0].offset == since.offset + 1 and replay[-1].offset == top.offset


def merge_live(
    last_offset: int, epoch: str, buffered: Sequence[Publication]
) -> list[Publication]:
    """Live publications buffered during a recovery, minus what the replay delivered.

    Publications of another epoch are dropped: they belong to a stream the client
    was not recovered into."""
    return [p for p in buffered if p.epoch == epoch and p.offset > last_offset]
