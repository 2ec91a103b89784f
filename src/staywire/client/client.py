"""``staywire.Client``: a connection that stays up and loses nothing.

The client owns one connection at a time and, around it, everything that must
outlive a connection: the outbox of unacknowledged publishes, each channel's
delivered position, and the reconnect budget. Each piece of logic lives in a
sans-I/O module (``protocol.backoff``, ``protocol.outbox``,
``protocol.positions``, ``client.heartbeat``, ``client.reconnect``), and each
part of the I/O around them in a collaborator of its own: ``client.dial`` (one
connection attempt), ``client.inbound`` (every message from the server),
``client.publisher``, ``client.channels``, ``client.requests`` and
``client.keepalive``. This module holds them together:

* ``_run`` is the one task that connects, waits for the connection to end, and
  decides from the close code whether and when to connect again.
* ``_opened`` and ``_lost`` tell every collaborator that a connection was
  welcomed or has ended; ``_finish`` that the client is CLOSED for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import ssl
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from staywire.client import messages as m
from staywire.client.auth import AuthMode, HeaderSource, HeadersProvider, TokenProvider, TokenSource
from staywire.client.channels import Channels, check_channel
from staywire.client.dial import Dialer
from staywire.client.inbound import Router
from staywire.client.keepalive import Keepalive
from staywire.client.link import ABNORMAL, Link
from staywire.client.publisher import Publisher
from staywire.client.reconnect import ReconnectSchedule
from staywire.client.requests import Requests
from staywire.client.state import CLIENT_CLOSED, CloseInfo, ConnectionState, StateChange, StateWatch
from staywire.client.subscription import Subscription
from staywire.client.transfers import Source, send_transfer
from staywire.exceptions import ClientError, ConnectionClosed, RequestTimeout
from staywire.protocol.backoff import Backoff, ReconnectPolicy
from staywire.protocol.positions import Position
from staywire.protocol.ratelimit import Pacer
from staywire.protocol.stream import ChannelPosition

__all__ = ["Client"]

log = logging.getLogger("staywire.client")

# How long close() waits for the server's answer to its close frame before dropping.
_CLOSE_TIMEOUT = 2.0


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
        headers: Mapping[str, str] | HeadersProvider | None = None,
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
        ssl_context: ssl.SSLContext | None = None,
        pace_publishes: bool = True,
    ) -> None:
        if high_water is not None:
            low_water = high_water // 4 if low_water is None else low_water
            if not 0 <= low_water <= high_water:
                raise ValueError("need 0 <= low_water <= high_water")
        self.url = url
        self._tokens = TokenSource(token, token_provider)
        self._headers = HeaderSource(headers)
        self._random = random or _random.random
        policy: ReconnectPolicy = reconnect_policy or Backoff(
            base=backoff_base,
            factor=backoff_factor,
            cap=backoff_cap,
            max_retries=max_retries,
            random=self._random,
        )
        # After 4401 a reconnect can succeed with a token provider, and with no token but
        # headers of the application's (its session cookie or bearer): a connect proxy then
        # decides again (docs/proxy.md). Only a fixed token cannot be renewed.
        renewable = self._tokens.can_refresh or (token is None and self._headers.given)
        self._schedule = ReconnectSchedule(policy, can_refresh=renewable, random=self._random)
        self._resume_session = resume_session
        self._watch = StateWatch(ConnectionState.CLOSED, on_state_change)

        self.last_close: CloseInfo | None = None
        self.error: ConnectionClosed | None = None  # why the client is CLOSED, if not by close()
        self.session: str | None = None
        self.welcome: m.Welcome | None = None
        # The channels the server subscribed this client to (the connect proxy's answer):
        # each a Subscription, recovered after every reconnect like the client's own.
        self.server_subscriptions: dict[str, Subscription] = {}
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
        # What outlives a connection, each with its own state; all share the request ids.
        self._requests = Requests()
        self._publisher = Publisher(
            max_messages=max_queued_messages,
            max_bytes=max_queued_bytes,
            outbox_path=outbox_path,
            high_water=high_water,
            low_water=low_water,
            requests=self._requests,
            stats=self.stats,
            watch=self._watch,
            current_link=self._current_link,
            random=self._random,
        )
        self._pace = pace_publishes
        self._channels = Channels(
            requests=self._requests,
            stats=self.stats,
            random=self._random,
            current_link=self._current_link,
        )
        self._keepalive = Keepalive(
            ping_interval=ping_interval,
            pong_timeout=pong_timeout,
            refresh_margin=refresh_margin,
            tokens=self._tokens,
            stats=self.stats,
            current_link=self._current_link,
            on_refreshed=self._refreshed,
        )
        self._dialer = Dialer(
            auth=auth,
            cookie_name=cookie_name,
            client_id=client_id,
            connect_timeout=connect_timeout,
            write_buffer_limits=self._publisher.write_buffer_limits,
            ssl_context=ssl_context,
        )
        self._router = Router(
            dialer=self._dialer,
            keepalive=self._keepalive,
            publisher=self._publisher,
            channels=self._channels,
            requests=self._requests,
            schedule=self._schedule,
            stats=self.stats,
            current_link=self._current_link,
            on_rtt=self._measured,
            on_server_sub=self._server_changed,
        )

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
        self._publisher.start()
        self._watch.set(ConnectionState.CONNECTING)
        self._runner = loop.create_task(self._run(), name="staywire-client")

    async def connect(self) -> None:
        """Start, and return once the connection is OPEN (raise if the client gives up)."""
        await self.start()
        await self._wait_open()

    async def close(self) -> None:
        """Close normally (1000). Pending publishes fail with ``ConnectionClosed(1000)``
        (with ``outbox_path`` they stay in the file for the next process)."""
        if not self._started:
            self._publisher.close_store()  # never started: only the outbox file is open
        if not self._started or self._closing:
            if self._runner is not None:
                await asyncio.gather(self._runner, return_exceptions=True)
            return
        self._closing = True
        link = self._link or self._dialer.link
        if link is not None and link.is_open:
            link.close(CLIENT_CLOSED.code, CLIENT_CLOSED.reason)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await asyncio.shield(link.closed)
            link.abort(CLIENT_CLOSED.code, CLIENT_CLOSED.reason)
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self.state is not ConnectionState.CLOSED:
            self._finish(None, CLIENT_CLOSED)

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
        schedule = self._schedule
        loop = asyncio.get_running_loop()
        try:
            while True:
                close, opened = await self._connect_once()
                if opened:
                    schedule.opened()
                self.last_close = close
                if self._closing:
                    return
                delay = schedule.after(close, loop.time())
                if isinstance(delay, ConnectionClosed):
                    self._finish(delay, close)
                    return
                attempt = schedule.attempts
                self._watch.set(
                    ConnectionState.RECONNECTING, close=close, attempt=attempt, delay=delay
                )
                log.info(
                    "reconnecting in %.3f s (attempt %d) after close %d %s",
                    delay,
                    attempt,
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
        try:
            token = await self._tokens.get()
        except Exception as exc:  # noqa: BLE001 - the application's provider: any failure
            return CloseInfo(ABNORMAL, f"token provider failed: {exc!r}"), False
        try:
            headers = await self._headers.get()
        except Exception as exc:  # noqa: BLE001 - the application's provider: any failure
            return CloseInfo(ABNORMAL, f"headers provider failed: {exc!r}"), False
        session = self.session if self._resume_session else None
        dialed = await self._dialer.dial(
            self.url,
            token=token,
            session=session,
            on_text=self._router.on_text,
            on_binary=self._router.on_binary,
            on_writable=self._publisher.pulse,
            extra_headers=headers,
        )
        if isinstance(dialed, CloseInfo):
            return dialed, False
        link, welcome = dialed
        self._opened(link, welcome)
        try:
            close = await asyncio.shield(link.closed)
        except asyncio.CancelledError:
            link.abort(CLIENT_CLOSED.code, CLIENT_CLOSED.reason)
            self._lost(link, CLIENT_CLOSED)
            raise
        self._lost(link, close)
        return close, True

    def _current_link(self) -> Link | None:
        return self._link

    def _opened(self, link: Link, welcome: m.Welcome) -> None:
        """Welcomed: resubscribe, replay the outbox, start heartbeats and token refresh."""
        self._link = link
        self.welcome = welcome
        if welcome.resume_failed is not None and self.session is not None:
            # Nothing is lost: the subscriptions below resubscribe with this client's own
            # positions. Said anyway, since a broker outage is worth knowing about.
            log.log(logging.WARNING if welcome.resume_failed == "unavailable" else logging.INFO,
                    "session %s not resumed (%s): a new session starts", self.session,
                    welcome.resume_failed)
        self.session = welcome.session
        self.stats["connects"] += 1
        limit = welcome.rate_limit
        if self._pace and limit is not None:
            # Every frame from here on pays into it; publishes wait for their turn.
            link.pacer = Pacer.announced(limit.messages, limit.burst, limit.bytes,
                                         limit.bytes_burst, asyncio.get_running_loop().time())
        self._keepalive.start(link, welcome)
        named = {p.channel for p in welcome.server_subs}
        for name in [n for n in self.server_subscriptions if n not in named]:
            del self.server_subscriptions[name]  # ended below: no longer subscribed by the server
        for sub in self._channels.server_subscribed(link, welcome.server_subs,
                                                    self._server_subscription):
            self.server_subscriptions[sub.channel] = sub
        info = m.binary_info(welcome)
        if info is not None:
            self._channels.transfer_timeout(info.transfer_timeout)
        self._channels.resubscribe(link)
        self._publisher.replay(link)
        self._watch.set(ConnectionState.OPEN)
        self._publisher.pulse()

    def _server_changed(self, link: Link, msg: m.Subscribed | m.Unsubscribed) -> None:
        """The server API joined (``subscribed``) or left (``unsubscribed``) a channel for
        this connection: ``server_subscriptions`` follows."""
        if isinstance(msg, m.Subscribed):
            made = self._channels.server_joined(
                link,
                ChannelPosition(channel=msg.channel, epoch=msg.epoch, offset=msg.offset),
                self._server_subscription,
            )
            if made is not None:
                self.server_subscriptions[msg.channel] = made
            return
        self._channels.server_left(msg.channel)
        self.server_subscriptions.pop(msg.channel, None)

    def _lost(self, link: Link, close: CloseInfo) -> None:
        """The connection ended: in-flight work goes back to waiting for the next one."""
        if self._link is not link:
            return
        self._link = None
        self._keepalive.stop()
        self._publisher.connection_lost()
        self._channels.connection_lost()
        self._requests.connection_lost(close)
        self.last_close = close
        self._publisher.pulse()

    def _finish(self, error: ConnectionClosed | None, close: CloseInfo) -> None:
        """Go CLOSED for good: fail or end everything that waits on the client."""
        if self.state is ConnectionState.CLOSED and self._done is not None and self._done.done():
            return
        self.error = error
        self.last_close = close
        failure = error or ConnectionClosed(close.code, close.reason)
        self._publisher.fail(failure)
        self._requests.fail(failure)
        self._channels.finish(error)
        self._publisher.close_store()
        self._watch.set(ConnectionState.CLOSED, close=close)
        if self._done is not None and not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)
                self._done.exception()  # retrieved: awaiting the client is optional
        self._publisher.pulse()

    def _refreshed(self, welcome: m.Welcome) -> None:
        """The token was renewed in band: the server's new welcome says until when."""
        self.welcome = welcome

    def _measured(self, rtt: float) -> None:
        self.rtt = rtt

    # -- the application's API ----------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        """Bytes not yet written to the socket: the transport's write buffer plus the
        publishes queued in the outbox while not OPEN."""
        return self._publisher.buffered_amount

    async def drain(self) -> None:
        """Wait until no publish is held back and ``buffered_amount`` is at or below the
        low-water mark (0 when off); what is queued while not OPEN is written on open."""
        await self._publisher.drain(self._check_usable)

    def _check_usable(self) -> None:
        if not self._started:
            raise ClientError("client not started: use `async with Client(...)` or start()")
        if self.state is ConnectionState.CLOSED:
            close = self.last_close or CLIENT_CLOSED
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
        """Publish ``data`` and return its offset once acknowledged: any JSON value, or
        bytes (``bytes``, ``bytearray``, ``memoryview``) as binary data (protocol v2; a
        server that selected v1 refuses it with ``binary_unsupported``).

        Works in every state but CLOSED: while not OPEN the publish waits in the
        outbox (``QueueFull`` over its bound). Unacknowledged publishes are sent
        again after a reconnect with the same idempotency ``key`` (generated when
        not given), so each lands exactly once. ``timeout`` only stops waiting
        (``RequestTimeout``): the publish stays in the outbox and still lands.
        """
        self._check_usable()
        check_channel(channel)
        return await self._publisher.publish(channel, data, key=key, timeout=timeout)

    async def send_transfer(self, channel: str, source: Source, *, meta: Any = None,
                            on_progress: Callable[[int, int | None], None] | None = None
                            ) -> str:
        """Publish ``source`` (bytes, a binary file object or an async iterator of bytes) of
        any size up to the server's ``max_transfer_size`` as one transfer; returns its id
        once the last chunk is acknowledged. Subscribers get one ``Transfer`` item.

        Waits for OPEN; chunks follow the outbox's rules (paced, replayed after a
        reconnect, each landing once). ``on_progress(acked_bytes, total_or_None)``.
        ``RequestError`` when the server refuses a chunk (``transfer_too_large``, ...),
        ``ClientError`` when the server has no binary data (protocol v1)."""
        check_channel(channel)
        await self._wait_open()
        info = m.binary_info(self.welcome) if self.welcome is not None else None
        if info is None:
            raise ClientError("the server does not take binary data (protocol v1)")
        return await send_transfer(self._publisher, channel, source, info=info, meta=meta,
                                   on_progress=on_progress)

    def subscribe(self, channel: str) -> Subscription:
        """``async with client.subscribe("room:1") as sub: async for item in sub: ...``"""
        check_channel(channel)
        return Subscription(self, channel)

    async def rpc(self, method: str, data: Any = None, *, timeout: float | None = 10.0) -> Any:
        """Call an application method on the server; waits for OPEN within ``timeout``.

        Not replayed after a reconnect (an RPC need not be idempotent): a connection
        lost before the result raises ``ConnectionClosed``. ``data`` may be bytes (a
        binary ``rpc``, protocol v2); a method that answers bytes returns ``bytes``."""
        binary = isinstance(data, bytes | bytearray | memoryview)
        payload = bytes(data) if binary else m.encode_data(data)
        try:
            async with asyncio.timeout(timeout):
                await self._wait_open()
                link = self._link
                if link is None:
                    raise ConnectionClosed(ABNORMAL, "connection lost")
                return await self._requests.call(link, method, payload, binary=binary)
        except TimeoutError:
            raise RequestTimeout(f"rpc {method!r}: no result within {timeout:g} s") from None

    async def _presence(self, channel: str, stats: bool, timeout: float = 10.0) -> Any:
        """``Subscription.presence()`` and ``presence_stats()``: one request, one result."""
        try:
            async with asyncio.timeout(timeout):
                await self._wait_open()
                link = self._link
                if link is None:
                    raise ConnectionClosed(ABNORMAL, "connection lost")
                return await self._requests.ask(
                    link, lambda rid: m.encode_presence(rid, channel, stats))
        except TimeoutError:
            raise RequestTimeout(f"presence of {channel!r}: no answer within {timeout:g} s"
                                 ) from None

    @property
    def outbox_size(self) -> int:
        """Publishes not yet acknowledged (including ones restored from ``outbox_path``)."""
        return self._publisher.size

    # -- subscription host --------------------------------------------------------------

    def _attach(self, sub: Subscription) -> None:
        if self.state is ConnectionState.CLOSED:
            try:
                self._check_usable()
            except ClientError as exc:
                sub._fail(exc)
            return
        self._channels.attach(sub)
        info = m.binary_info(self.welcome) if self.welcome is not None else None
        if info is not None:
            sub._transfer_timeout(info.transfer_timeout)

    def _detach(self, sub: Subscription) -> None:
        self._channels.detach(sub)
        if self.server_subscriptions.get(sub.channel) is sub:
            del self.server_subscriptions[sub.channel]

    def _server_subscription(self, channel: str) -> Subscription:
        sub = Subscription(self, channel)
        sub._attached = True  # attached by the server, not by ``async with``
        sub.server_side = True
        return sub

    def _position(self, channel: str) -> Position | None:
        return self._channels.position(channel)
