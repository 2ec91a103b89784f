"""The requests that publish or call the application: ``pub`` and ``rpc``.

Split out of ``requests.py``, which decides the order requests run in and owns the
connection's life (auth, welcome, channels); this module only says what one ``pub``
or ``rpc`` does: the channel's ``publish`` option, the grants, the size bound, the
publish proxy (docs/proxy.md), the broker, and the ack or error reply.

A binary ``pub`` with a ``chunk`` is one piece of a transfer: the node's
``TransferTable`` (protocol/transfer.py) checks it on its own (order, position, size,
digest) and gives the idempotency key it is published with, so every step handles
exactly one chunk.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any, Protocol

import msgspec

from staywire.brokers.base import PublishResult
from staywire.config import Config
from staywire.exceptions import BrokerUnavailable, ProxyUnavailable
from staywire.protocol.codes import CloseCode, ErrorCode
from staywire.protocol.binary import BytesPub, BytesRpc, Chunk, result_frame
from staywire.protocol.envelope import Pub, Rpc
from staywire.protocol.inbound import CloseConnection, InboundGuard
from staywire.protocol.state import ConnectionStateMachine, ConnState
from staywire.protocol.transfer import Step, TransferCorrupt, TransferRefused, TransferTable
from staywire.server.access import AccessRules
from staywire.server.auth import Identity
from staywire.server.publisher import Publisher
from staywire.server.rpc import BytesResult, RpcRegistry
from staywire.server.transport import OP_BINARY, data_frame, text_frame

__all__ = ["PublishRequests", "Requester"]

log = logging.getLogger("staywire.server")


class Requester(Protocol):
    """What publishing uses of a connection (``requests.Conn`` has all of it)."""

    id: str
    ip: str
    identity: Identity | None
    headers: dict[str, str] | None
    sm: ConnectionStateMachine
    guard: InboundGuard | None
    user_data: dict[str, Any]
    binary: bool  # protocol v2: binary frames may be sent to it

    def send(self, obj: dict[str, Any]) -> None: ...
    def send_error(self, code: ErrorCode, reason: str, request_id: int | None = None,
                   channel: str | None = None) -> None: ...
    def enqueue(self, frame: bytes) -> None: ...
    def close(self, code: CloseCode | int, reason: str | None = None) -> None: ...


class PublishRequests:
    __slots__ = ("config", "access", "publisher", "rpc_methods", "publish_now", "pub_runs",
                 "publish_later", "transfers", "_tasks")

    def __init__(self, config: Config, access: AccessRules, publisher: Publisher,
                 rpc: RpcRegistry) -> None:
        self.config = config
        self.access = access
        self.publisher = publisher
        self.rpc_methods = rpc
        # A publish the backend must approve cannot be answered in the frame callback.
        self.publish_now = publisher.publish_nowait is not None and not access.proxied_pub
        # A publish the backend approves first awaits before it reaches the broker, so a
        # run of them would no longer reach it in order: those are handled one by one.
        self.pub_runs = not access.proxied_pub
        # The queued path (Redis): handed to the broker in the frame callback, in order.
        self.publish_later = (publisher.publish_soon is not None and not self.publish_now
                              and not access.proxied_pub)
        self.transfers = TransferTable(max_size=config.max_transfer_size,
                                       timeout=config.transfer_timeout)
        self._tasks: set[asyncio.Future[None]] = set()  # chunks resumed from another node

    def _chunk_step(self, conn: Requester, req: BytesPub) -> Step | None:
        """The table's verdict on a chunk; None: refused, and answered here. A chunk is
        published with the key derived from its transfer and seq (any ``key`` it came
        with is ignored), so a chunk sent again lands once."""
        assert req.chunk is not None
        chunk = msgspec.json.decode(req.chunk, type=Chunk)
        try:
            return self.transfers.step(req.channel, chunk, req.data, time.monotonic())
        except TransferCorrupt as exc:
            conn.send_error(exc.code, exc.reason, req.id)
            if exc.abort is not None:
                self._publish_abort(req.channel, exc.abort)
        except TransferRefused as exc:
            conn.send_error(exc.code, exc.reason, req.id)
        return None

    def _publish_abort(self, channel: str, abort: Chunk) -> None:
        """Tell the transfer's subscribers at once that it will not complete: a chunk with
        ``abort`` and no payload, after the chunks already published."""
        header = msgspec.json.encode(abort)
        key = f"xfer:{abort.transfer}:abort"
        if self.publisher.publish_nowait is not None:
            self.publisher.publish_now(channel, b"", key, True, header)
        elif self.publisher.publish_soon is not None:
            def done(result: PublishResult | None, exc: BaseException | None) -> None:
                if exc is not None:
                    log.warning("transfer abort not published channel=%s: %s", channel, exc)
            self.publisher.publish_later(channel, b"", key, done, True, header)
        else:
            self._spawn(self._abort_later(channel, key, header))

    async def _abort_later(self, channel: str, key: str, header: bytes) -> None:
        try:
            await self.publisher.publish(channel, b"", key, binary=True, chunk=header)
        except BrokerUnavailable as exc:
            log.warning("transfer abort not published channel=%s: %s", channel, exc)

    def _spawn(self, aw: Any) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _chunk_key(self, conn: Requester, req: Pub | BytesPub) -> tuple[bool, str | None]:
        """``(go on, key)`` for any pub: a plain one goes on with its own key; a chunk with
        its derived key, or not at all (refused, or resumed from another node: answered
        by a task once the broker said whether it knows the previous chunk)."""
        if type(req) is not BytesPub or req.chunk is None:
            return True, req.key
        step = self._chunk_step(conn, req)
        if step is None:
            return False, None
        if step.lookup is not None:
            self._spawn(self._resume(conn, req, step.lookup))
            return False, None
        return True, step.key

    async def _resume(self, conn: Requester, req: BytesPub, previous: str) -> None:
        """A chunk of a transfer this node never saw: go on from it when the broker knows
        the previous chunk's key (the publisher reconnected to this node mid-transfer)."""
        try:
            known = await self.publisher.key_seen(req.channel, previous)
        except BrokerUnavailable:
            conn.send_error(ErrorCode.UNAVAILABLE, "broker unavailable; nothing was published",
                            req.id)
            return
        if not known:
            conn.send_error(ErrorCode.TRANSFER_UNKNOWN,
                            "a chunk of a transfer that was never started here", req.id)
            return
        assert req.chunk is not None
        chunk = msgspec.json.decode(req.chunk, type=Chunk)
        try:
            step = self.transfers.resume(req.channel, chunk, req.data, time.monotonic())
        except TransferRefused as exc:
            conn.send_error(exc.code, exc.reason, req.id)
            return
        try:
            result = await self.publisher.publish(req.channel, req.data, step.key, binary=True,
                                                  chunk=req.chunk)
        except BrokerUnavailable:
            conn.send_error(ErrorCode.UNAVAILABLE, "broker unavailable; nothing was published",
                            req.id)
            return
        _pub_ack(conn, req.id, result.epoch, result.offset, result.duplicate)

    def _backend_only(self, conn: Requester, req: Pub | BytesPub) -> bool:
        """The channel's ``publish = false``: refused with ``forbidden`` before any other
        check, the backend's proxy included."""
        if self.access.clients_publish(req.channel):
            return False
        conn.send_error(ErrorCode.FORBIDDEN, "only the backend publishes to this channel", req.id)
        return True

    def _pub_check(self, conn: Requester, req: Pub | BytesPub) -> bool:
        if self._backend_only(conn, req):
            return False
        if not self.access.allows(conn.identity, req.channel, "pub"):  # type: ignore[arg-type]
            conn.send_error(ErrorCode.FORBIDDEN, "not allowed to publish to this channel", req.id)
            return False
        if len(req.data) > self.config.max_data_size:
            conn.send_error(ErrorCode.BAD_REQUEST, "data over max_data_size", req.id)
            return False
        if type(req) is BytesPub and not self.config.channel(req.channel).binary:
            conn.send_error(ErrorCode.FORBIDDEN, "binary data is not allowed on this channel",
                            req.id)
            return False
        return True

    def pub_now(self, conn: Requester, req: Pub | BytesPub) -> None:
        if not self._pub_check(conn, req):
            return
        if type(req) is BytesPub:
            go, key = self._chunk_key(conn, req)
            if not go:
                return
            result = self.publisher.publish_now(req.channel, req.data, key, True, req.chunk)
        else:
            result = self.publisher.publish_now(req.channel, bytes(req.data), req.key)
        _pub_ack(conn, req.id, result.epoch, result.offset, result.duplicate)

    def pub_later(self, conn: Requester, req: Pub | BytesPub) -> None:
        """A publish answered when the broker replies, with no task: the Redis broker
        queues it now (in the order the client sent it) and calls ``done`` later."""
        if not self._pub_check(conn, req):
            return
        go, key = self._chunk_key(conn, req)
        if not go:
            return
        rid, channel = req.id, req.channel

        def done(result: PublishResult | None, exc: BaseException | None) -> None:
            if result is not None:
                _pub_ack(conn, rid, result.epoch, result.offset, result.duplicate)
            elif isinstance(exc, BrokerUnavailable):
                log.warning("publish refused conn=%s channel=%s: %s", conn.id, channel, exc)
                conn.send_error(ErrorCode.UNAVAILABLE,
                                "broker unavailable; nothing was published", rid)
            else:  # as a failed request of the worker: logged, the connection closed
                log.error("request handling failed conn=%s: %s", conn.id, exc)
                conn.close(CloseCode.INTERNAL_ERROR)

        if type(req) is BytesPub:
            self.publisher.publish_later(channel, req.data, key, done, True, req.chunk)
        else:
            self.publisher.publish_later(channel, bytes(req.data), key, done)

    async def pub(self, conn: Requester, req: Pub | BytesPub) -> None:
        access = self.access
        binary = type(req) is BytesPub
        url = access.asks(req.channel, "pub") if access.proxied_pub else None
        if url is not None and binary:
            # The publish proxy's contract is JSON data (docs/proxy.md): bytes are not
            # sent to it, and it cannot approve them.
            if not self._backend_only(conn, req):
                conn.send_error(ErrorCode.FORBIDDEN, "binary data is not allowed on a channel "
                                "the publish proxy approves", req.id)
            return
        key = req.key
        if url is None:
            if not self._pub_check(conn, req):
                return
            go, key = self._chunk_key(conn, req)
            if not go:
                return
            data = bytes(req.data)
        else:
            approved = await self._pub_ask(conn, req, url)  # type: ignore[arg-type]
            if approved is None:
                return
            data = approved
        try:
            result = await self.publisher.publish(
                req.channel, data, key, binary=binary,
                chunk=req.chunk if binary else None)  # type: ignore[union-attr]
        except BrokerUnavailable as exc:
            log.warning("publish refused conn=%s channel=%s: %s", conn.id, req.channel, exc)
            conn.send_error(ErrorCode.UNAVAILABLE, "broker unavailable; nothing was published",
                            req.id)
            return
        _pub_ack(conn, req.id, result.epoch, result.offset, result.duplicate)

    async def _pub_ask(self, conn: Requester, req: Pub, url: str) -> bytes | None:
        """The data to publish, as the backend approved (or replaced) it; None: refused."""
        if self._backend_only(conn, req):
            return None
        data = bytes(req.data)
        if len(data) > self.config.max_data_size:
            conn.send_error(ErrorCode.BAD_REQUEST, "data over max_data_size", req.id)
            return None
        try:
            verdict = await self.access.ask(url, conn, req.channel, "pub", data)
        except ProxyUnavailable:
            conn.send_error(ErrorCode.UNAVAILABLE,
                            "the application's backend is unavailable; nothing was published",
                            req.id)
            return None
        if isinstance(verdict, tuple):
            conn.send_error(verdict[0], verdict[1], req.id)  # refused: never a silent drop
            return None
        if verdict is not None:
            if len(verdict) > self.config.max_data_size:
                conn.send_error(ErrorCode.INTERNAL, "the application's data is over "
                                "max_data_size; nothing was published", req.id)
                return None
            data = verdict
        if conn.sm.state != ConnState.OPEN:
            return None
        return data

    async def rpc(self, conn: Requester, req: Rpc | BytesRpc) -> None:
        binary = type(req) is BytesRpc
        outcome = await self.rpc_methods.call(conn, req.method, bytes(req.data), binary=binary)
        if isinstance(outcome, tuple):
            code, reason = outcome
            if code is ErrorCode.INVALID_PARAMS or code is ErrorCode.UNKNOWN_METHOD:
                try:
                    conn.guard.invalid(time.monotonic())  # type: ignore[union-attr]
                except CloseConnection as exc:
                    conn.close(exc.code, exc.reason)
                    return
            conn.send_error(code, reason, req.id)
            return
        if isinstance(outcome, BytesResult):
            if conn.binary:
                conn.enqueue(data_frame(OP_BINARY, result_frame(req.id, outcome.data)))
            else:  # a v1 connection never gets a binary frame (docs/protocol.md)
                conn.send({"type": "result", "id": req.id,
                           "data": base64.b64encode(outcome.data).decode(),
                           "encoding": "base64"})
            return
        conn.enqueue(text_frame(b'{"type":"result","id":%d,"data":%s}' % (req.id, outcome)))




def _pub_ack(conn: Requester, rid: int, epoch: str, offset: int, duplicate: bool) -> None:
    if duplicate:
        conn.send({"type": "ack", "id": rid, "epoch": epoch, "offset": offset,
                   "duplicate": True})
    else:
        conn.enqueue(text_frame(b'{"type":"ack","id":%d,"epoch":"%s","offset":%d}'
                                % (rid, epoch.encode(), offset)))
