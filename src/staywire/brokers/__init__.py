"""Brokers: where streams, history, idempotency keys and sessions live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from staywire.brokers.base import Broker, HistoryLimits
from staywire.brokers.control import ControlPlane, MemoryControl
from staywire.brokers.memory import MemoryBroker
from staywire.brokers.presence import MemoryPresence, PresenceStore

if TYPE_CHECKING:
    from staywire.config import Config

__all__ = ["Broker", "ControlPlane", "MemoryBroker", "create_broker", "create_control",
           "create_presence"]


def create_broker(config: Config) -> Broker:
    """The broker named by ``config.broker``: ``memory``, a ``redis://``, a
    ``redis+sentinel://`` or a ``redis+cluster://`` URL.

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


def create_presence(config: Config, broker: Broker) -> PresenceStore:
    """Where presence lives: in this process beside a memory broker, else in the same
    Redis as the broker (``presence_redis.py``), with ``presence_ttl``.

    A memory broker never imports the Redis modules (nor redis-py): restart time is
    reconnect-storm time."""
    if isinstance(broker, MemoryBroker):
        return MemoryPresence()
    from staywire.brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        from staywire.brokers.presence_redis import RedisPresence

        return RedisPresence(broker.url, prefix=broker.prefix, ttl=config.presence_ttl)
    return MemoryPresence()


def create_control(config: Config) -> ControlPlane:
    """The control plane beside ``config.broker``: this node alone, or every node on Redis."""
    if config.broker == "memory":
        return MemoryControl()
    from staywire.brokers.redis_control import RedisControl

    return RedisControl(config.broker)
