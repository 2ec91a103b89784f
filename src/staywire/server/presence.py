"""Presence on a node: who joins and leaves, the grace period, events and answers.

The store (``brokers/presence.py``) holds every node's members and says when a user's
first client joins a channel or its last one leaves. This module decides *when* a
client joins and leaves the store, and delivers the store's events:

* A client joins a channel's presence when its subscription is live (acked).
* On ``unsub`` (or when a refreshed token no longer grants the channel) it leaves
  within ``UNSUB_WINDOW`` (1 s, or ``presence_grace`` if shorter): a client repairs a
  gap or recovers a server-side subscription with ``unsub`` then ``sub``, and that
  must not show as a leave and a join of its user.
* A client whose connection ended stays a member for ``presence_grace`` seconds
  (default 5). When a client of the same user (the same key) joins that channel
  within it, on this node, the departed one leaves right after the new one joined:
  the user never had zero clients, so no ``leave`` and no ``join`` are sent, and a
  network blip does not flicker the member list. Past the grace period it leaves.
  A reconnect to another node within the grace period is absorbed the same way by
  the store's per-user count.
* Events go to this node's subscribers of the channel, if its ``join_leave`` is on
  and the channel stays within ``presence_max_members`` (over it, presence answers
  the counts only, and no events are sent: each would go to every member).

Store operations run in order on one worker (a leave must never overtake the join it
follows); the memory store is called at once. Time comes from an injected clock and
the grace period advances in ``tick(now)``, so the unit tests drive it by hand.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from staywire.brokers.presence import Member, MemoryPresence, PresenceEvent, PresenceStore, member_json
from staywire.config import Config
from staywire.exceptions import BrokerUnavailable
from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import PresenceQuery, PresenceStatsQuery
from staywire.server.auth import Identity
from staywire.server.faults import FaultLog
from staywire.server.transport import text_frame

__all__ = ["MAX_INFO", "UNSUB_WINDOW", "Present", "Presence"]

log = logging.getLogger("staywire.server")

# The connection data a member shows (``info``) is left out above this many bytes:
# it is sent to every member of the channel in every answer.
MAX_INFO = 256
# An unsubscribed client leaves this much later (at most presence_grace): long enough
# for the ``sub`` that follows an ``unsub`` in a client's resync (docs/protocol.md).
UNSUB_WINDOW = 1.0

Deliver = Callable[[str, bytes], None]  # (channel, frame) to the node's subscribers


class Present(Protocol):
    """What presence reads of a connection."""

    @property
    def id(self) -> str: ...
    @property
    def session(self) -> str: ...
    @property
    def identity(self) -> Identity | None: ...
    @property
    def presence_info(self) -> bytes | None: ...


class Asker(Present, Protocol):
    subs: dict[str, Any]

    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None: ...
    def enqueue(self, frame: bytes) -> None: ...


def member_of(conn: Present) -> Member:
    ident = conn.identity
    user = ident.user if ident is not None else ""
    # Anonymous clients are told apart by their session (which a resume keeps): never
    # sent anywhere, it only counts them.
    key = user if user else "~" + (conn.session or conn.id)
    return Member(conn.id, key, member_json(conn.id, user, conn.presence_info))


class Presence:
    __slots__ = ("config", "store", "_deliver", "_faults", "_clock", "_sync", "_local",
                 "_departing", "_deadlines", "_seq", "_by_key", "_ops", "_worker", "_task")

    def __init__(self, config: Config, store: PresenceStore, deliver: Deliver,
                 faults: FaultLog | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.store = store
        self._deliver = deliver
        self._faults = faults
        self._clock = clock
        self._sync = store if isinstance(store, MemoryPresence) else None
        self._local: dict[tuple[str, str], Member] = {}  # (channel, client) -> live member
        # (channel, client) -> (deadline, member): clients that left and are still members,
        # and their deadlines in a heap (an entry no longer in _departing is skipped).
        self._departing: dict[tuple[str, str], tuple[float, Member]] = {}
        self._deadlines: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._by_key: dict[tuple[str, str], set[str]] = {}  # (channel, key) -> departing clients
        self._ops: deque[tuple[bool, str, Member]] = deque()  # (join?, channel, member)
        self._worker: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def enabled(self, channel: str) -> bool:
        return self.config.channel(channel).presence

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.store.start(self.on_event)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._worker is not None:
            await asyncio.wait([self._worker], timeout=2.0)
        await self.store.close(self.config.presence_grace)

    async def _run(self) -> None:
        """Grace deadlines (to a quarter of a second) and the store's heartbeat, on one
        timer; a heartbeat Redis is slow to answer never holds the deadlines back."""
        cfg = self.config
        period = max(0.05, min(UNSUB_WINDOW / 4, cfg.presence_ttl / 3,
                               cfg.presence_grace / 5 if cfg.presence_grace else 1.0))
        store_every = cfg.presence_ttl / 3
        next_store = 0.0
        beat: asyncio.Task[None] | None = None
        try:
            while True:
                now = self._clock()
                self.tick(now)
                if now >= next_store and (beat is None or beat.done()):
                    next_store = now + store_every
                    beat = asyncio.get_running_loop().create_task(self._beat())
                await asyncio.sleep(period)
        finally:
            if beat is not None:
                beat.cancel()

    async def _beat(self) -> None:
        try:
            await self.store.tick()
            self._worked()
        except BrokerUnavailable as exc:
            self._failed(exc)
        except Exception:
            log.exception("presence heartbeat failed")

    # ------------------------------------------------------------------ membership

    def joined(self, channel: str, conn: Present) -> None:
        """``conn``'s subscription to ``channel`` is live."""
        if not self.enabled(channel):
            return
        member = member_of(conn)
        self._local[(channel, conn.id)] = member
        clients = self._by_key.pop((channel, member.key), None)
        if clients and conn.id in clients:
            # The same client again (its unsub, then sub): it never stopped being a member.
            clients.discard(conn.id)
            del self._departing[(channel, conn.id)]
        else:
            self._op(True, channel, member)
        # A departed client of the same user: the new one is in first, so the user's
        # count never drops to zero (no leave, and the join above was no first one).
        if clients:
            for client in clients:
                entry = self._departing.pop((channel, client), None)
                if entry is not None:
                    self._op(False, channel, entry[1])

    def left(self, channel: str, conn: Present, gone: bool) -> None:
        """``conn`` left ``channel``: ``gone`` when its connection ended (the grace
        period), else an unsub (``UNSUB_WINDOW``)."""
        member = self._local.pop((channel, conn.id), None)
        if member is None:
            return
        grace = self.config.presence_grace
        delay = grace if gone else min(grace, UNSUB_WINDOW)
        if delay <= 0:
            self._op(False, channel, member)
            return
        deadline = self._clock() + delay
        self._departing[(channel, conn.id)] = (deadline, member)
        heapq.heappush(self._deadlines, (deadline, next(self._seq), channel, conn.id))
        self._by_key.setdefault((channel, member.key), set()).add(conn.id)

    def tick(self, now: float) -> None:
        """Departed clients whose time is up leave."""
        departing = self._departing
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, channel, client = heapq.heappop(deadlines)
            entry = departing.get((channel, client))
            if entry is None or entry[0] != deadline:
                continue  # came back meanwhile (or left again later)
            member = entry[1]
            del departing[(channel, client)]
            clients = self._by_key.get((channel, member.key))
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._by_key[(channel, member.key)]
            self._op(False, channel, member)

    @property
    def departing(self) -> int:
        return len(self._departing)

    def _op(self, join: bool, channel: str, member: Member) -> None:
        sync = self._sync
        if sync is not None:
            (sync.join_now if join else sync.leave_now)(channel, member)
            return
        self._ops.append((join, channel, member))
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        ops = self._ops
        try:
            while ops:
                join, channel, member = ops.popleft()
                try:
                    if join:
                        await self.store.join(channel, member)
                    else:
                        await self.store.leave(channel, member)
                    self._worked()
                except BrokerUnavailable as exc:
                    # The store makes it again at its next heartbeat (presence_redis.py).
                    # Counted in staywire_broker_errors{operation="presence"}, logged once.
                    self._failed(exc)
                except Exception:
                    log.exception("presence %s failed channel=%s", "join" if join else "leave",
                                  channel)
        finally:
            self._worker = None

    def _worked(self) -> None:
        if self._faults is not None:
            self._faults.worked("presence")

    def _failed(self, exc: BaseException) -> None:
        if self._faults is not None:
            self._faults.failed("presence", exc)
        else:
            log.warning("presence store unavailable: %s", exc)

    # ------------------------------------------------------------------ events

    def on_event(self, event: PresenceEvent) -> None:
        """From the store: a user's first client joined or its last left, on any node."""
        opts = self.config.channel(event.channel)
        if not opts.join_leave:
            return
        # The channel's largest size during the change: a leave from max + 1 is as
        # unsent as the join that went over.
        largest = event.clients if event.kind == "join" else event.clients + 1
        if largest > opts.presence_max_members:
            return
        self._deliver(event.channel, text_frame(
            b'{"type":"%s","channel":"%s","member":%s}'
            % (event.kind.encode(), event.channel.encode(), event.member)))

    # ------------------------------------------------------------------ requests

    async def answer(self, conn: Asker, req: PresenceQuery | PresenceStatsQuery) -> None:
        """``presence`` and ``presence_stats``: a ``result``, or an ``error``."""
        channel = req.channel
        opts = self.config.channel(channel)
        if not opts.presence:
            conn.send_error(ErrorCode.PRESENCE_DISABLED, "presence is off on this channel",
                            req.id)
            return
        if channel not in conn.subs:
            conn.send_error(ErrorCode.NOT_SUBSCRIBED, "subscribe to the channel first", req.id)
            return
        stats = isinstance(req, PresenceStatsQuery)
        limit = 0 if stats else opts.presence_max_members
        try:
            snap = await self.store.snapshot(channel, limit)
        except BrokerUnavailable as exc:
            self._failed(exc)
            conn.send_error(ErrorCode.UNAVAILABLE, "presence store unavailable; try again",
                            req.id)
            return
        counts = b'"clients":%d,"users":%d' % (snap.clients, snap.users)
        if stats:
            data = b"{%s}" % counts
        elif snap.members is None:
            data = b'{%s,"members":[],"stats_only":true}' % counts
        else:
            data = b'{%s,"members":[%s]}' % (counts, b",".join(snap.members))
        conn.enqueue(text_frame(b'{"type":"result","id":%d,"data":%s}' % (req.id, data)))
