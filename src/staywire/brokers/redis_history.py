"""The Redis broker's history read: the position and the entries after it, one script.

A channel's stream (redis_publish.py writes it) has the offsets as entry ids, so a read
is one ``XRANGE`` (or ``XREVRANGE``, newest first) next to the position asked for, in
the same script as the read of the channel's epoch and top offset: the position and the
entries are one snapshot. ``HistoryReads`` builds the command (it goes through the
publish pipeline, so a storm's recovery reads share round trips) and ``read_reply``
turns the answer into a ``HistoryResult``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from staywire.brokers.base import HistoryPolicy, HistoryResult
from staywire.brokers.redis_publish import pack
from staywire.protocol.stream import Position, Publication

__all__ = ["HISTORY_LUA", "HistoryReads", "read_reply"]

# KEYS: meta, stream
# ARGV: epoch if new, meta ttl ms, since epoch ('' for none), first offset wanted
#       (with reverse: the last), count (0: all), reverse ('1') or not (''),
#       the channel's history size
#
# One script so that the position and the entries are one snapshot. Reading a
# channel that has no epoch yet creates it, so that a subscriber's position and
# the next publication agree on it. The publish trims the stream approximately
# (redis_publish.py), so the range never reaches below top - size + 1: a reader sees
# exactly the newest ``size`` entries, and a position older than them is not
# recoverable, as with an exact trim.
HISTORY_LUA = """
local meta = redis.call('HMGET', KEYS[1], 'e', 'o')
local epoch, top = meta[1], meta[2]
if not epoch then
  epoch, top = ARGV[1], '0'
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= epoch then
  return {epoch, top}
end
local oldest = tonumber(top) - tonumber(ARGV[7]) + 1
local range
if ARGV[6] == '1' then
  range = {'XREVRANGE', KEYS[2], ARGV[4], math.max(oldest, 1)}
else
  range = {'XRANGE', KEYS[2], math.max(tonumber(ARGV[4]), oldest), '+'}
end
if tonumber(ARGV[5]) > 0 then
  table.insert(range, 'COUNT')
  table.insert(range, ARGV[5])
end
return {epoch, top, redis.call(unpack(range))}
"""


class HistoryReads:
    """The ``EVALSHA`` of a history read, for the channels of one key prefix."""

    __slots__ = ("_prefix", "_policy", "_meta_ttl_ms", "_sha")

    def __init__(self, *, prefix: str, policy: HistoryPolicy, meta_ttl_ms: int) -> None:
        self._prefix = prefix
        self._policy = policy
        self._meta_ttl_ms = meta_ttl_ms
        self._sha = hashlib.sha1(HISTORY_LUA.encode()).hexdigest()

    def command(self, channel: str, since: Position | None, limit: int | None,
                reverse: bool, new_epoch: str) -> bytes:
        """``since`` None or ``limit`` 0: the position only. ``new_epoch``: the epoch the
        channel gets if it has none yet."""
        if since is not None and limit != 0:
            # Entry ids are the offsets: the range starts next to ``since``, either way.
            first = max(since.offset - 1, 0) if reverse else max(since.offset, 0) + 1
        else:
            since, first = None, 0
        tagged = f"{self._prefix}{{{channel}}}:"
        return pack("EVALSHA", self._sha, 2, tagged + "meta", tagged + "stream", new_epoch,
                    self._meta_ttl_ms, since.epoch if since is not None else "", first,
                    limit or 0, "1" if reverse else "", self._policy(channel).size)


def read_reply(channel: str, reply: Any) -> HistoryResult:
    """The script's ``{epoch, top[, entries]}`` as a ``HistoryResult``."""
    epoch = reply[0].decode()
    position = Position(epoch, int(reply[1]))
    entries: list[Any] = reply[2] if len(reply) > 2 else []
    publications = []
    for entry_id, fields in entries:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        offset = int(entry_id.split(b"-")[0])
        kind = values.get(b"k")  # bytes, with their chunk header (redis_publish.py)
        if kind is None:
            publications.append(Publication(channel, epoch, offset, values[b"d"]))
        else:
            publications.append(Publication(channel, epoch, offset, values[b"d"], True,
                                            kind[1:] or None))
    return HistoryResult(position, publications)
