"""Bare picows peer for ``staywire bench``: echo plus a single broadcast room, on uvloop.

The floor Staywire is measured against: the same transport with the same settings, and
no protocol work beyond parsing JSON text frames with the standard library, as a small
application would.

    {"type":"echo",...}      -> the same frame back
    {"type":"sub"}           -> join the room, answer {"type":"ack"}
    {"type":"pub","data":X}  -> {"type":"msg","data":X} to every room member
    a binary frame           -> the same bytes to every other room member (the bare
                                relay of staywire_bench.transfer)

The fan-out is the transport's limit, not a naive application: each ``msg`` frame is
built once (header and payload), and the frames of one event-loop tick are joined once
and written with one ``write`` per room member at the end of the tick, the same bytes
object for every member. That is what Staywire's hub does (one shared frame, one write
per subscriber per tick) without its protocol, so the ratio of the two is the cost of
that protocol. ``transport.send`` per member would build and copy the frame for every
member and make one system call per member per publication.

Usage: python bench/peers/picows_server.py PORT
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

import uvloop
from picows import WSListener, WSMsgType, WSTransport, ws_create_server

TEXT = WSMsgType.TEXT
BINARY = WSMsgType.BINARY
CLOSE = WSMsgType.CLOSE
ACK = b'{"type":"ack"}'
_log = logging.LoggerAdapter(logging.getLogger("peer.picows"), {})
room: set[WSTransport] = set()
pending: list[bytes] = []  # msg frames of this tick, written to every member by flush()


def msg_frame(payload: bytes, first: int = 0x81) -> bytes:
    """A whole unmasked final frame (RFC 6455 5.2), text unless ``first`` (FIN | opcode)
    says otherwise: server frames are never masked."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def flush() -> None:
    data = pending[0] if len(pending) == 1 else b"".join(pending)
    pending.clear()
    for member in room:
        tr = member.underlying_transport
        if not tr.is_closing():
            tr.write(data)


class Peer(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame) -> None:  # type: ignore[no-untyped-def]
        if frame.msg_type is CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if frame.msg_type is BINARY:
            # One frame, built here and written as it is to every member. Not
            # ``member.send``: picows 2.3.1 sends a server payload over 8 KiB with
            # ``writelines([header, payload])``, the header a view of its per-connection
            # buffer that uvloop keeps queued while the socket is full; the next send on
            # that connection rewrites the buffer, so the queued header goes out with the
            # next frame's length (a 4 KiB tail after 60 KiB chunks): the subscriber
            # loses the frame boundaries and reads payload bytes as headers ("masked
            # frame from server", invalid opcodes).
            data = msg_frame(frame.get_payload_as_bytes(), 0x82)
            for member in room:
                if member is not transport:
                    tr = member.underlying_transport
                    if not tr.is_closing():
                        tr.write(data)
            return
        if frame.msg_type is not TEXT:
            return
        payload = frame.get_payload_as_bytes()
        try:
            msg = json.loads(payload)
            kind = msg["type"]
        except (ValueError, KeyError, TypeError):
            return
        if kind == "echo":
            transport.send(TEXT, payload)
        elif kind == "sub":
            room.add(transport)
            transport.send(TEXT, ACK)
        elif kind == "pub":
            out = json.dumps({"type": "msg", "data": msg.get("data")},
                             separators=(",", ":")).encode()
            if not pending:
                asyncio.get_running_loop().call_soon(flush)
            pending.append(msg_frame(out))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        room.discard(transport)


async def main(port: int) -> None:
    # The transport settings of Staywire's own (src/staywire/server/transport.py): uvloop's
    # server (not aiofastnet), a 1 KiB initial read buffer, a LoggerAdapter (no Logger built
    # per connection). What Staywire costs on top of this is its protocol layer.
    server = await ws_create_server(lambda _request: Peer(), "127.0.0.1", port,
                                    backlog=4096, reuse_address=True, use_aiofastnet=False,
                                    read_buffer_init_size=1024, logger_name=_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
