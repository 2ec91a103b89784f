"""A token bucket with an injected clock: one per connection for messages, one for bytes."""

from __future__ import annotations

__all__ = ["TokenBucket", "ViolationCounter"]


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
