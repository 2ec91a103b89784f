"""``staywire.Client``: a connection that stays up and loses nothing.

The client owns one connection at a time and, around it, everything that must
outlive a connection: the outbox of unacknowledged publishes, each channel's
delivered position, and the reconnect budget. Each piece of logic lives in a
sans-I/O module (``protocol.backoff``, ``protocol.outbox``,
``protocol.positions``, ``client.heartbeat``); this module is the I/O glue:

* ``_run`` is the one task that connects, waits for the connection to end, and
  decides from the close code whether and when to connect again.
* ``_on_text`` handles every inbound message synchronously, in arrival order,
  so deliveries keep the server's order.
* Requests (``sub``, ``unsub``, ``pub``, ``rpc``) are matched to replies by
  ``id``; ids are unique for the life of the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from picows import WSError

from staywire.client import messages as m
from staywire.client.auth import AuthMode, TokenProvider, TokenSource, connect_target
from staywire.client.heartbeat import Heartbeat
from staywire.client.link import ABNORMAL, Link, open_link
from staywire.client.state import CloseInfo, ConnectionState, StateChange, StateWatch
from staywire.client.store import SqliteOutboxStore
from staywire.client.subscription import Message, Recovery, Subscription
from staywire.exceptions import (
    ClientError,
    ConnectionClosed,
    QueueFull,
    ReconnectFailed,
    RequestError,
    RequestTimeout,
    Unauthorized,
)
from staywire.protocol.backoff import Backoff, ReconnectPolicy, RetryBudget, jittered
from staywire.protocol.codes import CloseCode, ErrorCode, Reconnect, reconnect_policy
from staywire.protocol.outbox import Outbox, OutboxEntry
from staywire.protocol.positions import ChannelCursor, CursorState, Position, Verdict

__all__ = ["Client"]

log = logging.getLogger("staywire.client")

_CHANNEL = re.compile(r"^[A-Za-z0-9_\-:.@/=]{1,128}$")
_TRANSIENT = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL})
_CLIENT_CLOSED = CloseInfo(int(CloseCode.NORMAL), "client closed")
# How long close() waits for the server's answer to its close frame before dropping.
_CLOSE_TIMEOUT = 2.0
# A refused or failed in-band refresh is tried again after at least this long.
_REFRESH_RETRY = 0.5
# Backpressure waits re-check at least this often, in case a transport never signals.
_FLOW_POLL = 0.05


@dataclass(slots=True)
class _Channel:
    """One channel's cursor and the local subscriptions that share it."""

    cursor: ChannelCursor
    subs: list[Subscription] = field(default_factory=list)
    retries: int = 0  # transient sub errors in a row


@dataclass(slots=True)
class _Held:
    """A publish waiting for the write buffer to drain, not yet in the outbox."""

    channel: str
    data: bytes
    key: str
    future: asyncio.Future[int]


@dataclass(slots=True)
class _Request:
    kind: str  # "sub", "unsub", "resync", "pub", "rpc"
    channel: _Channel | None = None
    future: asyncio.Future[Any] | None = None


