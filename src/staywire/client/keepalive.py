"""What keeps a welcomed connection alive: heartbeats and in-band token refresh.

Both run as tasks of the current connection, started when it is welcomed and
cancelled when it is lost. The heartbeat drops a connection on which nothing
arrives (``heartbeat.py`` says why TCP alone cannot tell); the refresh asks the
token provider again before ``exp`` and presents the new token on the same
connection (``auth.py`` says why tokens come from a provider).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from staywire.client import messages as m
from staywire.client.auth import TokenSource
from staywire.client.heartbeat import ClientHeartbeat
from staywire.client.link import Link
from staywire.protocol.codes import CloseCode

__all__ = ["Keepalive"]

log = logging.getLogger("staywire.client")

# A refused or failed in-band refresh is tried again after at least this long.
_REFRESH_RETRY = 0.5


class Keepalive:
    """ClientHeartbeat and token refresh tasks for the current connection."""

    def __init__(
        self,
        *,
        ping_interval: float | None,
        pong_timeout: float,
        refresh_margin: float,
        tokens: TokenSource,
        stats: dict[str, int],
        current_link: Callable[[], Link | None],
        on_refreshed: Callable[[m.Welcome], None],
    ) -> None:
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._refresh_margin = refresh_margin
        self._tokens = tokens
        self._stats = stats
        self._current_link = current_link  # the welcomed connection, if any
        self._on_refreshed = on_refreshed
        self._heartbeat: ClientHeartbeat | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh_waiter: asyncio.Future[m.Welcome | m.Error] | None = None

    def start(self, link: Link, welcome: m.Welcome) -> None:
        """``link`` was welcomed: start its heartbeats and, if its token expires, refresh."""
        loop = asyncio.get_running_loop()
        if self._ping_interval is not None:
            self._heartbeat = ClientHeartbeat(
                interval=self._ping_interval, timeout=self._pong_timeout, now=loop.time()
            )
            self._tasks.append(loop.create_task(self._heartbeat_loop(link)))
        if welcome.expires_at is not None and self._tokens.can_refresh:
            self._tasks.append(loop.create_task(self._refresh_loop(link, welcome.expires_at)))

    def stop(self) -> None:
        """The connection was lost."""
        self._heartbeat = None
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._refresh_waiter is not None and not self._refresh_waiter.done():
            self._refresh_waiter.cancel()

    def received(self, now: float) -> None:
        """Something arrived on the current connection."""
        if self._heartbeat is not None:
            self._heartbeat.received(now)

    def answer(self, reply: m.Welcome | m.Error) -> bool:
        """Hand a ``welcome`` or id-less ``error`` to a waiting refresh; False if none waits."""
        if self._refresh_waiter is not None and not self._refresh_waiter.done():
            self._refresh_waiter.set_result(reply)
            return True
        return False

    async def _heartbeat_loop(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        while link is self._current_link() and link.is_open and self._heartbeat is not None:
            hb = self._heartbeat
            now = loop.time()
            if hb.expired(now):
                silent = now - hb.last_received
                log.warning("no traffic for %.2f s: dropping the connection", silent)
                link.abort(
                    int(CloseCode.HEARTBEAT_TIMEOUT),
                    f"heartbeat timeout: nothing received for {silent:.2f} s",
                )
                return
            if hb.ping_due(now):
                link.send(m.encode_ping(now))
                hb.ping_sent(now)
            await asyncio.sleep(max(0.0, hb.next_wakeup() - loop.time()))

    async def _refresh_loop(self, link: Link, expires_at: float) -> None:
        """Renew the token in band before ``exp``; on failure retry until the server's 4401."""
        loop = asyncio.get_running_loop()
        while link is self._current_link() and link.is_open:
            remaining = expires_at - time.time()
            lead = min(self._refresh_margin, max(remaining, 0.0) / 3)
            await asyncio.sleep(max(0.0, remaining - lead))
            try:
                token = await self._tokens.get()
            except Exception as exc:  # noqa: BLE001 - the application's provider: any failure
                log.warning("token provider failed during refresh: %r", exc)
                await asyncio.sleep(max(_REFRESH_RETRY, (expires_at - time.time()) / 2))
                continue
            if token is None or not (link is self._current_link() and link.is_open):
                return
            waiter: asyncio.Future[m.Welcome | m.Error] = loop.create_future()
            self._refresh_waiter = waiter
            link.send(m.encode_auth(token))
            try:
                # asyncio.timeout, not wait_for: a cancel landing with the answer must
                # not be lost (Python 3.11), or this loop outlives its connection.
                async with asyncio.timeout(max(1.0, self._pong_timeout)):
                    answer = await waiter
            except TimeoutError:
                continue
            finally:
                self._refresh_waiter = None
            if isinstance(answer, m.Welcome) and answer.expires_at is not None:
                self._stats["refreshes"] += 1
                self._on_refreshed(answer)
                expires_at = answer.expires_at
            elif isinstance(answer, m.Welcome):
                return  # the new token does not expire
            else:
                log.warning("in-band token refresh refused: %s %s", answer.code, answer.reason)
                await asyncio.sleep(max(_REFRESH_RETRY, (expires_at - time.time()) / 2))
