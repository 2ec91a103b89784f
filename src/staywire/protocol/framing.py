"""RFC 6455 message rules on top of a frame parser, shared by the server and the client.

picows parses frames but leaves the rules of messages to its user (run against
Autobahn, a bare picows echo failed 84 of 301 cases). ``MessageAssembler`` is the
one place those rules live: reassembly of fragments within ``max_message_size``,
UTF-8 of text messages, RSV bits, continuation order, opcodes. Every Staywire
connection, server side and client side, runs its data frames through it.
"""

from __future__ import annotations

from typing import Final

from staywire.protocol.codes import CloseCode

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_TEXT",
    "CloseConnection",
    "CloseFence",
    "MessageAssembler",
]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8


class CloseConnection(Exception):
    """The connection must end with ``code``; ``reason`` is safe to send."""

    def __init__(self, code: CloseCode, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason if reason is not None else code.reason
        super().__init__(code, self.reason)


class MessageAssembler:
    __slots__ = ("max_message_size", "_parts", "_parts_size", "_parts_op")

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self._parts_op = OP_TEXT

    @property
    def buffered(self) -> int:
        """Bytes of a fragmented message held so far."""
        return self._parts_size

    def assemble(self, opcode: int, fin: bool, rsv: bool, payload: bytes
                 ) -> tuple[int, bytes] | None:
        """One data frame in; (opcode, payload) of a whole, valid message out, or None."""
        if rsv:
            # RFC 6455 5.2: RSV bits must be 0 unless an extension defines them; none is
            # negotiated.
            raise CloseConnection(CloseCode.PROTOCOL_ERROR, "RSV bits set without an extension")
        if opcode == OP_CONTINUATION:
            if self._parts is None:
                raise CloseConnection(CloseCode.PROTOCOL_ERROR, "continuation without a start")
            self._append(payload)
            if not fin:
                return None
            payload = b"".join(self._parts)
            opcode = self._parts_op
            self._parts = None
            self._parts_size = 0
        elif opcode == OP_TEXT or opcode == OP_BINARY:
            if self._parts is not None:
                raise CloseConnection(CloseCode.PROTOCOL_ERROR,
                                      "new message before the fragmented one ended")
            if not fin:
                self._parts = []
                self._parts_size = 0
                self._parts_op = opcode
                self._append(payload)
                return None
            if len(payload) > self.max_message_size:
                raise CloseConnection(CloseCode.MESSAGE_TOO_BIG)
        else:
            raise CloseConnection(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
        # ASCII is valid UTF-8: isascii() allocates nothing, where decode() builds a str
        # of every text message only to drop it.
        if opcode == OP_TEXT and not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                # RFC 6455 8.1: a text message that is not UTF-8 fails the connection.
                raise CloseConnection(CloseCode.INVALID_TEXT) from None
        return opcode, payload

    def _append(self, payload: bytes) -> None:
        assert self._parts is not None
        self._parts_size += len(payload)
        if self._parts_size > self.max_message_size:
            raise CloseConnection(CloseCode.MESSAGE_TOO_BIG)
        self._parts.append(payload)


class CloseFence:
    """How much of each read may reach the frame parser: nothing after the peer's close.

    RFC 6455 5.5.1: an endpoint answers the first close frame and the peer sends
    nothing after it. picows parses one frame ahead of the frame it delivers, so a
    second close frame in the same read fails that look-ahead ("Received CLOSE for
    the second time", 1002) before the first close reaches the listener that would
    have echoed it (Autobahn case 7.1.2). The fence follows frame boundaries (it
    reads headers only and skips payloads) and cuts each read just after the first
    close frame. The stream starts with the HTTP upgrade response, which ends at the
    first blank line.
    """

    __slots__ = ("_http_tail", "_head", "_skip", "_closing", "closed")

    def __init__(self, *, http: bool = True) -> None:
        self._http_tail: bytes | None = b"" if http else None  # None once the response ended
        self._head = b""  # a frame header split across reads
        self._skip = 0  # payload bytes of the current frame still to come
        self._closing = False  # the current frame is a close frame
        self.closed = False  # the close frame has ended: nothing more is admitted

    def admit(self, data: bytes | memoryview) -> int:
        """Of ``data`` (the next bytes read), how many the parser may see."""
        if self.closed:
            return 0
        end = len(data)
        pos = 0
        if self._http_tail is not None:
            seen = self._http_tail + bytes(data)
            blank = seen.find(b"\r\n\r\n")
            if blank < 0:
                self._http_tail = seen[-3:]
                return end
            pos = blank + 4 - len(self._http_tail)
            self._http_tail = None
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                if self._skip:
                    return end
            elif not self._head and end - pos >= 14:  # a whole header is here: the fast path
                b1 = data[pos + 1]
                length = b1 & 0x7F
                if length < 126:
                    size = 2
                elif length == 126:
                    size = 4
                    length = data[pos + 2] << 8 | data[pos + 3]
                else:
                    size = 10
                    length = int.from_bytes(data[pos + 2:pos + 10], "big")
                if b1 & 0x80:
                    size += 4
                self._closing = data[pos] & 0x0F == OP_CLOSE
                pos += size
                if not self._closing and pos + length <= end:
                    pos += length  # the whole frame is in this read
                    continue
                self._skip = length
            else:
                head = self._head + bytes(data[pos:pos + 14])
                parsed = _frame_header(head)
                if parsed is None:  # the header goes on in the next read
                    self._head = head
                    return end
                size, opcode, length = parsed
                pos += size - len(self._head)
                self._head = b""
                self._skip = length
                self._closing = opcode == OP_CLOSE
            if self._closing and not self._skip:
                self.closed = True
                return pos
        return end


def _frame_header(head: bytes) -> tuple[int, int, int] | None:
    """(header size, opcode, payload length) of the frame ``head`` starts, or None if short."""
    if len(head) < 2:
        return None
    opcode = head[0] & 0x0F
    length = head[1] & 0x7F
    size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if head[1] & 0x80 else 0)
    if len(head) < size:
        return None
    if length == 126:
        length = int.from_bytes(head[2:4], "big")
    elif length == 127:
        length = int.from_bytes(head[2:10], "big")
    return size, opcode, length
