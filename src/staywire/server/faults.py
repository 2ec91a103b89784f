"""Broker failures on paths that degrade instead of failing a request.

A session that cannot be saved or loaded, or a channel the node cannot unsubscribe
from, is not an error for the client (a session is a convenience; the broker
re-subscribes only channels with listeners when it recovers). It must still not be
silent: every failure counts in ``staywire_broker_errors{operation}``, and the first
failure of an operation after it last worked logs one warning. An outage that fails
ten thousand session saves is one log line, not ten thousand.
"""

from __future__ import annotations

import logging

from staywire.server.metrics import Stats

__all__ = ["FaultLog"]

log = logging.getLogger("staywire.server")


class FaultLog:
    __slots__ = ("_stats", "_failing")

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._failing: set[str] = set()

    def failed(self, operation: str, exc: BaseException) -> None:
        self._stats.broker_errors[operation] += 1
        if operation not in self._failing:
            self._failing.add(operation)
            log.warning("broker %s failed: %s (counted in staywire_broker_errors; logged again "
                        "only after it has worked)", operation, exc)

    def worked(self, operation: str) -> None:
        if self._failing and operation in self._failing:
            self._failing.discard(operation)
            log.info("broker %s works again", operation)

    def failing(self, operation: str) -> bool:
        return operation in self._failing
