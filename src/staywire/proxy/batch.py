"""Coalescing: the subscribes of one proxy URL that wait together go as one HTTP request.

Why: a subscribe is one small question, and the backend's cost of an HTTP request
(framework routing, request and response objects; about 0.12 ms for FastAPI under
uvicorn, docs/benchmarks.md) is most of what it spends answering it. Measured, one
request per subscribe left a node at a third of its subscribe rate without the proxy,
with the backend out of CPU. Sent together, the request's cost is paid once per batch.

When a batch goes out (``Coalescer``, one per event and URL):

* **idle**: an item submitted when no call to its URL is out is sent on the next turn
  of the event loop (``call_soon``), with the others submitted in the same turn: no
  timer, no added latency;
* **busy**: while ``MAX_CALLS`` calls to the URL are out, items wait; when one returns,
  up to ``max_batch`` of the waiting ones go as the next batch at once.

What stays per item (``client.ProxyClient.call`` around ``submit``): the concurrency
bound counts items, the circuit breaker's verdict is recorded once per item, each item
has its own deadline (a batch's is its earliest item's; an item still waiting at its
deadline fails without being sent), and counters count items. A retry (subscribe is
idempotent) resends the whole batch. The answer's envelope (``schema.BatchResponse``)
is checked here: a malformed answer, or one with a different number of answers than
questions, fails every item of that batch as ``malformed`` (``BadBatch``), since its
order can no longer be trusted; one malformed answer in a good list fails only its own
item, where ``call`` decodes it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import msgspec

from staywire.proxy.schema import BatchResponse

__all__ = ["MAX_CALLS", "BadBatch", "Coalescer"]

#: Batch calls out at once per URL. Two, not one, so that the backend already works on
#: the next batch while the node handles one batch's answers. Measured with the bench's
#: proxy workload (48 subscribes in flight, one uvicorn worker): 1, 2 and 4 all gave
#: batches of about 22 and rates within the noise of the shared machine, so the smallest
#: number that overlaps the two sides.
MAX_CALLS = 2

Send = Callable[[bytes, float], Awaitable[bytes]]  # (body, deadline) -> the answer's body


class BadBatch(Exception):
    """The batch's answer is off contract as a whole: every item of it fails."""


class _Item:
    __slots__ = ("payload", "deadline", "future")

    def __init__(self, payload: bytes, deadline: float, future: asyncio.Future[bytes]) -> None:
        self.payload = payload
        self.deadline = deadline
        self.future = future


_decode_answer = msgspec.json.Decoder(BatchResponse).decode


class Coalescer:
    """The batches of one event and URL. ``send`` makes one call (retries included)."""

    __slots__ = ("_send", "max_batch", "_waiting", "_calls", "_scheduled", "_tasks",
                 "batches", "items")

    def __init__(self, send: Send, *, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._send = send
        self.max_batch = max_batch
        self._waiting: deque[_Item] = deque()
        self._calls = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # batch calls made (the metrics' counters)
        self.items = 0  # items they carried

    def submit(self, payload: bytes, deadline: float) -> asyncio.Future[bytes]:
        """The future of this item's own answer (its JSON bytes). It fails with what the
        call failed with (``TimeoutError``, the client's attempt failure) or ``BadBatch``.
        Cancelling it (the connection went away) drops the item, not the batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._waiting.append(_Item(payload, deadline, future))
        if not self._scheduled and self._calls < MAX_CALLS:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiting = self._waiting
        while waiting and self._calls < MAX_CALLS:
            items: list[_Item] = []
            while waiting and len(items) < self.max_batch:
                item = waiting.popleft()
                if item.future.done():
                    continue  # its caller is gone
                if item.deadline <= now:
                    item.future.set_exception(TimeoutError("no answer in time"))
                    continue
                items.append(item)
            if not items:
                continue
            self._calls += 1
            task = loop.create_task(self._call(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, items: list[_Item]) -> None:
        try:
            body = b'{"batch":[%s]}' % b",".join([item.payload for item in items])
            deadline = min(item.deadline for item in items)
            self.batches += 1
            self.items += len(items)
            try:
                raw = await self._send(body, deadline)
                answers = _split(raw, len(items))
            except asyncio.CancelledError:
                for item in items:
                    item.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to each item's caller
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                return
            for item, answer in zip(items, answers, strict=True):
                if not item.future.done():
                    item.future.set_result(answer)
        finally:
            self._calls -= 1
            if self._waiting and not self._scheduled:
                self._flush()  # the next batch goes at once: its items have waited already

    async def close(self) -> None:
        """Cancel the batches out (their callers see ``CancelledError``) and the waiting."""
        for item in self._waiting:
            item.future.cancel()
        self._waiting.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _split(raw: bytes, count: int) -> list[bytes]:
    """The ``count`` answers of a batch answer, each still to be decoded by its caller."""
    try:
        answer = _decode_answer(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadBatch(str(exc)) from None
    if len(answer.batch) != count:
        raise BadBatch(f"{len(answer.batch)} answers to a batch of {count}")
    return [bytes(item) for item in answer.batch]
