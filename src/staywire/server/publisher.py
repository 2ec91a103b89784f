"""Publishing into the broker, from a client's ``pub``, the HTTP API or application code.

One place counts publications (a duplicate, answered from the idempotency window,
is not a new one) and checks channel names for callers that bypass the envelope
schema. ``publish_nowait`` is the broker's synchronous path, where it has one (the
memory broker): a client's publish is then answered in the frame callback itself.
``publish_soon`` is the queued path of a broker that has one (Redis): the publish is
handed over in the frame callback, in order, and answered from a callback, with no
task per publish.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from staywire.brokers.base import Broker, PublishResult
from staywire.protocol.envelope import CHANNEL_PATTERN
from staywire.server.metrics import Stats

__all__ = ["Done", "Publisher"]

# Called once with the result, or with BrokerUnavailable / BrokerError.
Done = Callable[[PublishResult | None, BaseException | None], None]

_CHANNEL_RE = re.compile(CHANNEL_PATTERN)


class Publisher:
    __slots__ = ("_broker", "_stats", "publish_nowait", "publish_soon")

    def __init__(self, broker: Broker, stats: Stats) -> None:
        self._broker = broker
        self._stats = stats
        # (channel, data, key, binary, chunk)
        self.publish_nowait: Callable[..., PublishResult] | None = getattr(
            broker, "publish_nowait", None)
        # (channel, data, key, done, binary, chunk)
        self.publish_soon: Callable[..., None] | None = getattr(broker, "publish_soon", None)

    async def publish(self, channel: str, data: bytes, key: str | None = None, *,
                      binary: bool = False, chunk: bytes | None = None) -> PublishResult:
        """Raises ``ValueError`` for a bad channel name, ``BrokerUnavailable`` when the
        broker cannot take it (nothing was published). ``binary``: ``data`` is bytes to
        deliver as they are, not JSON; ``chunk``: its validated chunk header JSON."""
        if not _CHANNEL_RE.match(channel):
            raise ValueError(f"invalid channel name {channel[:64]!r}")
        if binary:
            result = await self._broker.publish(channel, data, key=key, binary=True,
                                                chunk=chunk)
        else:
            result = await self._broker.publish(channel, data, key=key)
        if not result.duplicate:
            self._stats.publications += 1
        return result

    async def key_seen(self, channel: str, key: str) -> bool:
        """Was ``key`` published to ``channel`` within the dedupe window (a transfer's
        previous chunk)? Raises ``BrokerUnavailable``."""
        return await self._broker.key_seen(channel, key)

    def publish_now(self, channel: str, data: bytes, key: str | None, binary: bool = False,
                    chunk: bytes | None = None) -> PublishResult:
        """Only when ``publish_nowait`` is set; the channel name was validated already."""
        assert self.publish_nowait is not None
        result = self.publish_nowait(channel, data, key, binary, chunk)
        if not result.duplicate:
            self._stats.publications += 1
        return result

    def publish_later(self, channel: str, data: bytes, key: str | None, done: Done,
                      binary: bool = False, chunk: bytes | None = None) -> None:
        """Only when ``publish_soon`` is set; the channel name was validated already."""
        assert self.publish_soon is not None
        stats = self._stats

        def counted(result: PublishResult | None, exc: BaseException | None) -> None:
            if result is not None and not result.duplicate:
                stats.publications += 1
            done(result, exc)

        self.publish_soon(channel, data, key, counted, binary, chunk)
