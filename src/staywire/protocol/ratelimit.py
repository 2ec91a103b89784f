"""A token bucket with an injected clock: one per connection for messages, one for bytes."""

from __future__ import annotations

__all__ = ["KeyedBuckets", "TokenBucket", "ViolationCounter"]


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
        elapsed = now - self.stamp
        if elapsed > 0:  # a clock that went backwards refills nothing
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


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
