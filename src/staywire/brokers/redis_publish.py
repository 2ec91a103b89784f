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
in order (the request handler does, in the frame callback) keeps its order per
channel. Each command is built by ``PublishCommands`` from per-channel parts made
once, and a batch's replies are read under one timeout. A batch that fails at
the connection (Redis down, a timeout) fails every publish in it that has no reply
yet, as unavailable: none of them is retried here, since a publish whose reply was
lost may have happened (the caller retries with its idempotency key).

On Redis Cluster (redis_cluster.py) there is one pipeline per primary, and a reply
that says the command did not run there (``MOVED``, ``ASK``, ``TRYAGAIN``,
``CLUSTERDOWN``, during a slot migration or a failover) hands the command to the
pipelines' ``Redirects`` to be sent again where the slot lives now: the one case
where sending again is safe, since nothing ran. The script then ``SPUBLISH``-es
(``PUBLISH_LUA_SHARDED``), so a publication reaches the nodes subscribed on the
channel's shard only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio.connection import ConnectionPool

try:  # what redis-py's hiredis parser answers when no whole reply is buffered yet
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NO_REPLY
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:  # pragma: no cover - another redis-py than the pinned one
    _NO_REPLY = None

from staywire.brokers.base import HistoryPolicy
from staywire.protocol.stream import Publication

log = logging.getLogger("staywire.brokers.redis")

__all__ = ["PUBLISH_LUA", "PUBLISH_LUA_SHARDED", "NotReplicated", "PublishCommands",
           "PublishPipeline", "Redirects", "decode_publication", "pack"]

# At most this many publishes in one write: bounds the write and the time one batch
# holds the connection; the rest go in the next batch, right after.
MAX_BATCH = 256

# KEYS: meta, stream[, idempotency key]
# ARGV: history size, history ttl ms, meta ttl ms, pub/sub channel, channel,
#       dedupe window ms, history byte bound (0: none), epoch if new, data, kind
#       (kind: '' for JSON data; 'b' then the chunk header JSON, if any, for bytes)
#
# What is the same for every publish of a channel comes first, so that the command
# is a cached per-channel middle between a few bytes made per publish (PublishCommands).
#
# A stream rather than a list: with the offset as the entry id, "everything after
# offset N" is one XRANGE whose answer carries its own offsets, MAXLEN trims in the
# same command, and nothing depends on index arithmetic staying in step with the
# offset counter. The trim is approximate (``MAXLEN ~``): Redis drops whole stream
# nodes instead of moving one node's entries on every publish (scripts/
# redis_script_cost.py: XADD 2.8-3.1 µs with an exact trim, 0.9-1.0 µs with ``~``;
# the whole script 13.1-14.9 against 10.9-12.3 µs of Redis CPU), so a stream may hold
# up to one node (at most stream-node-max-bytes, 4 KiB by default, or one larger
# entry) beyond history_size. The history read (redis.py) never returns those: it
# starts at top - size + 1, so readers see exactly the newest history_size entries,
# as with an exact trim. The byte bound (the per-channel option history_max_bytes)
# is applied in the same script, so no reader ever sees the stream over it: the
# newest entries are kept while they fit, older ones go in one XTRIM. It reads the
# newest history_size entries, so it costs only on the
# channels that set it.
#
# The data is stored as it came, bytes included ('d'); a binary publication's entry also
# has its kind ('k'), and its pub/sub message says the kind's length after the channel's
# ("4/1" for 'room' and 'b'), so JSON publications are stored and sent exactly as before.
PUBLISH_LUA = """
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    -- A write, so that a WAIT after this retry also covers the original publish, which
    -- may have been made on another connection (WAIT counts this connection's writes).
    local ttl = redis.call('PTTL', KEYS[3])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
    local sep = string.find(seen, ':', 1, true)
    return {string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1), 1}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  -- A new life of the channel: entries of an earlier one would have offsets
  -- that mean something else now.
  epoch = ARGV[8]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
local offset = string.format('%d', redis.call('HINCRBY', KEYS[1], 'o', 1))
local kind, size = ARGV[10], #ARGV[5]
if kind ~= '' then size = size .. '/' .. #kind end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if tonumber(ARGV[1]) > 0 then
  if kind == '' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], offset, 'd', ARGV[9])
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], offset, 'd', ARGV[9], 'k', kind)
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  local bound = tonumber(ARGV[7])
  if bound > 0 then
    local total, kept = 0, nil
    for i, entry in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])) do
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
redis.call('PUBLISH', ARGV[4], offset .. ':' .. epoch .. ':' .. size .. ':' .. ARGV[5] .. kind .. ARGV[9])
if KEYS[3] then
  redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'NX', 'PX', ARGV[6])
end
return {epoch, offset, 0}
"""


