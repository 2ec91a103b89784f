"""Brokers: where streams, history, idempotency keys and sessions live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from staywire.brokers.base import Broker, HistoryLimits
from staywire.brokers.memory import MemoryBroker

if TYPE_CHECKING:
    from staywire.config import Config

__all__ = ["Broker", "MemoryBroker", "create_broker"]


def create_broker(config: Config) -> Broker:
    """The broker named by ``config.broker``: ``memory``, a ``redis://`` or a
    ``redis+sentinel://`` URL.

    Its history limits are the channels' options (``[channels."PATTERN"]``)."""

    def policy(channel: str) -> HistoryLimits:
        opts = config.channel(channel)
        return HistoryLimits(opts.history_size, opts.history_ttl, opts.history_max_bytes)

    if config.broker == "memory":
        return MemoryBroker(history_size=config.history_size, history_ttl=config.history_ttl,
                            dedupe_window=config.dedupe_window, policy=policy)
    from staywire.brokers.redis import RedisBroker

    return RedisBroker(config.broker, history_size=config.history_size,
                       history_ttl=config.history_ttl, dedupe_window=config.dedupe_window,
                       policy=policy, wait_replicas=config.redis_wait_replicas,
                       wait_timeout=config.redis_wait_timeout)
