"""Helpers shared by the client tests (plain functions; fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt

from staywire.client import Join, Leave, Message, Recovery, Subscription

SECRET = "client-tests-secret-that-is-long-enough-for-hs256"

# Fast settings for tests: small backoff so reconnects take milliseconds, not seconds.
FAST: dict[str, Any] = {"backoff_base": 0.05, "backoff_cap": 0.5, "connect_timeout": 2.0}


def make_token(sub: str = "alice", *, ttl: float = 60.0, channels: list[str] | None = None,
               secret: str = SECRET) -> str:
    # A float exp: int() would make a ttl of 1 s anything between 0 and 1 s (flaky).
    claims = {"sub": sub, "exp": time.time() + ttl, "channels": channels or ["*"]}
    return jwt.encode(claims, secret, algorithm="HS256")


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0,
                     what: str = "condition") -> None:
    """Poll ``predicate`` every 10 ms until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Collector:
    """Reads a subscription in a task, keeping messages and recovery events apart."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.messages: list[Message] = []
        self.recoveries: list[Recovery] = []
        self.presence: list[Join | Leave] = []  # join_leave channels
        self.items: list[Message | Recovery | Join | Leave] = []  # all, in delivery order
        self.error: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for item in self.sub:
                self.items.append(item)
                if isinstance(item, Message):
                    self.messages.append(item)
                elif isinstance(item, Join | Leave):
                    self.presence.append(item)
                else:
                    self.recoveries.append(item)
        except Exception as exc:  # noqa: BLE001 - kept for the test to inspect
            self.error = exc

    def data(self) -> list[Any]:
        return [m.data for m in self.messages]

    def offsets(self) -> list[int]:
        return [m.offset for m in self.messages]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