PUBLISH_SHA = hashlib.sha1(PUBLISH_LUA.encode()).hexdigest()
# The same script on Redis Cluster: sharded pub/sub, on a channel name that carries the
# channel's hash tag, so the publication goes to its shard only (Redis 7).
PUBLISH_LUA_SHARDED = PUBLISH_LUA.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
PUBLISH_SHA_SHARDED = hashlib.sha1(PUBLISH_LUA_SHARDED.encode()).hexdigest()

# Called once with the script's reply, or with the redis-py error of this publish.
ReplyCallback = Callable[[Any, BaseException | None], None]
# A command, its callback, the Lua source to load should Redis answer NOSCRIPT,
# whether its reply waits for the replicas (a publish, when WAIT is on), how many
# times a cluster redirected it already, and whether the command starts with ASKING
# (a cluster's ASK: one more reply, +OK, comes first).
_Pending = tuple[bytes, ReplyCallback, str | None, bool, int, bool]
# Replies that say the command did not run on this node (Redis Cluster).
_NOT_HERE = (redis_errors.AskError, redis_errors.TryAgainError,
             redis_errors.ClusterDownError)


class Redirects(Protocol):
    """Where a pipeline sends what a cluster node did not run (redis_cluster.py)."""

    def redirected(self, items: list[tuple[_Pending, redis_errors.ResponseError]]) -> None: ...

    def node_failed(self, exc: BaseException) -> None: ...
# Channels whose command parts are cached; past it the cache starts again (bounded memory
# whatever the number of channel names).
_CACHE_CHANNELS = 4096


class NotReplicated(redis_errors.TimeoutError):
    """A publish ran on the primary, but ``WAIT`` did not see it on enough replicas in time.

    A timeout: the publication may survive or not (a failover now would lose it), so it
    is not acknowledged; the client's retry with the same key is answered from the
    idempotency key, and acknowledged once replicated."""


def decode_publication(payload: bytes) -> Publication:
    """``offset:epoch:len(channel):channel`` then the data, as built by the publish script;
    a binary publication's has ``len(channel)/len(kind)`` and its kind before the data."""
    offset, epoch, size, rest = payload.split(b":", 3)
    if b"/" not in size:
        n = int(size)
        return Publication(rest[:n].decode(), epoch.decode(), int(offset), rest[n:])
    n_, k_ = size.split(b"/", 1)
    n, end = int(n_), int(n_) + int(k_)
    return Publication(rest[:n].decode(), epoch.decode(), int(offset), rest[end:], True,
                       rest[n + 1:end] or None)


