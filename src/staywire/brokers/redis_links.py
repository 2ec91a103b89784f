"""The Redis broker's pub/sub links: one connection per Redis that delivers publications.

One Redis (or a Sentinel-watched primary) has one link, named ``""``; a Redis Cluster
has one per primary, named ``host:port``, which ``SSUBSCRIBE``-s the channels whose
slot that primary serves (sharded pub/sub: a publication reaches the subscribers of
its shard only). Each link is kept up by a task of its own: connect, subscribe what
the broker tracks on it, read until it breaks, back off, again. Only the link's task
reads it, and it hands every reply to the broker (``LinkOwner.dispatch``), so per
channel the order is the link's order.

A link silent for ``IDLE_PING`` gets a PING; silent as long again, it is dead: TCP
keepalive alone would take much longer to notice a vanished peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.crc import key_slot

from staywire.brokers.redis_publish import pack
from staywire.exceptions import BrokerError

__all__ = ["IDLE_PING", "LinkOwner", "PubSubLinks"]

log = logging.getLogger("staywire.brokers.redis")

IDLE_PING = 5.0
_BACKOFF_BASE = 0.05  # reconnect delays start here and double up to the maximum
_SUBSCRIBE_BATCH = 512
_EXPECTED: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError,
    OSError, BrokerError)


class LinkOwner(Protocol):
    """What the links need from the broker."""

    def wanted(self, name: str) -> bool:
        """Whether link ``name`` should still be kept up (a Cluster primary may go)."""
        ...

    def pool(self, name: str) -> ConnectionPool: ...

    def subscriptions(self, name: str) -> list[str]:
        """The pub/sub channels to subscribe on link ``name`` when it (re)connects."""
        ...

    async def dispatch(self, name: str, reply: Any) -> None: ...

    def link_changed(self) -> None: ...


class PubSubLinks:
    def __init__(self, owner: LinkOwner, *, sharded: bool, backoff_max: float) -> None:
        self._owner = owner
        self._sharded = sharded
        self.subscribe_command = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self.unsubscribe_command = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self._backoff_max = backoff_max
        self._links: dict[str, AbstractConnection] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tried: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        # Held while writing on a link, so that what was decided (under the lock)
        # reaches Redis in that order: SUBSCRIBE/UNSUBSCRIBE races need it.
        self.lock = asyncio.Lock()
        self._closed = False

    def get(self, name: str) -> AbstractConnection | None:
        return self._links.get(name)

    def up(self, names: list[str]) -> bool:
        return bool(names) and all(name in self._links for name in names)

    def ensure(self, name: str) -> asyncio.Event:
        """Keep link ``name`` up from now on; an event set once its first attempt ended."""
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tried[name] = asyncio.Event()
            self._tasks[name] = asyncio.get_running_loop().create_task(
                self._supervise(name), name=f"staywire-redis-link-{name or 'redis'}")
        return self._tried[name]

    def wake(self) -> None:
        """Cut the links' backoff short (Redis answers again)."""
        self._wake.set()

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _supervise(self, name: str) -> None:
        attempt = 0
        tried = self._tried[name]
        try:
            while not self._closed and self._owner.wanted(name):
                link: AbstractConnection | None = None
                try:
                    link = await self._open(name)
                    if attempt:
                        log.info("redis broker: pub/sub link %s restored", name or "")
                    attempt = 0
                    tried.set()
                    await self._read(name, link)
                except Exception as exc:
                    log.warning("redis broker: pub/sub link %s down (attempt %d): %s",
                                name, attempt + 1, exc, exc_info=not isinstance(exc, _EXPECTED))
                finally:
                    await self._drop(name, link)
                    tried.set()
                delay = self.backoff(attempt)
                attempt += 1
                self._wake.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for() can swallow a
                # cancel that lands as the wake is set, and close() would wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        finally:
            tried.set()
            if self._tasks.get(name) is asyncio.current_task():
                del self._tasks[name]

    def backoff(self, attempt: int) -> float:
        # Equal jitter: never zero, so a flapping Redis is not hammered, and spread,
        # so that the nodes of a cluster do not all come back at the same instant.
        ceiling = min(self._backoff_max, _BACKOFF_BASE * 2.0 ** min(attempt, 32))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _open(self, name: str) -> AbstractConnection:
        # A connection of its own, outside the pool: it is in pub/sub mode for life.
        # (redis-py leaves these two untyped.)
        link: AbstractConnection = self._owner.pool(name).make_connection()  # type: ignore[no-untyped-call]
        try:
            await link.connect()  # type: ignore[no-untyped-call]
            await link.send_command("PING", check_health=False)
            await link.read_response()
            async with self.lock:
                commands = self._subscribe_commands(self._owner.subscriptions(name))
                if commands:  # one write; the confirmations arrive on the link
                    await link.send_packed_command(commands, check_health=False)
                self._links[name] = link
        except BaseException:
            with contextlib.suppress(Exception):
                await link.disconnect(nowait=True)
            raise
        self._owner.link_changed()
        return link

    def _subscribe_commands(self, names: list[str]) -> bytes:
        # One SSUBSCRIBE names channels of one slot only (else Redis answers CROSSSLOT).
        groups: dict[int, list[str]] = {}
        for channel in names:
            groups.setdefault(key_slot(channel.encode()) if self._sharded else 0,
                              []).append(channel)
        return b"".join(pack(self.subscribe_command, *group[i : i + _SUBSCRIBE_BATCH])
                        for group in groups.values()
                        for i in range(0, len(group), _SUBSCRIBE_BATCH))

    async def _drop(self, name: str, link: AbstractConnection | None) -> None:
        if link is not None and self._links.get(name) is link:
            del self._links[name]
        self._owner.link_changed()
        if link is not None:
            with contextlib.suppress(Exception):
                await link.disconnect(nowait=True)

    async def _read(self, name: str, link: AbstractConnection) -> None:
        """Read the link until it fails; the broker delivers what it reads."""
        pinged = False
        while self._owner.wanted(name):
            try:
                reply = await link.read_response(
                    timeout=IDLE_PING, disconnect_on_error=False, push_request=True
                )
            except redis_errors.MovedError as exc:
                # SSUBSCRIBE of a channel whose slot moved on: the broker routes it again.
                await self._owner.dispatch(name, exc)
                continue
            if reply is None:
                if pinged:
                    raise redis_errors.TimeoutError("no reply on the pub/sub link")
                async with self.lock:
                    await link.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            await self._owner.dispatch(name, reply)
