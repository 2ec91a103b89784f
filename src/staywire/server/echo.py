"""A raw echo endpoint for protocol conformance runs (Autobahn|Testsuite).

It runs the same framing code as every Staywire connection (``InboundGuard.assemble``:
reassembly, size limit, UTF-8, RSV bits; the same close handling), but echoes each
message back instead of decoding envelopes, which is what the fuzzing client expects.
It is off unless ``echo_path`` is set.
"""

from __future__ import annotations

import time

from staywire.protocol.codes import CloseCode
from staywire.protocol.inbound import CloseConnection, InboundGuard, Limits
from staywire.server.transport import (
    OP_PONG,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    close_frame,
    close_reply,
    code_value,
    data_frame,
)

__all__ = ["EchoConnection"]


class EchoConnection(WSListener):
    __slots__ = ("guard", "closing")

    def __init__(self, limits: Limits) -> None:
        self.guard = InboundGuard(limits, time.monotonic())
        self.closing = False

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        tr = transport.underlying_transport
        op = frame.msg_type
        if op is WSMsgType.CLOSE:
            if not self.closing:
                self.closing = True
                tr.write(close_reply(code_value(frame.get_close_code())))
            transport.disconnect()
            return
        if self.closing or op is WSMsgType.PONG:
            return
        if op is WSMsgType.PING:
            tr.write(data_frame(OP_PONG, frame.get_payload_as_bytes()))
            return
        try:
            message = self.guard.assemble(op.value, frame.fin,
                                          frame.rsv1 or frame.rsv2 or frame.rsv3,
                                          frame.get_payload_as_bytes())
        except CloseConnection as exc:
            self._close(transport, exc.code, exc.reason)
            return
        if message is not None:
            tr.write(data_frame(message[0], message[1]))

    def _close(self, transport: WSTransport, code: CloseCode, reason: str) -> None:
        self.closing = True
        transport.underlying_transport.write(close_frame(int(code), reason))
        transport.disconnect()
