"""Channel membership: local subscribers joining and leaving, and this node's broker
subscriptions that follow them.

The first local subscriber of a channel subscribes the node at the broker; the last
one to leave unsubscribes it (in the background: a leave never waits on the broker).
"""

from __future__ import annotations

import asyncio
import logging

from staywire.brokers.base import Broker
from staywire.exceptions import BrokerUnavailable
from staywire.server.background import Background
from staywire.server.faults import FaultLog
from staywire.server.hub import Hub, Subscriber

__all__ = ["Membership"]

log = logging.getLogger("staywire.server")


class Membership:
    __slots__ = ("_hub", "_broker", "_background", "_faults", "_joining")

    def __init__(self, hub: Hub, broker: Broker, background: Background,
                 faults: FaultLog) -> None:
        self._hub = hub
        self._broker = broker
        self._background = background
        self._faults = faults
        self._joining: dict[str, asyncio.Future[None]] = {}

    async def join(self, channel: str, conn: Subscriber) -> None:
        """Add a local subscriber; the first one subscribes this node at the broker.

        Every subscriber that joins while that is in flight waits for it: it must not read
        history before the node receives the channel's live publications (or it could miss
        some), and if the broker subscription fails, it fails for all of them."""
        hub = self._hub
        if hub.add(channel, conn):
            pending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._joining[channel] = pending
            try:
                await self._broker.subscribe(channel)
            except BrokerUnavailable as exc:
                for other in list(hub.channels.get(channel, ())):
                    hub.remove(channel, other)
                pending.set_exception(exc)
                raise
            finally:
                del self._joining[channel]
                if not pending.done():
                    pending.set_result(None)
            return
        joining = self._joining.get(channel)
        if joining is not None:
            await asyncio.shield(joining)

    def count(self, channel: str) -> int:
        """Local subscribers of ``channel``."""
        return self._hub.subscribers(channel)

    def leave(self, channel: str, conn: Subscriber) -> None:
        if self._hub.remove(channel, conn):
            self._background.spawn(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: str) -> None:
        if self._hub.subscribers(channel):
            return  # someone joined again meanwhile
        try:
            await self._broker.unsubscribe(channel)
        except BrokerUnavailable as exc:
            # Harmless for clients (the broker re-subscribes only channels with listeners
            # after it recovers), but the node may receive the channel until then.
            self._faults.failed("unsubscribe", exc)
            return
        self._faults.worked("unsubscribe")
