"""One open WebSocket under the doctor's full control, as a stream of events.

``recv`` returns what the server did, in order: a data message, a ping (protocol-level,
or application-level as the preset recognises it), a pong, or the end of the
connection, either a close frame (its code and reason) or a TCP drop without one
(RFC 6455 section 7.1.5: 1006 is never sent, it is what the client sees). Pings are
answered unless the probe plays a dead client. Every read is bounded in size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from staywire.doctor.frames import (
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_payload,
    encode,
    parse_close,
)
from staywire.doctor.handshake import Handshake
from staywire.doctor.presets import Preset

__all__ = ["Closed", "Event", "Message", "Ping", "Pong", "Probe"]

_CLOSE_WAIT = 2.0  # for the server's answer to our close frame (section 7.1.1)


@dataclass(frozen=True, slots=True)
class Message:
    at: float  # seconds since the connection opened
    opcode: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    at: float
    app: bool  # an application message (the preset's), not a ping frame
    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    at: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    at: float
    frame: bool  # False: the TCP connection ended without a close frame
    code: int | None = None
    reason: str | None = None
    by_server: bool = True  # the server started the close
    error: str | None = None  # the server broke framing

    def describe(self) -> str:
        if not self.frame:
            return f"dropped without a close frame after {self.at:.1f} s"
        if self.code is None:
            return f"closed without a code after {self.at:.1f} s"
        reason = f" {self.reason!r}" if self.reason else " (no reason)"
        return f"closed {self.code}{reason} after {self.at:.1f} s"


Event = Message | Ping | Pong | Closed


class Probe:
    def __init__(self, handshake: Handshake, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, max_size: int, answer_pings: bool,
                 preset: Preset) -> None:
        self.handshake = handshake
        self.answer_pings = answer_pings
        self.preset = preset
        self.opened = time.monotonic()
        self.closed: Closed | None = None
        self.bytes_sent = 0
        self._reader = reader
        self._writer = writer
        self._frames = FrameReader(max_size)
        self._max_size = max_size
        self._pending: list[Event] = []
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self._we_closed = False

    def elapsed(self) -> float:
        return time.monotonic() - self.opened

    async def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> bool:
        """False when the connection is already gone (the send is then a no-op)."""
        return await self.send_raw(encode(opcode, payload, fin=fin))

    async def send_raw(self, data: bytes) -> bool:
        """Bytes already framed (a burst of frames in one write)."""
        if self.closed is not None:
            return False
        try:
            self._writer.write(data)
            self.bytes_sent += len(data)
            await self._writer.drain()
        except (ConnectionError, OSError):
            self._end(Closed(self.elapsed(), frame=False))
            return False
        return True

    async def send_text(self, text: str) -> bool:
        return await self.send(OP_TEXT, text.encode())

    async def recv(self, timeout: float) -> Event | None:
        """The next event, or None when nothing happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            if self.closed is not None:
                return self.closed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                data = await asyncio.wait_for(self._reader.read(1 << 16), remaining)
            except TimeoutError:
                return None
            except (ConnectionError, OSError):
                data = b""
            if not data:
                self._end(Closed(self.elapsed(), frame=False, by_server=not self._we_closed))
                continue
            try:
                frames = self._frames.feed(data)
            except FrameError as exc:
                self._end(Closed(self.elapsed(), frame=False, error=str(exc)))
                continue
            for frame in frames:
                await self._on_frame(frame.opcode, frame.fin, frame.payload)
        return self._pending.pop(0)

    async def _on_frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        at = self.elapsed()
        if opcode == OP_PING:
            self._pending.append(Ping(at, app=False, data=payload))
            if self.answer_pings:
                await self.send(OP_PONG, payload)
        elif opcode == OP_PONG:
            self._pending.append(Pong(at, payload))
        elif opcode == OP_CLOSE:
            code, reason = parse_close(payload)
            if not self._we_closed:  # echo it, as section 5.5.1 asks
                with contextlib.suppress(ConnectionError, OSError):
                    self._writer.write(encode(OP_CLOSE, payload[:2]))
            self._end(Closed(at, frame=True, code=code, reason=reason,
                             by_server=not self._we_closed))
        else:
            if opcode != OP_CONTINUATION:
                self._fragment_op, self._fragments = opcode, []
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > self._max_size:
                self._end(Closed(at, frame=False, error="a message over the read bound"))
                return
            if fin:
                data = b"".join(self._fragments)
                self._fragments = []
                await self._on_message(Message(at, self._fragment_op, data))

    async def _on_message(self, msg: Message) -> None:
        if msg.opcode == OP_TEXT:
            text = msg.data.decode("utf-8", "replace")
            if self.preset.is_ping(text):
                self._pending.append(Ping(msg.at, app=True, data=msg.data))
                reply = self.preset.pong_for(text)
                if self.answer_pings and reply is not None:
                    await self.send_text(reply)
                return
        self._pending.append(msg)

    def _end(self, closed: Closed) -> None:
        if self.closed is None:
            self.closed = closed
            self._pending.append(closed)
            self._writer.close()

    async def close(self, code: int = 1000, reason: str = "doctor done") -> None:
        """Close as a polite client: send the frame, wait a little for the answer, drop."""
        if self.closed is None:
            self._we_closed = True
            if await self.send(OP_CLOSE, close_payload(code, reason)):
                deadline = time.monotonic() + _CLOSE_WAIT
                while self.closed is None and time.monotonic() < deadline:
                    await self.recv(deadline - time.monotonic())
        self.abort()

    def abort(self) -> None:
        if self.closed is None:
            self.closed = Closed(self.elapsed(), frame=False, by_server=False)
        self._writer.close()
