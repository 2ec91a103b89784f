"""A plain WebSocket client for server tests (the ``websockets`` library: an independent
implementation, so the tests do not share a bug with Staywire's own clients), and raw
frames over a bare TCP socket for what a well-behaved library will not send."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import weakref
from collections import deque
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

__all__ = ["closed_with", "connect", "expect", "raw_frame", "RawSocket", "request"]

T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))


def connect(url: str, **kwargs: Any) -> Any:
    kwargs.setdefault("subprotocols", ["staywire.v1"])
    kwargs.setdefault("open_timeout", 5 * T)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("max_size", 32 * 1024 * 1024)
    return websockets.connect(url, **kwargs)


# Messages that `request` read past while waiting for its reply, kept for `expect`.
_stash: weakref.WeakKeyDictionary[Any, deque[dict[str, Any]]] = weakref.WeakKeyDictionary()


async def expect(ws: ClientConnection, kind: str | None = None, timeout: float = 5.0
                 ) -> dict[str, Any]:
    """The next message, skipping server pings; with ``kind``, skip others until it comes."""
    stash = _stash.setdefault(ws, deque())
    while stash:
        msg = stash.popleft()
        if kind is None or msg.get("type") == kind:
            return msg
    async with asyncio.timeout(timeout * T):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "ping" and kind != "ping":
                continue
            if kind is None or msg.get("type") == kind:
                return msg


async def request(ws: ClientConnection, msg: dict[str, Any], timeout: float = 5.0
                  ) -> dict[str, Any]:
    """Send a request and return its ack/result/error; other messages are kept for `expect`."""
    await ws.send(json.dumps(msg))
    stash = _stash.setdefault(ws, deque())
    async with asyncio.timeout(timeout * T):
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == msg.get("id") and reply["type"] in ("ack", "result", "error"):
                return reply
            if reply.get("type") != "ping":
                stash.append(reply)


async def closed_with(ws: ClientConnection, timeout: float = 10.0) -> tuple[int, str]:
    """Wait for the server's close; (code, reason)."""
    async with asyncio.timeout(timeout * T):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "")


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
              mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client frame (masked, RFC 6455 5.3) with full control over its bits."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class RawSocket:
    """A handshake over a bare TCP stream, then hand-made frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, path: str = "/ws",
                   headers: dict[str, str] | None = None,
                   rcvbuf: int | None = None) -> tuple[RawSocket, bytes]:
        """``rcvbuf``: a small receive window, for a client that reads slowly or never."""
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection(host, port)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect((host, port))
            reader, writer = await asyncio.open_connection(sock=sock)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * T)
        return cls(reader, writer), head

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        async with asyncio.timeout(timeout * T):
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def close_code(self, timeout: float = 5.0) -> int:
        """Read until a close frame; its code."""
        while True:
            op, payload = await self.read_frame(timeout)
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    def abort(self) -> None:
        self.writer.transport.abort()
