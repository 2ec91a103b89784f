"""Background work a node starts and must not lose: session saves, broker unsubscribes,
disconnect hooks.

Each task is held until it ends (a bare ``ensure_future`` can be collected while it
runs), and ``stop()`` gives the unfinished ones a bounded time: the final session
saves at shutdown are what lets a client resume after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

__all__ = ["Background"]


class Background:
    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` for what is running, then cancel the rest."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