def _bulk(raw: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def pack(*args: bytes | str | int) -> bytes:
    """Any command in RESP (an array of bulk strings), for the pipeline."""
    return b"*%d\r\n" % len(args) + b"".join(
        _bulk(a if isinstance(a, bytes) else a.encode() if isinstance(a, str) else b"%d" % a)
        for a in args)


def _head(nkeys: int, sha: str = PUBLISH_SHA) -> bytes:
    # EVALSHA, the sha, the key count, the keys, 10 ARGV.
    return (b"*%d\r\n" % (3 + nkeys + 10) + _bulk(b"EVALSHA") + _bulk(sha.encode())
            + _bulk(b"%d" % nkeys))


_JSON_KIND = _bulk(b"")


class PublishCommands:
    """The ``EVALSHA`` of each publish, in RESP, with what is per channel made once.

    redis-py's general packer, run on every argument of every publish, was 16% of a
    node's time under 100 publishing connections; here a publish formats only its
    data, its epoch candidate and its idempotency key."""

    def __init__(self, *, prefix: str, pubsub_prefix: str, policy: HistoryPolicy,
                 dedupe_ms: int, meta_ttl_factor: int, sharded: bool = False) -> None:
        self._prefix = prefix
        self.sharded = sharded  # Cluster: SPUBLISH on "{pubsub_prefix}{<channel>}"
        self.script = PUBLISH_LUA_SHARDED if sharded else PUBLISH_LUA
        sha = PUBLISH_SHA_SHARDED if sharded else PUBLISH_SHA
        self._head_2, self._head_3 = _head(2, sha), _head(3, sha)
        self._pubsub_prefix = pubsub_prefix
        self._policy = policy
        self._dedupe_ms = dedupe_ms
        self._meta_factor = meta_ttl_factor
        self._cache: dict[str, tuple[bytes, bytes, bytes]] = {}

    def command(self, channel: str, data: bytes, key: str | None, binary: bool = False,
                chunk: bytes | None = None) -> bytes:
        """``binary``: ``data`` is bytes (stored as they are); ``chunk``: its chunk JSON."""
        parts = self._cache.get(channel)
        if parts is None:
            parts = self._parts(channel)
        keys, argv, key_prefix = parts
        # The epoch a new stream gets (unused when the channel has one). From the process'
        # Mersenne Twister, seeded from the OS: 48 random bits without a system call per
        # publish; it only has to differ from the channel's earlier lives.
        epoch = b"%012x" % random.getrandbits(48)
        kind = _bulk(b"b" + chunk if chunk else b"b") if binary else _JSON_KIND
        if key is None:
            return b"".join((self._head_2, keys, argv, _bulk(epoch), _bulk(data), kind))
        return b"".join((self._head_3, keys, _bulk(key_prefix + key.encode()), argv, _bulk(epoch),
                         _bulk(data), kind))

    def _parts(self, channel: str) -> tuple[bytes, bytes, bytes]:
        limits = self._policy(channel)  # read once per channel, as a memory stream does
        tagged = f"{self._prefix}{{{channel}}}:".encode()
        keys = _bulk(tagged + b"meta") + _bulk(tagged + b"stream")
        values: list[bytes] = [b"%d" % limits.size, b"%d" % _ms(limits.ttl),
                               b"%d" % _ms(limits.ttl * self._meta_factor),
                               self.pubsub_name(channel).encode(), channel.encode(),
                               b"%d" % self._dedupe_ms, b"%d" % (limits.max_bytes or 0)]
        parts = (keys, b"".join(_bulk(v) for v in values), tagged + b"key:")
        if len(self._cache) >= _CACHE_CHANNELS:
            self._cache.clear()
        self._cache[channel] = parts
        return parts


    def pubsub_name(self, channel: str) -> str:
        """The pub/sub channel of ``channel``: on Cluster in the slot of its keys."""
        if self.sharded:
            return f"{self._pubsub_prefix}{{{channel}}}"
        return self._pubsub_prefix + channel


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class PublishPipeline:
    """The commands of one tick as one pipeline; one batch in flight at a time.

    Publishes, history reads and session commands all go through it: in a reconnect
    storm every client's recovery read and session save would otherwise be a round
    trip of its own through redis-py's general command path."""

    def __init__(self, pool: ConnectionPool, *, wait_replicas: int = 0,
                 wait_timeout: float = 0.5, redirects: Redirects | None = None) -> None:
        self._pool = pool
        self._redirects = redirects
        self._wait_replicas = wait_replicas
        self._wait_timeout = wait_timeout
        self._wait = pack("WAIT", wait_replicas, _ms(wait_timeout))
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def submit(self, command: bytes, callback: ReplyCallback,
               script: str | None = PUBLISH_LUA, *, durable: bool = False, hops: int = 0,
               first: bool = False, asking: bool = False) -> None:
        """Queue one command (RESP bytes; ``script``: the Lua source an ``EVALSHA`` runs).
        ``callback`` is called once, on the event loop, with the reply or the redis-py
        error; the callbacks of one batch are called in the order the commands were
        queued, except that ``durable`` ones (publishes) wait for the batch's ``WAIT``
        when ``wait_replicas`` is set, and fail with ``NotReplicated`` when it falls
        short. ``hops``, ``first`` and ``asking`` are for commands a cluster redirected:
        they go before what was queued since; ``asking``: ``command`` starts with
        ``ASKING`` (``pack("ASKING")``)."""
        if self._closed:
            callback(None, redis_errors.ConnectionError("the publish pipeline is closed"))
            return
        if first:
            self._pending.insert(0, (command, callback, script, durable, hops, asking))
        else:
            self._pending.append((command, callback, script, durable, hops, asking))
        if self._task is None:
            # Starts on the next loop iteration: every publish of this tick is in.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="staywire-redis-publish")

    async def call(self, command: bytes, script: str | None = None) -> Any:
        """Queue one command and wait for its reply (a redis-py error is raised)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Any, exc: BaseException | None) -> None:
            if fut.done():
                return  # the caller was cancelled
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(reply)

        self.submit(command, settle, script)
        return await fut

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
                done: list[_Pending] = []  # answered: a failure later is not theirs
                try:
                    await self._send(batch, done)
                except BaseException as exc:
                    failure = exc if isinstance(exc, Exception) else (
                        redis_errors.ConnectionError("the publish was cancelled"))
                    answered = {id(item) for item in done}
                    self._fail([item for item in batch if id(item) not in answered], failure)
                    if self._redirects is not None:
                        self._redirects.node_failed(failure)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _send(self, batch: list[_Pending], done: list[_Pending]) -> None:
        conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            missing = await self._roundtrip(conn, batch, done)
            if missing:
                # SCRIPT FLUSH or a fresh Redis: a NOSCRIPT reply means the script did
                # not run, so those publishes are sent again (in order) after a load.
                for script in dict.fromkeys(item[2] for item in missing if item[2]):
                    await conn.send_command("SCRIPT", "LOAD", script)
                    await conn.read_response()
                missing = await self._roundtrip(conn, missing, done)
                self._fail(missing, redis_errors.NoScriptError("the publish script is missing"))
                done.extend(missing)
        finally:
            await self._pool.release(conn)

    async def _roundtrip(self, conn: Any, batch: list[_Pending], done: list[_Pending]
                         ) -> list[_Pending]:
        """Send the batch in one write, read every reply in order; the NOSCRIPT ones back.

        The replies are read from the connection's parser under one timeout for the whole
        batch: ``read_response`` arms and cancels a timer per reply, which was a fifth of
        the pipeline's time. Any failure leaves the connection out of step with its
        replies, so it is disconnected (the pool connects it again when next used).

        With ``wait_replicas``, a batch holding a publish ends with one ``WAIT``: it
        covers every write this connection made before it, so one per batch is enough.
        The publishes' replies are held until its answer."""
        wait = self._wait_replicas if any(item[3] for item in batch) else 0
        payload = b"".join([item[0] for item in batch])
        await conn.send_packed_command(payload + self._wait if wait else payload,
                                       check_health=False)
        parser = conn._parser  # redis-py's (hiredis or RESP2) parser; pinned version
        # hiredis: the replies already read are taken from its reader with no coroutine
        # per reply (redis-py's read_response is one, with checks a RESP2 pipeline does
        # not need); only when it has no whole reply left does read_response read more.
        gets = _hiredis_gets(parser)
        missing = []
        moved: list[tuple[_Pending, redis_errors.ResponseError]] = []  # did not run here
        held: list[tuple[_Pending, Any]] = []  # replied, waiting for the WAIT
        demoted = False
        try:
            async with asyncio.timeout(conn.socket_timeout + (self._wait_timeout if wait else 0)):
                for item in batch:
                    if item[5]:
                        await parser.read_response()  # ASKING's +OK
                    reply = _NO_REPLY if gets is None else gets()
                    if reply is _NO_REPLY:
                        reply = await parser.read_response()
                    elif isinstance(reply, redis_errors.ConnectionError):
                        raise reply  # as read_response raises it
                    if isinstance(reply, redis_errors.NoScriptError):
                        missing.append(item)
                        continue
                    if self._redirects is not None and isinstance(reply, _NOT_HERE):
                        moved.append((item, reply))  # answered by where it goes now
                        continue
                    if isinstance(reply, redis_errors.ReadOnlyError):
                        demoted = True
                    elif wait and item[3] and not isinstance(reply, redis_errors.ResponseError):
                        held.append((item, reply))
                        continue
                    done.append(item)
                    if isinstance(reply, redis_errors.ResponseError):
                        _call(item[1], None, reply)  # this publish only: still in step
                    else:
                        _call(item[1], reply, None)
                if wait:
                    self._settle_held(held, await parser.read_response(), done)
        except TimeoutError:
            await conn.disconnect(nowait=True)
            raise redis_errors.TimeoutError("timeout reading the publish replies") from None
        except OSError as exc:
            await conn.disconnect(nowait=True)
            raise redis_errors.ConnectionError(f"reading the publish replies: {exc}") from exc
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        if moved:  # (a failure above fails them as unavailable with the rest)
            assert self._redirects is not None
            done.extend(item for item, _ in moved)
            self._redirects.redirected(moved)
        if demoted:
            # READONLY: this primary was demoted (a failover while it lived). A new
            # connection asks Sentinel again (redis-py does so on its own read path only).
            await conn.disconnect(nowait=True)
        return missing

    def _settle_held(self, held: list[tuple[_Pending, Any]], acked: Any,
                     done: list[_Pending]) -> None:
        if isinstance(acked, int) and acked >= self._wait_replicas:
            for item, reply in held:
                done.append(item)
                _call(item[1], reply, None)
            return
        got = acked if isinstance(acked, int) else f"none ({acked})"
        failure = NotReplicated(f"the publish reached {got} of {self._wait_replicas} "
                                f"replicas within {self._wait_timeout:g} s (WAIT)")
        for item, _ in held:
            done.append(item)
            _call(item[1], None, failure)

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for item in batch:
            _call(item[1], None, exc)


def _hiredis_gets(parser: Any) -> Callable[[], Any] | None:
    """The hiredis reader's ``gets`` of a redis-py parser, or None (the RESP2 parser)."""
    if _NO_REPLY is None or not isinstance(parser, _AsyncHiredisParser):
        return None
    reader = parser._reader
    return None if reader is None else reader.gets


def _call(callback: ReplyCallback, reply: Any, exc: BaseException | None) -> None:
    # One caller's failing callback must not cut the replies of the others short.
    try:
        callback(reply, exc)
    except Exception:
        log.exception("redis broker: a publish callback failed")
