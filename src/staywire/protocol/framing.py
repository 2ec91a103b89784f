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

__all__ = ["OP_BINARY", "OP_CONTINUATION", "OP_TEXT", "CloseConnection", "MessageAssembler"]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2


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
        if opcode == OP_TEXT:
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