class Client:
    """A Staywire client. Use ``async with Client(url, ...) as client:``.

    Every option is keyword-only; ``None`` turns a feature or bound off.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        auth: AuthMode = AuthMode.FIRST_MESSAGE,
        cookie_name: str = "staywire_token",
        refresh_margin: float = 30.0,
        ping_interval: float | None = 30.0,
        pong_timeout: float = 10.0,
        connect_timeout: float | None = 10.0,
        backoff_base: float = 1.0,
        backoff_factor: float = 2.0,
        backoff_cap: float = 30.0,
        max_retries: int | None = 10,
        reconnect_policy: ReconnectPolicy | None = None,
        random: Callable[[], float] | None = None,
        max_queued_messages: int | None = 10_000,
        max_queued_bytes: int | None = 16 * 1024 * 1024,
        outbox_path: str | Path | None = None,
        high_water: int | None = 1024 * 1024,
        low_water: int | None = 256 * 1024,
        on_state_change: Callable[[StateChange], None] | None = None,
        client_id: str | None = None,
        resume_session: bool = True,
    ) -> None:
        if high_water is not None:
            low_water = high_water // 4 if low_water is None else low_water
            if not 0 <= low_water <= high_water:
                raise ValueError("need 0 <= low_water <= high_water")
        self.url = url
        self._tokens = TokenSource(token, token_provider)
        self._auth = auth
        self._cookie_name = cookie_name
        self._refresh_margin = refresh_margin
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._connect_timeout = connect_timeout
        self._random = random or _random.random
        self._policy: ReconnectPolicy = reconnect_policy or Backoff(
            base=backoff_base,
            factor=backoff_factor,
            cap=backoff_cap,
            max_retries=max_retries,
            random=self._random,
        )
        self._store = SqliteOutboxStore(outbox_path) if outbox_path is not None else None
        self._outbox = Outbox(
            max_messages=max_queued_messages, max_bytes=max_queued_bytes, store=self._store
        )
        self._high_water = high_water
        self._low_water = low_water
        self._client_id = client_id
        self._resume_session = resume_session
        self._watch = StateWatch(ConnectionState.CLOSED, on_state_change)
        self._key_prefix = secrets.token_hex(8)
        self._next_key = 0
        self._next_id = 0

        self.last_close: CloseInfo | None = None
        self.error: ConnectionClosed | None = None  # why the client is CLOSED, if not by close()
        self.session: str | None = None
        self.welcome: m.Welcome | None = None
        self.rtt: float | None = None  # seconds, from the last answered ping
        self.stats: dict[str, int] = {
            "connects": 0,
            "duplicates_dropped": 0,
            "gaps": 0,
            "missing": 0,
            "refreshes": 0,
            "drains": 0,
            "resent": 0,  # publishes sent on a new connection (queued or unacknowledged)
            "duplicate_acks": 0,  # ... of which the server had already published
        }

        self._started = False
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._link: Link | None = None  # the current connection, once welcomed
        self._connecting_link: Link | None = None  # a connection waiting for its welcome
        self._welcome_waiter: asyncio.Future[m.Welcome] | None = None
        self._refresh_waiter: asyncio.Future[m.Welcome | m.Error] | None = None
        self._heartbeat: Heartbeat | None = None
        self._link_tasks: list[asyncio.Task[None]] = []
        self._requests: dict[int, _Request] = {}
        self._channels: dict[str, _Channel] = {}
        self._pub_waiters: dict[str, asyncio.Future[int]] = {}
        self._flow: asyncio.Event | None = None
        self._held: deque[_Held] = deque()  # publishes held back by backpressure, in order
        self._throttled = False  # over the high-water mark, not yet back under the low one
        self._pump_timer: asyncio.TimerHandle | None = None
        self._drain_at: float | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._watch.state

    def state_changes(self) -> AsyncIterator[StateChange]:
        """Every state change from now on; ends after CLOSED."""
        return self._watch.changes()

    async def start(self) -> None:
        """Start connecting in the background (publishes queue until OPEN)."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._flow = asyncio.Event()
        self._watch.set(ConnectionState.CONNECTING)
        self._runner = loop.create_task(self._run(), name="staywire-client")

    async def connect(self) -> None:
        """Start, and return once the connection is OPEN (raise if the client gives up)."""
        await self.start()
        await self._wait_open()

    async def close(self) -> None:
        """Close normally (1000). Pending publishes fail with ``ConnectionClosed(1000)``
        (with ``outbox_path`` they stay in the file for the next process)."""
        if not self._started and self._store is not None:
            self._store.close()  # never started: only the outbox file is open
            self._store = None
        if not self._started or self._closing:
            if self._runner is not None:
                await asyncio.gather(self._runner, return_exceptions=True)
            return
        self._closing = True
        link = self._link or self._connecting_link
        if link is not None and link.is_open:
            link.close(_CLIENT_CLOSED.code, _CLIENT_CLOSED.reason)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(link.closed), _CLOSE_TIMEOUT)
            link.abort(_CLIENT_CLOSED.code, _CLIENT_CLOSED.reason)
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self.state is not ConnectionState.CLOSED:
            self._finish(None, _CLIENT_CLOSED)

    async def wait_closed(self) -> None:
        """Return when the client is CLOSED by ``close()``; raise the error that closed it
        otherwise (``ReconnectFailed``, ``Unauthorized``, ``ConnectionClosed``)."""
        if self._done is None:
            raise ClientError("client not started")
        await asyncio.shield(self._done)

    def __await__(self) -> Generator[Any, None, None]:
        return self.wait_closed().__await__()

    async def __aenter__(self) -> Self:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the connection loop ------------------------------------------------------------

    async def _run(self) -> None:
        budget = RetryBudget(self._policy)
        loop = asyncio.get_running_loop()
        try:
            while True:
                close, opened = await self._connect_once()
                if opened:
                    budget.reset()
                self.last_close = close
                if self._closing:
                    return
                policy = reconnect_policy(close.code)
                if policy is Reconnect.NEVER:
                    self._finish(_terminal_error(close), close)
                    return
                if policy is Reconnect.NEW_TOKEN and not self._tokens.can_refresh:
                    # A fixed token cannot be renewed: reconnecting would only meet 4401 again.
                    self._finish(ConnectionClosed(close.code, close.reason), close)
                    return
                first_after_expiry = policy is Reconnect.NEW_TOKEN and budget.attempts == 0
                delay = budget.next_delay()
                if delay is None:
                    self._finish(ReconnectFailed(close.code, close.reason, budget.attempts), close)
                    return
                if first_after_expiry:
                    delay = 0.0  # the token expired, nothing is wrong: come back at once
                if self._drain_at is not None:
                    delay = max(0.0, self._drain_at - loop.time())
                    self._drain_at = None
                self._watch.set(
                    ConnectionState.RECONNECTING, close=close, attempt=budget.attempts, delay=delay
                )
                log.info(
                    "reconnecting in %.3f s (attempt %d) after close %d %s",
                    delay,
                    budget.attempts,
                    close.code,
                    close.reason,
                )
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the application hanging
            log.exception("client connection loop failed")
            info = CloseInfo(ABNORMAL, f"client error: {exc!r}")
            self._finish(ConnectionClosed(info.code, info.reason), info)

    async def _connect_once(self) -> tuple[CloseInfo, bool]:
        """One connection attempt and, if it opens, its whole life. Returns how it ended
        and whether it was welcomed."""
        loop = asyncio.get_running_loop()
        try:
            token = await self._tokens.get()
        except Exception as exc:  # noqa: BLE001 - the application's provider: any failure
            return CloseInfo(ABNORMAL, f"token provider failed: {exc!r}"), False
        url, headers = connect_target(
            self.url,
            token=token,
            mode=self._auth,
            cookie_name=self._cookie_name,
            session=self.session if self._resume_session else None,
            client_id=self._client_id,
        )
        waiter: asyncio.Future[m.Welcome] = loop.create_future()
        self._welcome_waiter = waiter
        link: Link | None = None
        limits = None
        if self._high_water is not None and self._low_water is not None:
            limits = (self._high_water, self._low_water)
        try:
            async with asyncio.timeout(self._connect_timeout):
                link = await open_link(
                    url,
                    on_text=self._on_text,
                    on_writable=self._pulse,
                    headers=headers,
                    timeout=self._connect_timeout,
                    write_buffer_limits=limits,
                )
                self._connecting_link = link
                if token is not None and self._auth is AuthMode.FIRST_MESSAGE:
                    link.send(m.encode_auth(token))
                pending: set[asyncio.Future[Any]] = {waiter, link.closed}
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            if link is not None:
                link.abort(ABNORMAL, "no welcome in time")
            return CloseInfo(ABNORMAL, f"connect timeout ({self._connect_timeout:g} s)"), False
        except (OSError, WSError) as exc:
            return CloseInfo(ABNORMAL, f"connect failed: {_describe(exc)}"), False
        except asyncio.CancelledError:
            if link is not None:
                link.abort(_CLIENT_CLOSED.code, _CLIENT_CLOSED.reason)
            raise
        finally:
            self._welcome_waiter = None
            self._connecting_link = None
            if not waiter.done():
                waiter.cancel()
        if link.closed.done() or waiter.cancelled():
            link.abort(ABNORMAL, "closed before welcome")
            return await link.closed, False
        self._opened(link, waiter.result())
        try:
            close = await asyncio.shield(link.closed)
        except asyncio.CancelledError:
            link.abort(_CLIENT_CLOSED.code, _CLIENT_CLOSED.reason)
            self._lost(link, _CLIENT_CLOSED)
            raise
        self._lost(link, close)
        return close, True

    def _opened(self, link: Link, welcome: m.Welcome) -> None:
        """Welcomed: resubscribe, replay the outbox, start heartbeats and token refresh."""
        loop = asyncio.get_running_loop()
        self._link = link
        self.welcome = welcome
        self.session = welcome.session
        self.stats["connects"] += 1
        if self._ping_interval is not None:
            self._heartbeat = Heartbeat(
                interval=self._ping_interval, timeout=self._pong_timeout, now=loop.time()
            )
            self._link_tasks.append(loop.create_task(self._heartbeat_loop(link)))
        if welcome.expires_at is not None and self._tokens.can_refresh:
            self._link_tasks.append(loop.create_task(self._refresh_loop(link, welcome.expires_at)))
        for channel in self._channels.values():
            self._send_sub(link, channel)
        for entry in self._outbox.unsent():
            self.stats["resent"] += 1
            self._send_pub(link, entry)
        self._watch.set(ConnectionState.OPEN)
        self._pulse()

    def _lost(self, link: Link, close: CloseInfo) -> None:
        """The connection ended: in-flight work goes back to waiting for the next one."""
        if self._link is not link:
            return
        self._link = None
        self._heartbeat = None
        for task in self._link_tasks:
            task.cancel()
        self._link_tasks.clear()
        if self._refresh_waiter is not None and not self._refresh_waiter.done():
            self._refresh_waiter.cancel()
        self._outbox.connection_lost()
        for channel in self._channels.values():
            channel.cursor.connection_lost()
        requests, self._requests = self._requests, {}
        for request in requests.values():
            if request.future is not None and not request.future.done():
                request.future.set_exception(ConnectionClosed(close.code, close.reason))
        self.last_close = close
        self._pulse()

    def _finish(self, error: ConnectionClosed | None, close: CloseInfo) -> None:
        """Go CLOSED for good: fail or end everything that waits on the client."""
        if self.state is ConnectionState.CLOSED and self._done is not None and self._done.done():
            return
        self.error = error
        self.last_close = close
        failure = error or ConnectionClosed(close.code, close.reason)
        for key, fut in list(self._pub_waiters.items()):
            if not fut.done():
                fut.set_exception(failure)
                fut.exception()
        self._pub_waiters.clear()
        while self._held:
            held = self._held.popleft()
            if not held.future.done():
                held.future.set_exception(failure)
                held.future.exception()
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None
        for request in self._requests.values():
            if request.future is not None and not request.future.done():
                request.future.set_exception(failure)
                request.future.exception()
        self._requests.clear()
        for channel in self._channels.values():
            for sub in channel.subs:
                if error is not None:
                    sub._fail(error)
                else:
                    sub._end()
        self._channels.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._watch.set(ConnectionState.CLOSED, close=close)
        if self._done is not None and not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)
                self._done.exception()  # retrieved: awaiting the client is optional
        self._pulse()

    # -- inbound ---------------------------------------------------------------------

    def _on_text(self, link: Link, payload: bytes) -> None:
        if self._heartbeat is not None and link is self._link:
            self._heartbeat.received(asyncio.get_running_loop().time())
        msg = m.decode(payload)
        if msg is None:
            log.debug("ignored a message this client does not understand: %.200r", payload)
            return
        try:
            self._dispatch(link, msg)
        except Exception:
            log.exception("failed to handle %s", type(msg).__name__)

    def _dispatch(self, link: Link, msg: m.ServerMessage) -> None:
        if isinstance(msg, m.Msg):
            self._on_msg(msg)
        elif isinstance(msg, m.Ack):
            self._on_ack(link, msg)
        elif isinstance(msg, m.Ping):
            link.send(m.encode_pong(msg.t))
        elif isinstance(msg, m.Pong):
            if isinstance(msg.t, int | float):
                self.rtt = max(0.0, asyncio.get_running_loop().time() - msg.t)
        elif isinstance(msg, m.Result):
            request = self._requests.pop(msg.id, None)
            if request is not None and request.future is not None and not request.future.done():
                request.future.set_result(msg.data)
        elif isinstance(msg, m.Error):
            self._on_error(link, msg)
        elif isinstance(msg, m.Welcome):
            if self._welcome_waiter is not None and not self._welcome_waiter.done():
                self._welcome_waiter.set_result(msg)
            elif self._refresh_waiter is not None and not self._refresh_waiter.done():
                self._refresh_waiter.set_result(msg)
        elif isinstance(msg, m.Drain):
            self._on_drain(link, msg.reconnect_in_ms)

    def _on_msg(self, msg: m.Msg) -> None:
        channel = self._channels.get(msg.channel)
        if channel is None:
            return
        previous = channel.cursor.position
        verdict = channel.cursor.on_message(msg.epoch, msg.offset)
        if not verdict.deliver:
            if verdict is Verdict.DUPLICATE:
                self.stats["duplicates_dropped"] += 1
            elif verdict is Verdict.RESYNC:
                self.stats["gaps"] += 1
                log.warning("offsets skipped before %d on %s: resubscribing from %d",
                            msg.offset, msg.channel, previous.offset if previous else 0)
                if self._link is not None:
                    self._send_resync(self._link, channel, channel.cursor.position)
            return
        if verdict is Verdict.NEW_EPOCH:
            # The stream was recreated under a live subscription: tell, then deliver.
            self._tell(
                channel, Recovery(msg.channel, False, True, previous, channel.cursor.position)
            )
        elif verdict is Verdict.GAP:
            self.stats["gaps"] += 1
            log.warning("gap before offset %d on %s", msg.offset, msg.channel)
        item = Message(msg.channel, msg.epoch, msg.offset, msg.data)
        for sub in channel.subs:
            sub._push(item)

    def _on_ack(self, link: Link, ack: m.Ack) -> None:
        entry = self._outbox.ack(ack.id)
        if entry is not None:
            self._requests.pop(ack.id, None)
            if ack.duplicate:
                self.stats["duplicate_acks"] += 1
            fut = self._pub_waiters.pop(entry.key, None)
            if fut is not None and not fut.done():
                fut.set_result(ack.offset if ack.offset is not None else 0)
            self._pulse()
            return
        request = self._requests.pop(ack.id, None)
        if request is None or request.channel is None:
            return
        channel = request.channel
        if self._channels.get(channel.cursor.channel) is not channel:
            return  # the application left this channel meanwhile
        if request.kind == "resync":
            channel.cursor.on_unsubscribed()
            return
        if request.kind != "sub" or ack.epoch is None or ack.offset is None:
            return
        outcome = channel.cursor.on_subscribed(ack.epoch, ack.offset, bool(ack.recovered))
        if outcome.unrecovered:
            self._tell(
                channel,
                Recovery(
                    channel.cursor.channel,
                    False,
                    outcome.epoch_changed,
                    outcome.previous,
                    Position(ack.epoch, ack.offset),
                ),
            )
        if outcome.missing:
            self.stats["missing"] += outcome.missing
            log.warning(
                "server acked %s as recovered but %d offsets never arrived",
                channel.cursor.channel,
                outcome.missing,
            )
        if outcome.resync_from is not None:
            self._send_resync(link, channel, outcome.resync_from)
        if outcome.live:
            channel.retries = 0
            for sub in channel.subs:
                sub._subscribed()

    def _on_error(self, link: Link, err: m.Error) -> None:
        if err.id is None:
            if self._refresh_waiter is not None and not self._refresh_waiter.done():
                self._refresh_waiter.set_result(err)
            else:
                log.warning("server error: %s %s", err.code, err.reason)
            return
        entry = self._outbox.reject(err.id)
        if entry is not None:
            self._requests.pop(err.id, None)
            fut = self._pub_waiters.pop(entry.key, None)
            if fut is not None and not fut.done():
                fut.set_exception(RequestError(err.code, err.reason))
            else:
                log.warning("publish %s to %s rejected: %s", entry.key, entry.channel, err.code)
            self._pulse()
            return
        request = self._requests.pop(err.id, None)
        if request is None:
            return
        if request.future is not None:
            if not request.future.done():
                request.future.set_exception(RequestError(err.code, err.reason))
            return
        channel = request.channel
        if channel is None or request.kind != "sub":
            return
        if self._channels.get(channel.cursor.channel) is not channel:
            return
        if err.code == ErrorCode.ALREADY_SUBSCRIBED:
            since = channel.cursor.begin_resync()
            self._send_resync(link, channel, since)
        elif err.code in _TRANSIENT and channel.retries < 5:
            channel.retries += 1
            channel.cursor.connection_lost()
            delay = jittered(0.5 * channel.retries, self._random)
            asyncio.get_running_loop().call_later(delay, self._retry_sub, link, channel)
        else:
            del self._channels[channel.cursor.channel]
            for sub in channel.subs:
                sub._fail(RequestError(err.code, err.reason))

    def _retry_sub(self, link: Link, channel: _Channel) -> None:
        if (
            link is self._link
            and self._channels.get(channel.cursor.channel) is channel
            and channel.cursor.state is CursorState.IDLE
        ):
            self._send_sub(link, channel)

    def _on_drain(self, link: Link, reconnect_in_ms: float) -> None:
        """The server is going away: leave at about ``reconnect_in_ms`` (jittered)."""
        loop = asyncio.get_running_loop()
        delay = jittered(max(0.0, reconnect_in_ms) / 1000.0, self._random)
        self._drain_at = loop.time() + delay
        self.stats["drains"] += 1
        loop.call_later(delay, self._drain_due, link)

    def _drain_due(self, link: Link) -> None:
        if link is self._link and link.is_open:
            link.close(int(CloseCode.GOING_AWAY), "reconnecting: server draining")

    def _tell(self, channel: _Channel, event: Recovery) -> None:
        for sub in channel.subs:
            sub._push(event)

    # -- outbound ---------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send_sub(self, link: Link, channel: _Channel) -> None:
        since = channel.cursor.subscribe()
        rid = self._new_id()
        self._requests[rid] = _Request("sub", channel)
        link.send(m.encode_sub(rid, channel.cursor.channel, None if since is None else _pos(since)))

    def _send_resync(self, link: Link, channel: _Channel, since: Position | None) -> None:
        """``unsub`` then ``sub`` with ``since``; the cursor drops msgs until the unsub ack."""
        name = channel.cursor.channel
        rid = self._new_id()
        self._requests[rid] = _Request("resync", channel)
        link.send(m.encode_unsub(rid, name))
        rid = self._new_id()
        self._requests[rid] = _Request("sub", channel)
        link.send(m.encode_sub(rid, name, None if since is None else _pos(since)))

    def _send_pub(self, link: Link, entry: OutboxEntry) -> None:
        rid = self._new_id()
        self._outbox.assign(entry, rid)
        link.send(m.encode_pub(rid, entry.channel, entry.data, entry.key))

    # -- heartbeats and token refresh ------------------------------------------------------

    async def _heartbeat_loop(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        while link is self._link and link.is_open and self._heartbeat is not None:
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
        while link is self._link and link.is_open:
            remaining = expires_at - time.time()
            lead = min(self._refresh_margin, max(remaining, 0.0) / 3)
            await asyncio.sleep(max(0.0, remaining - lead))
            try:
                token = await self._tokens.get()
            except Exception as exc:  # noqa: BLE001 - the application's provider: any failure
                log.warning("token provider failed during refresh: %r", exc)
                await asyncio.sleep(max(_REFRESH_RETRY, (expires_at - time.time()) / 2))
                continue
            if token is None or not (link is self._link and link.is_open):
                return
            waiter: asyncio.Future[m.Welcome | m.Error] = loop.create_future()
            self._refresh_waiter = waiter
            link.send(m.encode_auth(token))
            try:
                answer = await asyncio.wait_for(waiter, max(1.0, self._pong_timeout))
            except TimeoutError:
                continue
            finally:
                self._refresh_waiter = None
            if isinstance(answer, m.Welcome) and answer.expires_at is not None:
                self.stats["refreshes"] += 1
                self.welcome = answer
                expires_at = answer.expires_at
            elif isinstance(answer, m.Welcome):
                return  # the new token does not expire
            else:
                log.warning("in-band token refresh refused: %s %s", answer.code, answer.reason)
                await asyncio.sleep(max(_REFRESH_RETRY, (expires_at - time.time()) / 2))

    # -- flow control ---------------------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        """Bytes not yet written to the socket: the transport's write buffer plus the
        publishes queued in the outbox while not OPEN."""
        link = self._link
        in_transport = link.buffered_amount if link is not None else 0
        return in_transport + self._outbox.unsent_bytes

    def _pulse(self) -> None:
        """Something publishers or drain() wait on changed: release held publishes in order."""
        if self._flow is not None:
            self._flow.set()
        if not self._held:
            return
        open_ = self.state is ConnectionState.OPEN and self._link is not None
        if open_ and self._throttled and self.buffered_amount <= (self._low_water or 0):
            self._throttled = False
        while self._held and (not open_ or not self._throttled):
            held = self._held.popleft()
            if held.future.done():
                continue  # the caller stopped waiting before it was queued: dropped
            try:
                self._enqueue(held)
            except QueueFull as exc:
                held.future.set_exception(exc)
                continue
            if open_ and self._over_high_water():
                self._throttled = True
        if self._held and self._pump_timer is None:
            # Transports signal resume_writing; this poll covers one that does not.
            self._pump_timer = asyncio.get_running_loop().call_later(_FLOW_POLL, self._pump_tick)

    def _pump_tick(self) -> None:
        self._pump_timer = None
        self._pulse()

    def _over_high_water(self) -> bool:
        return self._high_water is not None and self.buffered_amount > self._high_water

    def _enqueue(self, held: _Held) -> None:
        """Into the outbox (``QueueFull`` over its bound) and, when OPEN, onto the wire."""
        entry = self._outbox.add(held.channel, held.data, held.key)
        self._pub_waiters[held.key] = held.future
        link = self._link
        if link is not None and link.is_open:
            self._send_pub(link, entry)

    async def drain(self) -> None:
        """Wait until no publish is held back and ``buffered_amount`` is at or below the
        low-water mark (0 when off); what is queued while not OPEN is written on open."""
        self._check_usable()
        assert self._flow is not None
        low = self._low_water or 0
        while self._held or self.buffered_amount > low:
            self._check_usable()
            self._flow.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flow.wait(), _FLOW_POLL)

    # -- the application's API ----------------------------------------------------------

    def _check_usable(self) -> None:
        if not self._started:
            raise ClientError("client not started: use `async with Client(...)` or start()")
        if self.state is ConnectionState.CLOSED:
            close = self.last_close or _CLIENT_CLOSED
            raise self.error or ConnectionClosed(close.code, close.reason)

    async def _wait_open(self) -> None:
        self._check_usable()
        await self._watch.wait_for(ConnectionState.OPEN, ConnectionState.CLOSED)
        self._check_usable()

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        key: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """Publish ``data`` (any JSON value) and return its offset once acknowledged.

        Works in every state but CLOSED: while not OPEN the publish waits in the
        outbox (``QueueFull`` over its bound). Unacknowledged publishes are sent
        again after a reconnect with the same idempotency ``key`` (generated when
        not given), so each lands exactly once. ``timeout`` only stops waiting
        (``RequestTimeout``): the publish stays in the outbox and still lands.
        """
        self._check_usable()
        _check_channel(channel)
        payload = m.encode_data(data)
        if key is None:
            self._next_key += 1
            key = f"{self._key_prefix}-{self._next_key}"
        elif not 1 <= len(key) <= 128:
            raise ValueError("key must be 1 to 128 characters")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        held = _Held(channel, payload, key, fut)
        if self.state is ConnectionState.OPEN and (self._held or self._over_high_water()):
            # Over the high-water mark: wait, in call order, until below the low-water mark.
            self._throttled = True
            self._held.append(held)
            self._pulse()
        else:
            self._enqueue(held)  # QueueFull propagates: nothing was queued
        try:
            if timeout is None:
                return await asyncio.shield(fut)
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise RequestTimeout(f"publish {key} not acknowledged within {timeout:g} s") from None
        finally:
            if not fut.done():
                fut.cancel()  # nobody waits any more; an entry in the outbox still lands
            if self._pub_waiters.get(key) is fut:
                del self._pub_waiters[key]

    def subscribe(self, channel: str) -> Subscription:
        """``async with client.subscribe("room:1") as sub: async for item in sub: ...``"""
        _check_channel(channel)
        return Subscription(self, channel)

    async def rpc(self, method: str, data: Any = None, *, timeout: float | None = 10.0) -> Any:
        """Call an application method on the server; waits for OPEN within ``timeout``.

        Not replayed after a reconnect (an RPC need not be idempotent): a connection
        lost before the result raises ``ConnectionClosed``."""
        payload = m.encode_data(data)
        try:
            async with asyncio.timeout(timeout):
                await self._wait_open()
                link = self._link
                if link is None:
                    raise ConnectionClosed(ABNORMAL, "connection lost")
                rid = self._new_id()
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self._requests[rid] = _Request("rpc", future=fut)
                try:
                    link.send(m.encode_rpc(rid, method, payload))
                    return await fut
                finally:
                    self._requests.pop(rid, None)
        except TimeoutError:
            raise RequestTimeout(f"rpc {method!r}: no result within {timeout:g} s") from None

    @property
    def outbox_size(self) -> int:
        """Publishes not yet acknowledged (including ones restored from ``outbox_path``)."""
        return len(self._outbox)

    # -- subscription host --------------------------------------------------------------

    def _attach(self, sub: Subscription) -> None:
        if self.state is ConnectionState.CLOSED:
            try:
                self._check_usable()
            except ClientError as exc:
                sub._fail(exc)
            return
        channel = self._channels.get(sub.channel)
        if channel is None:
            channel = self._channels[sub.channel] = _Channel(ChannelCursor(sub.channel))
        channel.subs.append(sub)
        if channel.cursor.state is CursorState.LIVE:
            sub._subscribed()
        elif channel.cursor.state is CursorState.IDLE and self._link is not None:
            self._send_sub(self._link, channel)

    def _detach(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.channel)
        if channel is None or sub not in channel.subs:
            return
        channel.subs.remove(sub)
        if channel.subs:
            return
        del self._channels[sub.channel]
        link = self._link
        if link is not None and channel.cursor.state is not CursorState.IDLE:
            rid = self._new_id()
            self._requests[rid] = _Request("unsub", channel)
            link.send(m.encode_unsub(rid, sub.channel))

    def _position(self, channel: str) -> Position | None:
        state = self._channels.get(channel)
        return None if state is None else state.cursor.position


def _pos(position: Position) -> tuple[str, int]:
    return position.epoch, position.offset


def _check_channel(channel: str) -> None:
    if not _CHANNEL.match(channel):
        raise ValueError(f"invalid channel name: {channel!r}")


def _terminal_error(close: CloseInfo) -> ConnectionClosed:
    if close.code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN):
        return Unauthorized(close.code, close.reason)
    return ConnectionClosed(close.code, close.reason)


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status", None)
    if status is not None:
        return f"HTTP {int(status)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
