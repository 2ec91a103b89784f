"""The Redis broker's publish path: one Lua script, and the publishes of a tick pipelined.

Each publish is one ``EVALSHA`` of ``PUBLISH_LUA``, which appends to the channel's
stream and ``PUBLISH``-es to the nodes in one atomic step. Sent one per round trip,
a node spends its time waiting on Redis, and the subscribers' nodes receive the
publications one per round trip, each flushed to every subscriber on its own.
``PublishPipeline`` instead collects every publish made in one event-loop tick and
sends them as one write (a pipeline, not a transaction: each keeps its own result
or error), reading the replies in order.

Order: only one batch is in flight at a time, on one connection, so Redis runs the
publishes in the order they were submitted; a client whose publishes are handed in
order (the request worker does) keeps its order per channel. A batch that fails at
the connection (Redis down, a timeout) fails every publish in it that has no reply
yet, as unavailable: none of them is retried here, since a publish whose reply was
lost may have happened (the caller retries with its idempotency key).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.connection import ConnectionPool

__all__ = ["PUBLISH_LUA", "PublishPipeline"]

# At most this many publishes in one write: bounds the write and the time one batch
# holds the connection; the rest go in the next batch, right after.
MAX_BATCH = 256

# KEYS: meta, stream[, idempotency key]
# ARGV: data, epoch if new, history size, history ttl ms, meta ttl ms,
#       pub/sub channel, channel, dedupe window ms, history byte bound (0: none)
#
# A stream rather than a list: with the offset as the entry id, "everything after
# offset N" is one XRANGE whose answer carries its own offsets, MAXLEN trims
# exactly to history_size in the same command, and nothing depends on index
# arithmetic staying in step with the offset counter. The byte bound (the per-channel
# option history_max_bytes) is applied in the same script, so no reader ever sees the
# stream over it: the newest entries are kept while they fit, older ones go in one
# XTRIM. It reads the stream (at most history_size entries), so it costs only on the
# channels that set it.
PUBLISH_LUA = """
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    return {string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1), 1}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  -- A new life of the channel: entries of an earlier one would have offsets
  -- that mean something else now.
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
local offset = string.format('%d', redis.call('HINCRBY', KEYS[1], 'o', 1))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset, 'd', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  local bound = tonumber(ARGV[9])
  if bound > 0 then
    local total, kept = 0, nil
    for i, entry in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-')) do
      total = total + #entry[2][2]
      if total > bound then
        if i == 1 then
          redis.call('DEL', KEYS[2])
        else
          redis.call('XTRIM', KEYS[2], 'MINID', kept)
        end
        break
      end
      kept = entry[1]
    end
  end
end
redis.call('PUBLISH', ARGV[6], offset .. ':' .. epoch .. ':' .. #ARGV[7] .. ':' .. ARGV[7] .. ARGV[1])
if KEYS[3] then
  redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'NX', 'PX', ARGV[8])
end
return {epoch, offset, 0}
"""


PUBLISH_SHA = hashlib.sha1(PUBLISH_LUA.encode()).hexdigest()

PublishArgs = Sequence[bytes | str | int]


class PublishPipeline:
    """The publishes of one tick as one pipeline; one batch in flight at a time."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._pending: list[tuple[PublishArgs, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def submit(self, keys: Sequence[str], args: PublishArgs) -> asyncio.Future[Any]:
        """Queue one publish; the future gets the script's reply or the redis-py error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            fut.set_exception(redis_errors.ConnectionError("the publish pipeline is closed"))
            return fut
        self._pending.append((("EVALSHA", PUBLISH_SHA, len(keys), *keys, *args), fut))
        if self._task is None:
            # Starts on the next loop iteration: every publish of this tick is in.
            self._task = loop.create_task(self._run(), name="staywire-redis-publish")
        return fut

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._fail(self._pending, redis_errors.ConnectionError("the Redis broker is closed"))
        self._pending = []

    async def _run(self) -> None:
        try:
            while self._pending and not self._closed:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                live = [item for item in batch if not item[1].done()]  # cancelled callers
                if not live:
                    continue
                try:
                    await self._send(live)
                except BaseException as exc:
                    failure = exc if isinstance(exc, Exception) else (
                        redis_errors.ConnectionError("the publish was cancelled"))
                    self._fail(live, failure)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _send(self, batch: list[tuple[PublishArgs, asyncio.Future[Any]]]) -> None:
        conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            missing = await self._roundtrip(conn, batch)
            if missing:
                # SCRIPT FLUSH or a fresh Redis: a NOSCRIPT reply means the script did
                # not run, so those publishes are sent again (in order) after a load.
                await conn.send_command("SCRIPT", "LOAD", PUBLISH_LUA)
                await conn.read_response()
                missing = await self._roundtrip(conn, missing)
                self._fail(missing, redis_errors.NoScriptError("the publish script is missing"))
        finally:
            await self._pool.release(conn)

    @staticmethod
    async def _roundtrip(conn: Any, batch: list[tuple[PublishArgs, asyncio.Future[Any]]]
                         ) -> list[tuple[PublishArgs, asyncio.Future[Any]]]:
        """Send the batch in one write, read every reply in order; the NOSCRIPT ones back."""
        await conn.send_packed_command(conn.pack_commands([cmd for cmd, _ in batch]))
        missing = []
        for item in batch:
            fut = item[1]
            try:
                reply = await conn.read_response()
            except redis_errors.NoScriptError:
                missing.append(item)
                continue
            except redis_errors.ResponseError as exc:  # this publish only; stream in sync
                if not fut.done():
                    fut.set_exception(exc)
                continue
            if not fut.done():
                fut.set_result(reply)
        return missing

    @staticmethod
    def _fail(batch: list[tuple[PublishArgs, asyncio.Future[Any]]], exc: BaseException) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(exc)
