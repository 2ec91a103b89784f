"""Every message from the server, handed to whoever waits for it.

``on_text`` handles each message synchronously, in arrival order, so deliveries
keep the server's order. Replies are matched to their request by ``id``: a
``pub`` ack or error to the publisher, a ``sub``/``unsub`` one to the channels,
an rpc ``result`` or error to its caller.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable

import msgspec

from staywire.client import messages as m
from staywire.client.channels import Channels
from staywire.client.dial import Dialer
from staywire.client.keepalive import Keepalive
from staywire.client.link import Link
from staywire.client.publisher import Publisher
from staywire.client.reconnect import ReconnectSchedule
from staywire.client.requests import Requests
from staywire.exceptions import RequestError
from staywire.protocol import binary
from staywire.protocol.codes import CloseCode

__all__ = ["Router"]

log = logging.getLogger("staywire.client")


class Router:
    """Routes inbound messages to the client's collaborators."""

    def __init__(
        self,
        *,
        dialer: Dialer,
        keepalive: Keepalive,
        publisher: Publisher,
        channels: Channels,
        requests: Requests,
        schedule: ReconnectSchedule,
        stats: dict[str, int],
        current_link: Callable[[], Link | None],
        on_rtt: Callable[[float], None],
        on_server_sub: Callable[[Link, m.Subscribed | m.Unsubscribed], None],
    ) -> None:
        self._dialer = dialer
        self._keepalive = keepalive
        self._publisher = publisher
        self._channels = channels
        self._requests = requests
        self._schedule = schedule
        self._stats = stats
        self._current_link = current_link  # the welcomed connection, if any
        self._on_rtt = on_rtt
        self._on_server_sub = on_server_sub  # the server API joined or left a channel

    def on_text(self, link: Link, payload: bytes) -> None:
        if link is self._current_link():
            self._keepalive.received(asyncio.get_running_loop().time())
        msg = m.decode(payload)
        if msg is None:
            log.debug("ignored a message this client does not understand: %.200r", payload)
            return
        try:
            self._dispatch(link, msg)
        except Exception:
            log.exception("failed to handle %s", type(msg).__name__)

    def on_binary(self, link: Link, payload: bytes) -> None:
        """A binary frame (protocol v2): a binary publication, or an rpc's bytes result."""
        if link is self._current_link():
            self._keepalive.received(asyncio.get_running_loop().time())
        try:
            header, data = binary.decode_server_frame(payload)
        except ValueError as exc:
            log.debug("ignored a binary frame this client does not understand: %s", exc)
            return
        try:
            if isinstance(header, binary.BinaryMsg):
                self._channels.on_msg(m.Msg(header.channel, header.epoch, header.offset,
                                            bytes(data), chunk=header.chunk))
            else:
                self._requests.resolve(header.id, bytes(data))
        except Exception:
            log.exception("failed to handle a binary %s", type(header).__name__)

    def _dispatch(self, link: Link, msg: m.ServerMessage) -> None:
        if isinstance(msg, m.Msg):
            if msg.encoding == "base64":  # bytes, to a connection on protocol v1
                msg = msgspec.structs.replace(msg, data=_unbase64(msg.data))
            self._channels.on_msg(msg)
        elif isinstance(msg, m.Ack):
            self._on_ack(link, msg)
        elif isinstance(msg, m.Ping):
            link.send(m.encode_pong(msg.t))
        elif isinstance(msg, m.Pong):
            if isinstance(msg.t, int | float):
                self._on_rtt(max(0.0, asyncio.get_running_loop().time() - msg.t))
        elif isinstance(msg, m.Result):
            self._requests.resolve(msg.id, msg.data if msg.encoding != "base64"
                                   else _unbase64(msg.data))
        elif isinstance(msg, m.Error):
            self._on_error(link, msg)
        elif isinstance(msg, m.Welcome):
            if not self._dialer.welcomed(msg):
                self._keepalive.answer(msg)  # the answer to an in-band token refresh
        elif isinstance(msg, m.Subscribed | m.Unsubscribed):
            if link is self._current_link():
                self._on_server_sub(link, msg)
        elif isinstance(msg, m.Drain):
            self._on_drain(link, msg.reconnect_in_ms)
        elif isinstance(msg, m.Join | m.Leave):
            self._channels.on_presence(msg)

    def _on_ack(self, link: Link, ack: m.Ack) -> None:
        if self._publisher.on_ack(ack):
            return
        request = self._requests.pop(ack.id)
        if request is not None:
            self._channels.on_ack(link, request, ack)

    def _on_error(self, link: Link, err: m.Error) -> None:
        if err.id is None and err.channel is not None:
            self._channels.revoked(err.channel, err)  # a refreshed token no longer grants it
            return
        if err.id is None:
            if not self._keepalive.answer(err):
                log.warning("server error: %s %s", err.code, err.reason)
            return
        if self._publisher.on_error(err.id, err):
            return
        request = self._requests.pop(err.id)
        if request is None:
            return
        if request.future is not None:
            if not request.future.done():
                request.future.set_exception(RequestError(err.code, err.reason))
            return
        self._channels.on_error(link, request, err)

    def _on_drain(self, link: Link, reconnect_in_ms: float) -> None:
        """The server is going away: leave at about ``reconnect_in_ms`` (jittered)."""
        loop = asyncio.get_running_loop()
        delay = self._schedule.drain(reconnect_in_ms, loop.time())
        self._stats["drains"] += 1
        loop.call_later(delay, self._drain_due, link)

    def _drain_due(self, link: Link) -> None:
        if link is self._current_link() and link.is_open:
            link.close(int(CloseCode.GOING_AWAY), "reconnecting: server draining")


def _unbase64(data: object) -> bytes:
    """The bytes of a base64 ``data`` (v1's form of binary data); raises ``ValueError``."""
    if not isinstance(data, str):
        raise ValueError("base64 data is not a string")
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64 data: {exc}") from None
