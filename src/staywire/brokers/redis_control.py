"""The control plane on Redis: heartbeat keys say which nodes live, pub/sub carries commands.

Keys, beside the broker's (same prefix)::

    {prefix}node:<id>     "alive" for ``ttl``; each node renews its own every ``period``
    {prefix}nodes         set of the node ids ever announced; pruned of ids whose key expired
    {prefix}control       pub/sub: commands for every node
    {prefix}control:<id>  pub/sub: answers for node <id>

A command is published once; ``PUBLISH`` answers how many nodes listen, which is how
many answers to wait for, so a run ends as soon as the last one arrives instead of at
the timeout. Nodes whose heartbeat key lives but that did not answer in time are in the
result's ``failed``: a node killed with ``kill -9`` is there until its key expires (at
most ``ttl``), then it is forgotten. Listing the nodes reads one set and one key per
node: never a ``SCAN`` of the keyspace.

The commands link is its own connection, apart from the broker's publication link
(``redis.py``): a flood of publications never delays a disconnect, and neither
reconnects the other.

On Redis Cluster a ``PUBLISH`` would count the subscribers of the node that took it,
not of the cluster. There the commands and answers go over sharded pub/sub instead,
on channels that share one hash tag (``{prefix}{control}``, ``{prefix}{control}:<id>``),
so they all live on one shard and ``SPUBLISH`` counts every listening node; the node
keys are read with one ``GET`` per slot (``mget_nonatomic``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from staywire.brokers.control import ControlPlane, FanOut, LocalNode, run_local
from staywire.brokers.redis_pool import RedisPool, is_cluster_url, open_cluster, open_pool
from staywire.exceptions import BrokerUnavailable, ConfigError

__all__ = ["RedisControl"]

log = logging.getLogger(__name__)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError, OSError)
_MAX_IN_FLIGHT = 64  # other nodes' commands running here at once; more are refused
_BACKOFF_MAX = 2.0


class _Command(msgspec.Struct, frozen=True):
    id: str
    sender: str
    command: str
    args: msgspec.Raw


class _Answer(msgspec.Struct, frozen=True):
    id: str
    node: str
    result: msgspec.Raw  # (msgspec cannot decode a Raw inside a union: no "| None")
    error: str | None = None  # set: the command failed there, and ``result`` is null


class _Pending:
    __slots__ = ("out", "expected", "done")

    def __init__(self, out: FanOut) -> None:
        self.out = out
        self.expected: int | None = None  # answers from other nodes; known once published
        self.done = asyncio.Event()

    def answered(self, answer: _Answer) -> None:
        if answer.error is None:
            self.out.results[answer.node] = bytes(answer.result)
        else:
            self.out.failed[answer.node] = answer.error
        self.check()

    def check(self) -> None:
        others = len(self.out.results) + len(self.out.failed) - 1  # less this node's own
        if self.expected is not None and others >= self.expected:
            self.done.set()


class RedisControl(ControlPlane):
    def __init__(self, url: str, *, prefix: str = "staywire:", period: float = 1.0,
                 ttl: float = 5.0) -> None:
        if not 0 < period < ttl:
            raise ConfigError("the heartbeat period must be > 0 and below its ttl")
        self._pool: RedisPool | None = None
        self._redis: Redis | RedisCluster
        try:
            # health_check_interval: redis-py PINGs a link idle that long before reading
            # it, so a control link whose peer vanished without a FIN fails and reconnects.
            # The broker's own pool kinds (redis_pool): a Sentinel URL works here too.
            if is_cluster_url(url):
                self._redis = open_cluster(url, max_connections=8, connect_timeout=2.0,
                                           command_timeout=5.0, health_check_interval=5)
            else:
                self._pool = open_pool(url, max_connections=8, connect_timeout=2.0,
                                       command_timeout=5.0, health_check_interval=5)
                self._redis = Redis(connection_pool=self._pool.pool)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL: {exc}") from None
        self._sharded = isinstance(self._redis, RedisCluster)
        self._prefix = prefix
        self._period = period
        self._ttl_ms = max(1, round(ttl * 1000))
        self._commands = f"{prefix}{{control}}" if self._sharded else f"{prefix}control"
        self._node: LocalNode | None = None
        self._pending: dict[str, _Pending] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self._closed = False
        self._encode = msgspec.json.Encoder().encode
        self._command_decoder = msgspec.json.Decoder(_Command)
        self._answer_decoder = msgspec.json.Decoder(_Answer)

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def _answers(self, node_id: str) -> str:
        return f"{self._commands}:{node_id}"

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise BrokerUnavailable(f"Redis unavailable for the control plane: {exc}") from None

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, node: LocalNode) -> None:
        """Announce the node and subscribe; like the broker, never fails when Redis is down
        (it keeps trying in the background), but waits up to a second for the link."""
        self._node = node
        with contextlib.suppress(BrokerUnavailable):
            await self._announce()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen(), name="staywire-control-listen"),
                       loop.create_task(self._beat(), name="staywire-control-beat")]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._listening.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in [*self._tasks, *self._running]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._running, return_exceptions=True)
        if self._node is not None:
            with contextlib.suppress(*_UNAVAILABLE):
                node_id = self._node.node_id
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.delete(self._node_key(node_id))
                    pipe.srem(f"{self._prefix}nodes", node_id)
                    await pipe.execute()
        await self._redis.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    async def _announce(self) -> None:
        assert self._node is not None
        node_id = self._node.node_id
        with self._guard():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._node_key(node_id), b"1", px=self._ttl_ms)
                pipe.sadd(f"{self._prefix}nodes", node_id)
                await pipe.execute()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            try:
                await self._announce()
            except BrokerUnavailable as exc:
                log.debug("heartbeat not written: %s", exc)
            except Exception:  # a node that stops beating disappears from the cluster
                log.exception("heartbeat failed")

    async def live_nodes(self) -> set[str]:
        """The nodes whose heartbeat key lives (and the stale ids pruned from the set)."""
        with self._guard():
            members = await self._redis.smembers(f"{self._prefix}nodes")
            ids = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
            if not ids:
                return set()
            keys = [self._node_key(i) for i in ids]
            if isinstance(self._redis, RedisCluster):  # the keys are in many slots
                alive = await self._redis.mget_nonatomic(keys)
            else:
                alive = await self._redis.mget(keys)
            stale = [i for i, v in zip(ids, alive, strict=True) if v is None]
            if stale:
                await self._redis.srem(f"{self._prefix}nodes", *stale)
        return {i for i, v in zip(ids, alive, strict=True) if v is not None}

    # -- taking commands ------------------------------------------------------------

    async def _listen(self) -> None:
        assert self._node is not None
        attempt = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                if isinstance(self._redis, RedisCluster):
                    await self._redis.initialize()  # its pubsub needs the slot map (no-op once read)
                channels = (self._commands, self._answers(self._node.node_id))
                if isinstance(pubsub, ClusterPubSub):
                    await pubsub.ssubscribe(*channels)
                else:
                    await pubsub.subscribe(*channels)
                self._listening.set()
                attempt = 0
                while True:
                    if isinstance(pubsub, ClusterPubSub):
                        message = await pubsub.get_sharded_message(
                            ignore_subscribe_messages=True, timeout=1.0)
                    else:
                        message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                           timeout=1.0)
                    if message is not None and message.get("type") in ("message", "smessage"):
                        self._received(message["channel"], message["data"])
            except _UNAVAILABLE as exc:
                log.warning("control link lost: %s", exc)
            except Exception:
                # Anything else (a Redis error reply, a bug) must not leave the node deaf
                # to every later command: logged, and the link is made again.
                log.exception("control link failed")
            finally:
                self._listening.clear()
                with contextlib.suppress(*_UNAVAILABLE):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(min(_BACKOFF_MAX, 0.05 * 2 ** attempt) * random.uniform(0.5, 1))
            attempt = min(attempt + 1, 10)

    def _received(self, channel: bytes | str, data: bytes) -> None:
        assert self._node is not None
        try:
            name = channel.decode() if isinstance(channel, bytes) else channel
            if name == self._commands:
                command = self._command_decoder.decode(data)
                if command.sender != self._node.node_id:
                    self._take(command)
            else:
                answer = self._answer_decoder.decode(data)
                pending = self._pending.get(answer.id)
                if pending is not None:
                    pending.answered(answer)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # Another version, or something else on our channel: never fatal to the link.
            log.warning("control message ignored: %s", exc)

    def _take(self, command: _Command) -> None:
        if len(self._running) >= _MAX_IN_FLIGHT:
            task = asyncio.ensure_future(self._answer(command, None, "node busy"))
        else:
            task = asyncio.ensure_future(self._execute(command))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute(self, command: _Command) -> None:
        assert self._node is not None
        out = FanOut()
        try:
            await run_local(self._node, command.command, bytes(command.args), out)
        except Exception:
            log.exception("control command %r failed", command.command)
            out.failed[self._node.node_id] = "internal error"  # no details leave the node
        result = out.results.get(self._node.node_id)
        await self._answer(command, result, out.failed.get(self._node.node_id))

    async def _answer(self, command: _Command, result: bytes | None, error: str | None) -> None:
        assert self._node is not None
        if result is None:
            result, error = b"null", error or "failed"
        answer = _Answer(command.id, self._node.node_id, msgspec.Raw(result), error)
        try:
            with self._guard():
                await self._publish(self._answers(command.sender), self._encode(answer))
        except BrokerUnavailable as exc:
            log.warning("control answer to %s lost: %s", command.sender, exc)

    # -- giving commands ------------------------------------------------------------

    async def _publish(self, channel: str, message: bytes) -> Any:
        if isinstance(self._redis, RedisCluster):
            return await self._redis.spublish(channel, message)
        return await self._redis.publish(channel, message)

    async def run(self, command: str, args: bytes, timeout: float) -> FanOut:
        node = self._node
        if node is None or self._closed:
            raise RuntimeError("expected a started control plane, got a closed one")
        if not self._listening.is_set():
            raise BrokerUnavailable("the control link to Redis is down")
        deadline = time.monotonic() + timeout
        out = FanOut()
        pending = _Pending(out)
        rid = secrets.token_hex(8)
        self._pending[rid] = pending
        try:
            # The node list first: once the command is out, a failure must not answer
            # "nothing was done" (BrokerUnavailable) while other nodes are running it.
            known = await self.live_nodes()
            message = self._encode(_Command(rid, node.node_id, command, msgspec.Raw(args)))
            with self._guard():
                listeners: Any = await self._publish(self._commands, message)
            await run_local(node, command, args, out)
            pending.expected = max(0, int(listeners) - 1)  # every listener but this node
            pending.check()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await pending.done.wait()
        finally:
            del self._pending[rid]
        for other in known - out.results.keys() - out.failed.keys():
            out.failed[other] = f"no answer within {timeout:g}s"
        return out
