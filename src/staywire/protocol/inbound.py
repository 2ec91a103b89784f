"""From data frames to validated requests: the guard every inbound message passes.

No I/O and no clock: the driver hands in each data frame (opcode, fin, rsv
bits, payload) and the time, and gets back a request, ``None`` (a fragment was
buffered), or an exception that says what to answer:

* ``CloseConnection(code, reason)``: the connection must end with that code;
* ``Reject(code, reason, id)``: send an ``error`` reply and go on.

This is the one place that maps inbound failures to close codes (as the
websockets parser does), so the server cannot answer the same fault two ways.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from staywire.protocol.binary import BytesPub, BytesRpc, decode_request
from staywire.protocol.codes import CloseCode, ErrorCode
from staywire.protocol.envelope import Inbound, InvalidMessage, decode, salvage_id
from staywire.protocol.framing import OP_BINARY, CloseConnection, MessageAssembler
from staywire.protocol.ratelimit import TokenBucket, ViolationCounter

__all__ = ["CloseConnection", "InboundGuard", "Limits", "Reject", "Request"]

# What the guard hands on: a text request, or a binary one of protocol v2.
Request = Inbound | BytesPub | BytesRpc


class Reject(Exception):
    def __init__(self, code: ErrorCode, reason: str, request_id: int | None = None) -> None:
        self.code = code
        self.reason = reason
        self.request_id = request_id
        super().__init__(code, reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The per-connection limits the guard enforces (a view of the server config)."""

    max_message_size: int = 64 * 1024
    max_invalid: int = 10
    invalid_window: float = 60.0
    rate_messages: float = 100.0
    rate_burst: float = 200.0
    rate_bytes: float = 1024 * 1024.0
    rate_bytes_burst: float = 2 * 1024 * 1024.0
    rate_max_violations: int = 100
    rate_violation_window: float = 10.0

    @classmethod
    def from_config(cls, config: object) -> Limits:
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    @property
    def bytes_burst(self) -> float:
        """The byte bucket's burst: never below one message of the largest size."""
        return max(self.rate_bytes_burst, float(self.max_message_size))

    def announced(self) -> dict[str, float]:
        """The rate limits as ``welcome.rate_limit`` tells them (clients pace under them)."""
        return {"messages": self.rate_messages, "burst": self.rate_burst,
                "bytes": self.rate_bytes, "bytes_burst": self.bytes_burst}


class InboundGuard:
    """Reassembly, size limit, UTF-8, rate limits, decoding and the invalid-message budget."""

    __slots__ = ("limits", "assembler", "_msgs", "_bytes", "_rate_violations", "_invalid",
                 "binary")

    def __init__(self, limits: Limits, now: float, *, binary: bool = False) -> None:
        self.limits = limits
        self.binary = binary  # protocol v2: binary frames carry requests
        self.assembler = MessageAssembler(limits.max_message_size)
        self._msgs = TokenBucket(limits.rate_messages, limits.rate_burst, now)
        self._bytes = TokenBucket(limits.rate_bytes, limits.bytes_burst, now)
        self._rate_violations = ViolationCounter(limits.rate_max_violations,
                                                 limits.rate_violation_window, now)
        self._invalid = ViolationCounter(limits.max_invalid, limits.invalid_window, now)

    def feed(self, opcode: int, fin: bool, rsv: bool, payload: bytes, now: float
             ) -> Request | None:
        """One data frame in; a request out once a whole message has arrived."""
        message = self.assemble(opcode, fin, rsv, payload)
        if message is None:
            return None
        return self._message(message[0], message[1], now)

    def assemble(self, opcode: int, fin: bool, rsv: bool, payload: bytes
                 ) -> tuple[int, bytes] | None:
        """RFC 6455 framing rules only (see ``MessageAssembler``)."""
        return self.assembler.assemble(opcode, fin, rsv, payload)

    def _message(self, opcode: int, payload: bytes, now: float) -> Request:
        # Rate limits count every message, valid or not, before any work is done on it.
        if not (self._msgs.take(now) and self._bytes.take(now, len(payload))):
            if self._rate_violations.hit(now):
                raise CloseConnection(CloseCode.RATE_LIMITED)
            # The id lets the client tell which request to send again; reading it costs
            # one bounded decode, which a flood pays only until it earns a 4029.
            rid = salvage_id(payload) if opcode != OP_BINARY else None
            raise Reject(ErrorCode.RATE_LIMITED, "over the rate limit; slow down", rid)
        try:
            if opcode == OP_BINARY:
                if not self.binary:
                    self._count_invalid(now)
                    raise Reject(ErrorCode.BINARY_UNSUPPORTED,
                                 "binary frames need protocol staywire.v2")
                return decode_request(payload)
            return decode(payload)
        except InvalidMessage as exc:
            self._count_invalid(now)
            raise Reject(exc.code, exc.reason, exc.request_id) from None

    def _count_invalid(self, now: float) -> None:
        if self._invalid.hit(now):
            raise CloseConnection(CloseCode.PROTOCOL_VIOLATION, "too many invalid messages")

    def invalid(self, now: float) -> None:
        """Count a request the driver found invalid after decoding (unknown method...)."""
        self._count_invalid(now)
