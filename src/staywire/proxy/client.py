"""The HTTP side of the proxies: one pooled client, bounded, timed, retried, broken.

Every call to the application's backend goes through ``ProxyClient.call``, which
either returns a validated answer or raises ``ProxyUnavailable``: nothing else
escapes, so a backend that is down, slow, overloaded or answering garbage is an
error for that one request and never takes a connection (or the node) with it.

* **Keep-alive**: one pool per node (``http.py``) reuses its connections; a TCP
  (and TLS) handshake per WebSocket connect would double the backend's cost. It keeps
  no cookies: a ``Set-Cookie`` in one user's answer must never ride along on another
  user's call. (``http.py`` says why it is not httpx or aiohttp: measured cost.)
* **Concurrency**: at most ``max_concurrency`` calls in flight per node. One more
  fails at once (``overloaded``) instead of queueing: a queue in front of a slow
  backend only turns its slowness into every client's timeout, unbounded.
* **Timeout**: ``timeout`` bounds the whole call, retries and a trickling body
  included (a per-read timeout alone would let a backend sending one byte a second
  hold a call for ever). It is one deadline, checked by the pool's sweep every
  ``http.SWEEP`` (20 ms) rather than a timer per call, which cost a sixth of a call.
* **Retries** (``retries``, exponential backoff with jitter) only for events that
  change nothing at the backend (connect, refresh, subscribe), and only after a
  failure that says the request was not handled (connection refused or reset, 502,
  503, 504). A publish or an RPC is never sent twice: the backend may have acted.
* **Circuit breaker** per event (``breaker.py``).
* **Size**: a body over ``max_response_size`` is refused while it is read.
* **Batches** (``batch`` > 0, for subscribe only): the subscribes to one URL that wait
  together go as one request of at most ``batch`` items (``batch.py``); all of the above
  still holds per item.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import msgspec

from staywire.exceptions import ProxyUnavailable
from staywire.protocol.backoff import Backoff
from staywire.proxy.batch import BadBatch, Coalescer
from staywire.proxy.breaker import Breaker, BreakerState
from staywire.proxy.http import HttpError, HttpPool

__all__ = ["BATCHED", "EVENTS", "IDEMPOTENT", "ProxyClient"]

log = logging.getLogger("staywire.proxy")

T = TypeVar("T")

EVENTS = ("connect", "refresh", "subscribe", "publish", "rpc")
IDEMPOTENT = frozenset({"connect", "refresh", "subscribe"})
# Events whose calls may go in batches: idempotent (a retry resends the whole batch) and
# answered per item with no side effect a neighbour could see.
BATCHED = frozenset({"subscribe"})

# The backend did not handle the request: safe to send an idempotent one again.
_RETRY_STATUS = frozenset({502, 503, 504})


class _Failed(Exception):
    """One attempt failed; ``kind`` names how (the metric's ``outcome`` label)."""

    def __init__(self, kind: str, retry: bool, backend_down: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry = retry  # the backend did not handle it: an idempotent call may retry
        self.backend_down = backend_down  # counts toward opening the circuit


class ProxyClient:
    def __init__(self, *, timeout: float = 1.0, max_concurrency: int = 64, retries: int = 2,
                 max_response_size: int = 65536, breaker_failures: int = 5,
                 breaker_reset: float = 5.0, batch: int = 0, clock: Callable[[], float] = time.monotonic,
                 random: Callable[[], float] = _random.random) -> None:
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.max_response_size = max_response_size
        if batch < 0:
            raise ValueError(f"batch must be >= 0, got {batch}")
        self.batch = batch  # 0: one request per call
        self._coalescers: dict[tuple[str, str], Coalescer] = {}
        self.breakers = {event: Breaker(event, failures=breaker_failures,
                                        reset_after=breaker_reset, clock=clock)
                         for event in EVENTS}
        self._backoff = Backoff(base=0.05, factor=2.0, cap=1.0, max_retries=None, random=random)
        self.in_flight = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (event, outcome) -> calls
        self._last_failure: dict[str, str] = {}
        self._http = HttpPool(max_connections=max_concurrency, max_body=max_response_size)

    async def close(self) -> None:
        for coalescer in self._coalescers.values():
            await coalescer.close()
        await self._http.close()

    def batches(self) -> dict[str, tuple[int, int]]:
        """Per event: (batch calls made, items they carried)."""
        out: dict[str, tuple[int, int]] = {}
        for (event, _), c in self._coalescers.items():
            calls, items = out.get(event, (0, 0))
            out[event] = (calls + c.batches, items + c.items)
        return out

    def state(self, event: str) -> BreakerState:
        return self.breakers[event].state

    async def call(self, event: str, url: str, body: msgspec.Struct, answer: type[T]) -> T:
        """POST ``body`` as JSON to ``url``; the answer decoded as ``answer``.

        Raises ``ProxyUnavailable`` (with the outcome as its message) for every failure."""
        breaker = self.breakers[event]
        if self.in_flight >= self.max_concurrency:
            raise self._fail(event, "overloaded")
        if not breaker.allow():
            raise self._fail(event, "circuit_open")
        self.in_flight += 1
        verdict = False
        try:
            payload = msgspec.json.encode(body)
            # One deadline for the whole call, retries and their waits included.
            deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                if self.batch and event in BATCHED:
                    raw = await self._coalescer(event, url).submit(payload, deadline)
                else:
                    raw = await self._attempts(event, url, payload, deadline)
            except BadBatch as exc:
                breaker.success()  # it answered: alive, if wrong
                verdict = True
                raise self._fail(event, "malformed", str(exc)) from None
            except TimeoutError:
                breaker.failure()
                verdict = True
                raise self._fail(event, "timeout") from None
            except _Failed as exc:
                if exc.backend_down:
                    breaker.failure()
                else:
                    breaker.success()  # it answered: alive, if wrong
                verdict = True
                raise self._fail(event, exc.kind) from None
            breaker.success()
            verdict = True
            try:
                decoded = msgspec.json.decode(raw, type=answer)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise self._fail(event, "malformed", str(exc)) from None
            self._ok(event)
            return decoded
        finally:
            self.in_flight -= 1
            if not verdict:
                breaker.release()  # cancelled mid-call: the probe slot must not stay taken

    def _coalescer(self, event: str, url: str) -> Coalescer:
        coalescer = self._coalescers.get((event, url))
        if coalescer is None:
            async def send(body: bytes, deadline: float) -> bytes:
                return await self._attempts(event, url, body, deadline)

            coalescer = self._coalescers[(event, url)] = Coalescer(send, max_batch=self.batch)
        return coalescer

    async def _attempts(self, event: str, url: str, payload: bytes, deadline: float) -> bytes:
        tries = 1 + (self.retries if event in IDEMPOTENT else 0)
        loop = asyncio.get_running_loop()
        for attempt in range(1, tries + 1):
            try:
                return await self._post(url, payload, deadline)
            except _Failed as exc:
                if not exc.retry or attempt == tries:
                    raise
                delay = self._backoff(attempt)
                assert delay is not None  # max_retries=None: never gives up by itself
                if loop.time() + delay >= deadline:
                    raise TimeoutError from None  # the next try would start too late
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _post(self, url: str, payload: bytes, deadline: float) -> bytes:
        try:
            status, raw = await self._http.post(url, payload, deadline)
        except HttpError as exc:
            if exc.kind == "oversized":
                raise _Failed("oversized", retry=False, backend_down=False) from None
            # "unreachable": refused, reset, closed before the answer; the request was not
            # answered, so an idempotent one may go again. "protocol": not HTTP at all.
            raise _Failed("unreachable", retry=exc.kind == "unreachable",
                          backend_down=True) from None
        if status != 200:
            raise _Failed(f"status_{status // 100}xx", retry=status in _RETRY_STATUS,
                          backend_down=status >= 500)
        return raw

    def _ok(self, event: str) -> None:
        self.outcomes[(event, "ok")] += 1
        if self._last_failure.pop(event, None) is not None:
            log.info("proxy %s: the backend answers again", event)

    def _fail(self, event: str, kind: str, detail: str = "") -> ProxyUnavailable:
        self.outcomes[(event, kind)] += 1
        # One line when the way it fails changes, not one per failed request: an outage
        # must not flood the log (the counters have the numbers).
        if self._last_failure.get(event) != kind:
            self._last_failure[event] = kind
            log.warning("proxy %s failed: %s%s", event, kind, f" ({detail})" if detail else "")
        return ProxyUnavailable(kind)
