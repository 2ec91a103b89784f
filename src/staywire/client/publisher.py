"""The publish path: the outbox of unacknowledged publishes, and backpressure before it.

Every publish goes into the outbox (``protocol.outbox``, optionally backed by
``SqliteOutboxStore``) and, when OPEN, onto the wire; it stays in the outbox
until acknowledged (or refused) and is sent again, with the same idempotency
key, on every new connection until then. While the connection's write buffer is over
``high_water``, new publishes are held back in call order, before the outbox,
until the buffer is back at or below ``low_water``.

Publishes go out paced under the rate limits the server's ``welcome`` announces
(the connection's ``Pacer``, which every frame pays into): waiting for a turn keeps
them in order, where a refused and retried publish could land after later ones.
Paced entries count as unsent, so a long wait shows in ``buffered_amount`` and
holds ``publish()`` back.

The chunks of a transfer (``publish_chunk``) are outbox entries too, sent as binary
frames. After a reconnect each transfer's first unacknowledged chunk is replayed
alone, and the rest once it is acknowledged: a node that never saw the transfer
recognises it by that chunk (docs/protocol.md, *Transfers*).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staywire.client import messages as m
from staywire.client.link import Link
from staywire.client.requests import Requests
from staywire.client.state import ConnectionState, StateWatch
from staywire.client.store import SqliteOutboxStore
from staywire.exceptions import ConnectionClosed, QueueFull, RequestError, RequestTimeout
from staywire.protocol.backoff import jittered
from staywire.protocol.codes import ErrorCode
from staywire.protocol.outbox import Outbox, OutboxEntry
from staywire.protocol.transfer import OutChunk, chunk_key

__all__ = ["Publisher"]

log = logging.getLogger("staywire.client")

# Backpressure waits re-check at least this often, in case a transport never signals.
_FLOW_POLL = 0.05
# A pub frame's bytes beyond its data, channel and key (type, id, field names).
_PUB_OVERHEAD = 64


# Refusals that say "nothing was published, not now": the key makes a retry safe.
_RETRY_LATER = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})
MAX_REFUSALS = 8  # about 15 s of pauses (0.1 s doubling to 5 s, jittered), then fail


@dataclass(slots=True)
class _Held:
    """A publish waiting for the write buffer to drain, not yet in the outbox."""

    channel: str
    data: bytes
    key: str
    future: asyncio.Future[int]
    binary: bool = False
    chunk: bytes | None = None
    transfer: str | None = None


class Publisher:
    """Publishes from the call to the ack, across connections."""

    def __init__(
        self,
        *,
        max_messages: int | None,
        max_bytes: int | None,
        outbox_path: str | Path | None,
        high_water: int | None,
        low_water: int | None,
        requests: Requests,
        stats: dict[str, int],
        watch: StateWatch,
        current_link: Callable[[], Link | None],
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._random = random
        self._store = SqliteOutboxStore(outbox_path) if outbox_path is not None else None
        self._outbox = Outbox(max_messages=max_messages, max_bytes=max_bytes, store=self._store)
        self._high_water = high_water
        self._low_water = low_water
        self._requests = requests
        self._stats = stats
        self._watch = watch
        self._current_link = current_link  # the welcomed connection, if any
        self._key_prefix = secrets.token_hex(8)
        self._next_key = 0
        self._pub_waiters: dict[str, asyncio.Future[int]] = {}
        self._flow: asyncio.Event | None = None
        self._held: deque[_Held] = deque()  # publishes held back by backpressure, in order
        self._throttled = False  # over the high-water mark, not yet back under the low one
        self._pump_timer: asyncio.TimerHandle | None = None
        self._paced: deque[OutboxEntry] = deque()  # waiting for the link's pacer, in order
        # transfer -> the key of its chunk replayed alone after a reconnect
        self._probes: dict[str, str] = {}
        self._pace_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._flow = asyncio.Event()

    @property
    def write_buffer_limits(self) -> tuple[int, int] | None:
        """The transport's ``(high, low)`` write buffer marks, or None when backpressure is off."""
        if self._high_water is not None and self._low_water is not None:
            return (self._high_water, self._low_water)
        return None

    @property
    def size(self) -> int:
        return len(self._outbox)

    @property
    def buffered_amount(self) -> int:
        link = self._current_link()
        in_transport = link.buffered_amount if link is not None else 0
        return in_transport + self._outbox.unsent_bytes

    async def publish(
        self, channel: str, data: Any, *, key: str | None, timeout: float | None
    ) -> int:
        binary = isinstance(data, bytes | bytearray | memoryview)
        payload = bytes(data) if binary else m.encode_data(data)
        if key is None:
            self._next_key += 1
            key = f"{self._key_prefix}-{self._next_key}"
        elif not 1 <= len(key) <= 128:
            raise ValueError("key must be 1 to 128 characters")
        return await self._submit(_Held(channel, payload, key,
                                        asyncio.get_running_loop().create_future(), binary),
                                  timeout)

    async def publish_chunk(self, channel: str, out: OutChunk) -> int:
        """One chunk of a transfer, until acknowledged (across reconnects); its offset.
        The key only names the entry here: the server derives the chunk's own."""
        held = _Held(channel, out.payload, chunk_key(out.chunk.transfer, out.seq),
                     asyncio.get_running_loop().create_future(), True, out.header,
                     out.chunk.transfer)
        return await self._submit(held, None)

    async def _submit(self, held: _Held, timeout: float | None) -> int:
        fut, key = held.future, held.key
        if self._watch.state is ConnectionState.OPEN and (self._held or self._over_high_water()):
            # Over the high-water mark: wait, in call order, until below the low-water mark.
            self._throttled = True
            self._held.append(held)
            self.pulse()
        else:
            self._enqueue(held)  # QueueFull propagates: nothing was queued
        try:
            # asyncio.timeout, not wait_for: a cancel that lands with the ack must not be
            # lost (see drain()).
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            raise RequestTimeout(f"publish {key} not acknowledged within {timeout:g} s") from None
        finally:
            if not fut.done():
                fut.cancel()  # nobody waits any more; an entry in the outbox still lands
            if self._pub_waiters.get(key) is fut:
                del self._pub_waiters[key]

    async def drain(self, check_usable: Callable[[], None]) -> None:
        check_usable()
        assert self._flow is not None
        low = self._low_water or 0
        while self._held or self.buffered_amount > low:
            check_usable()
            self._flow.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for() returns the inner
            # result when a cancel lands in the same loop turn (gh-86296), and this loop
            # would then swallow the caller's cancel (a `wait_for(drain(), t)` that timed
            # out as a pulse fired hung for good behind a peer that never reads).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FLOW_POLL):
                    await self._flow.wait()

    # -- flow control ---------------------------------------------------------------------

    def pulse(self) -> None:
        """Something publishers or drain() wait on changed: release held publishes in order."""
        if self._flow is not None:
            self._flow.set()
        if not self._held:
            return
        open_ = self._watch.state is ConnectionState.OPEN and self._current_link() is not None
        if open_ and self._throttled and self.buffered_amount <= (self._low_water or 0):
            self._throttled = False
        while self._held and (not open_ or not self._throttled):
            held = self._held.popleft()
            if held.future.done():
                continue  # the caller stopped waiting before it was queued: dropped
            try:
                self._enqueue(held)
            except QueueFull as exc:
                held.future.set_exception(exc)
                continue
            if open_ and self._over_high_water():
                self._throttled = True
        if self._held and self._pump_timer is None:
            # Transports signal resume_writing; this poll covers one that does not.
            self._pump_timer = asyncio.get_running_loop().call_later(_FLOW_POLL, self._pump_tick)

    def _pump_tick(self) -> None:
        self._pump_timer = None
        self.pulse()

    def _over_high_water(self) -> bool:
        return self._high_water is not None and self.buffered_amount > self._high_water

    def _enqueue(self, held: _Held) -> None:
        """Into the outbox (``QueueFull`` over its bound) and, when OPEN, onto the wire."""
        entry = self._outbox.add(held.channel, held.data, held.key, held.binary,
                                 chunk=held.chunk, transfer=held.transfer)
        self._pub_waiters[held.key] = held.future
        link = self._current_link()
        if link is not None and link.is_open:
            self._send(link, entry)

    def _held_back(self, entry: OutboxEntry) -> bool:
        """A chunk waiting for its transfer's first replayed chunk to be acknowledged."""
        probe = self._probes.get(entry.transfer) if entry.transfer is not None else None
        return probe is not None and probe != entry.key

    def _send(self, link: Link, entry: OutboxEntry) -> None:
        if self._held_back(entry):
            return  # stays unsent: sent when the probe is answered
        if link.pacer is None:
            self._write(link, entry)
            return
        self._paced.append(entry)
        if self._pace_timer is None:
            self._release_paced()

    def _write(self, link: Link, entry: OutboxEntry) -> None:
        rid = self._requests.new_id()
        self._outbox.assign(entry, rid)
        if not entry.binary:
            link.send(m.encode_pub(rid, entry.channel, entry.data, entry.key))
        elif link.binary:
            link.send_binary(m.encode_pub_binary(rid, entry.channel, entry.data, entry.key,
                                                 entry.chunk))
        else:  # the server selected v1: it would refuse the frame, so refuse it here
            self.on_error(rid, m.Error(code=ErrorCode.BINARY_UNSUPPORTED.value, id=rid,
                                       reason="the server selected protocol v1: no binary data"))

    def _release_paced(self) -> None:
        """Write paced entries, in order, while the pacer allows; then wait for the next turn
        (a timer), or for an ack when as many publishes as the pacer allows await theirs."""
        self._pace_timer = None
        link = self._current_link()
        if link is None or not link.is_open or link.pacer is None:
            return  # connection_lost() forgets them; the next welcome replays them
        pacer = link.pacer
        loop = asyncio.get_running_loop()
        while self._paced:
            entry = self._paced[0]
            if entry.request_id is not None or self._outbox.get(entry.key) is not entry:
                self._paced.popleft()  # written or settled meanwhile
                continue
            if self._outbox.in_flight >= pacer.in_flight:
                return  # the next ack (or refusal) calls again
            size = (len(entry.data) + len(entry.channel) + len(entry.key.encode())
                    + len(entry.chunk or b"") + _PUB_OVERHEAD)
            wait = pacer.delay(loop.time(), size)
            if wait > 0:
                self._stats["paced"] = self._stats.get("paced", 0) + 1
                self._pace_timer = loop.call_later(wait, self._release_paced)
                return
            self._paced.popleft()
            self._write(link, entry)  # Link.send charges the pacer

    def _answered(self, entry: OutboxEntry | None = None) -> None:
        """A publish was answered: one more may be in flight. A transfer's replayed
        chunk releases the chunks after it."""
        if entry is not None and entry.transfer is not None and \
                self._probes.get(entry.transfer) == entry.key:
            del self._probes[entry.transfer]
            link = self._current_link()
            if link is not None and link.is_open:
                for later in self._outbox.unsent():
                    if later.transfer == entry.transfer:
                        self._send(link, later)
        if self._paced and self._pace_timer is None:
            self._release_paced()

    # -- connections come and go ----------------------------------------------------------

    def replay(self, link: Link) -> None:
        """A new connection was welcomed: send everything not acknowledged, in order (paced
        when the link has a pacer)."""
        self._probes.clear()
        for entry in self._outbox.unsent():
            if entry.transfer is not None:
                if entry.transfer in self._probes:
                    continue  # after its transfer's first chunk is acknowledged
                self._probes[entry.transfer] = entry.key
            self._stats["resent"] += 1
            self._send(link, entry)

    def connection_lost(self) -> None:
        self._outbox.connection_lost()
        self._probes.clear()
        self._stop_pacing()

    def _stop_pacing(self) -> None:
        self._paced.clear()
        if self._pace_timer is not None:
            self._pace_timer.cancel()
            self._pace_timer = None

    def on_ack(self, ack: m.Ack) -> bool:
        """Settle the publish ``ack`` answers; False when it answers no publish."""
        entry = self._outbox.ack(ack.id)
        if entry is None:
            return False
        self._requests.pop(ack.id)
        if ack.duplicate:
            self._stats["duplicate_acks"] += 1
        fut = self._pub_waiters.pop(entry.key, None)
        if fut is not None and not fut.done():
            fut.set_result(ack.offset if ack.offset is not None else 0)
        self._answered(entry)
        self.pulse()
        return True

    def on_error(self, rid: int, err: m.Error) -> bool:
        """Settle the publish ``err`` (the reply to ``rid``) refuses; False when it refuses none.

        ``rate_limited`` and ``unavailable`` mean "nothing was published, not now": the
        entry is sent again with its key after a jittered, growing pause, up to
        ``MAX_REFUSALS`` times. Any other error fails the publish."""
        if err.code in _RETRY_LATER:
            refused = self._outbox.refused(rid)
            if refused is not None and refused.refusals <= MAX_REFUSALS:
                self._requests.pop(rid)
                self._stats["refused_retried"] = self._stats.get("refused_retried", 0) + 1
                delay = jittered(min(5.0, 0.1 * 2 ** (refused.refusals - 1)), self._random)
                asyncio.get_running_loop().call_later(delay, self._resend, refused)
                self._answered()
                return True
            if refused is not None:  # out of retries: fail it like any other error
                self._outbox.assign(refused, rid)
        entry = self._outbox.reject(rid)
        if entry is None:
            return False
        self._requests.pop(rid)
        fut = self._pub_waiters.pop(entry.key, None)
        if fut is not None and not fut.done():
            fut.set_exception(RequestError(err.code, err.reason))
        else:
            log.warning("publish %s to %s rejected: %s", entry.key, entry.channel, err.code)
        self._answered(entry)
        self.pulse()
        return True

    def _resend(self, entry: OutboxEntry) -> None:
        """Send a refused entry again on the current connection (a new one replays it)."""
        link = self._current_link()
        if link is None or entry.request_id is not None or self._outbox.get(entry.key) is not entry:
            return
        if link.pacer is not None:
            # Back in its place among the publishes waiting for their turn.
            self._paced = deque(e for e in self._outbox.unsent() if not self._held_back(e))
            if self._pace_timer is None:
                self._release_paced()
            return
        self._send(link, entry)

    def discard_transfer(self, transfer: str) -> None:
        """A transfer failed or was cancelled: its chunks still in the outbox are dropped
        (the server would refuse them now), and whoever waits on them is released."""
        self._probes.pop(transfer, None)
        for entry in self._outbox:
            if entry.transfer == transfer:
                self._outbox.discard(entry.key)
                fut = self._pub_waiters.pop(entry.key, None)
                if fut is not None and not fut.done():
                    fut.cancel()

    def fail(self, failure: ConnectionClosed) -> None:
        """The client is CLOSED: fail every publish still waited for."""
        for key, fut in list(self._pub_waiters.items()):
            if not fut.done():
                fut.set_exception(failure)
                fut.exception()
        self._pub_waiters.clear()
        while self._held:
            held = self._held.popleft()
            if not held.future.done():
                held.future.set_exception(failure)
                held.future.exception()
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None
        self._stop_pacing()

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
