"""A token bucket with an injected clock: one per connection for messages, one for bytes."""

from __future__ import annotations

__all__ = ["KeyedBuckets", "Pacer", "TokenBucket", "ViolationCounter"]


# Refills are floating point: waiting exactly delay() seconds may leave a bucket an ulp
# short of the token it waited for.
_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full.

    Time is passed in (``now``), never read here, so tests drive it with a fake clock.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be > 0")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough; say whether it did."""
        # _refill inlined: every inbound message takes from two buckets.
        tokens = self.tokens
        elapsed = now - self.stamp
        if elapsed > 0:  # a clock that went backwards refills nothing
            tokens += elapsed * self.rate
            if tokens > self.burst:
                tokens = self.burst
        self.stamp = now
        if tokens + _EPSILON >= cost:
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False

    def delay(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0.0: now); takes nothing."""
        self._refill(now)
        short = cost - self.tokens
        return short / self.rate if short > _EPSILON else 0.0

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:  # a clock that went backwards refills nothing
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.stamp = now


class Pacer:
    """A client's own pace under the server's per-connection rate limits (``welcome``
    carries them): a publish waits for its turn instead of being refused.

    A refusal costs a round trip and a retry, and a retried publish can land after
    later ones; a client that stays under the limit keeps its publishes in order.
    Every frame the client sends is ``charge``d (subscribes and RPCs too, which never
    wait: they may take the buckets below zero); publishes wait until ``delay`` says
    their turn has come. The pace is ``RATE_SHARE`` of each rate and ``BURST_SHARE``
    of each burst, so arrivals the network bunches together still fit the server's
    buckets, and ``in_flight`` (half the message burst) bounds the publishes awaiting
    an ack: a stalled link cannot pile up more than that for one burst at the server.
    """

    RATE_SHARE = 0.8
    BURST_SHARE = 0.5

    __slots__ = ("_msgs", "_bytes", "in_flight")

    def __init__(self, messages: float, burst: float, bytes_rate: float, bytes_burst: float,
                 now: float) -> None:
        share, room = self.RATE_SHARE, self.BURST_SHARE
        self._msgs = TokenBucket(messages * share, max(1.0, burst * room), now)
        self._bytes = TokenBucket(bytes_rate * share, max(1.0, bytes_burst * room), now)
        self.in_flight = max(1, int(burst * room))

    @classmethod
    def announced(cls, messages: float, burst: float, bytes_rate: float, bytes_burst: float,
                  now: float) -> Pacer | None:
        """A pacer for limits a server announced; None (no pacing) when they make no sense."""
        if min(messages, burst, bytes_rate, bytes_burst) <= 0:
            return None
        return cls(messages, burst, bytes_rate, bytes_burst, now)

    def delay(self, now: float, size: int) -> float:
        """Seconds until a message of ``size`` bytes may go (0.0: now); takes nothing. A
        message larger than the byte burst may go once the bucket is full."""
        need = min(float(size), self._bytes.burst)
        return max(self._msgs.delay(now), self._bytes.delay(now, need))

    def charge(self, now: float, size: int) -> None:
        """A message of ``size`` bytes went out: pay for it, below zero if need be."""
        self._msgs.delay(now)  # refill up to now
        self._bytes.delay(now)
        self._msgs.tokens -= 1
        self._bytes.tokens -= size


class ViolationCounter:
    """Counts events in a fixed window; ``hit`` says when ``limit`` is reached.

    Used for "persistently over the rate limit" (close 4029) and "too many invalid
    messages" (close 4500): one bad message is an error reply, a stream of them ends
    the connection.
    """

    __slots__ = ("limit", "window", "count", "window_start")

    def __init__(self, limit: int, window: float, now: float) -> None:
        self.limit = limit
        self.window = window
        self.count = 0
        self.window_start = now

    def hit(self, now: float) -> bool:
        if now - self.window_start >= self.window or now < self.window_start:
            self.window_start = now
            self.count = 0
        self.count += 1
        return self.count >= self.limit


class KeyedBuckets:
    """One token bucket per key (client IP for handshakes), with bounded memory.

    Buckets that have refilled completely carry no information and are dropped
    when the table grows past ``max_keys``; if every bucket is busy (a flood from
    many addresses), the oldest are dropped, which errs towards admitting.
    """

    __slots__ = ("rate", "burst", "max_keys", "_buckets")

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self.prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items()
                if b.tokens + (now - b.stamp) * b.rate >= b.burst]
        for k in full:
            del self._buckets[k]
        excess = len(self._buckets) - self.max_keys // 2
        if excess > 0:
            for k in list(self._buckets)[:excess]:
                del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)
