"""A channel's stream: the position of a publication in it, and the publication itself.

Every publication has a position ``(epoch, offset)``: offsets count up from 1 within
one life of the stream, and the epoch names that life (a memory broker that
restarts, or a Redis stream that was lost, starts a new epoch). These two types are
the one representation of both, shared by the wire schema, the brokers, the
recovery rule and both clients' cursors.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = ["MAX_ID", "ChannelPosition", "Epoch", "Offset", "Position", "Publication"]

MAX_ID: Final = 2**53 - 1  # the largest integer a JavaScript number holds exactly

Epoch = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


class Position(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A position in one channel's stream; on the wire, ``{"epoch": ..., "offset": ...}``.

    The bounds apply where a position is decoded from a peer (``sub.since``)."""

    epoch: Epoch
    offset: Offset


class ChannelPosition(Position, frozen=True, forbid_unknown_fields=False):
    """A position with its channel: ``welcome.subs`` lists a resumed session's this way."""

    channel: str


class Publication(msgspec.Struct, frozen=True):
    """One publication as brokers store it and the fan-out sends it.

    ``data`` is the publisher's JSON, undecoded, or with ``binary`` its bytes as sent
    (protocol v2, docs/protocol.md *Binary frames*); one stream of offsets holds both
    kinds. ``chunk`` is the JSON of a binary publication's ``chunk`` header, as it was
    validated when published (a piece of a transfer), spliced back into its ``msg``."""

    channel: str
    epoch: str
    offset: int
    data: bytes
    binary: bool = False
    chunk: bytes | None = None
