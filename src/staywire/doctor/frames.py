"""RFC 6455 frames, client side, with no I/O: an encoder that sends anything (the doctor
must be able to send what a correct client never would) and a reader bounded in size."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["OP_BINARY", "OP_CLOSE", "OP_CONTINUATION", "OP_PING", "OP_PONG", "OP_TEXT",
           "Frame", "FrameError", "FrameReader", "close_payload", "encode", "parse_close"]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_KNOWN = {OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG}


class FrameError(Exception):
    """The server sent something that is not a valid frame (or one over the read bound)."""


@dataclass(frozen=True, slots=True)
class Frame:
    opcode: int
    fin: bool
    payload: bytes


def encode(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked frame (section 5.3: every client frame is masked)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    mask = os.urandom(4)
    head += mask
    # XOR with the mask repeated: one big-int operation instead of a Python loop over
    # up to 16 MiB of payload.
    if n:
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        return bytes(head) + masked
    return bytes(head)


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def parse_close(payload: bytes) -> tuple[int | None, str | None]:
    """(code, reason) of a close frame; (None, None) for an empty one. A one-byte payload
    is invalid (section 5.5.1) and reported as code None with a reason saying so."""
    if not payload:
        return None, None
    if len(payload) == 1:
        return None, "<invalid one-byte close payload>"
    code = struct.unpack("!H", payload[:2])[0]
    return code, payload[2:].decode("utf-8", "replace")


class FrameReader:
    """Feed bytes, get frames. A frame that announces more than ``max_size`` bytes raises
    before any of it is buffered, so a hostile server cannot make the doctor hold more."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        opcode = b0 & 0x0F
        if opcode not in _KNOWN:
            raise FrameError(f"unknown opcode {opcode:#x}")
        if b1 & 0x80:
            raise FrameError("the server masked a frame (section 5.1 forbids it)")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        if n > self.max_size:
            raise FrameError(f"a frame of {n} bytes, over the doctor's read bound")
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        return Frame(opcode, bool(b0 & 0x80), payload)
