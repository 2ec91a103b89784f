"""What each server speaks, seen from the load generator.

Every server is asked the same logical work: echo a small message, join the
broadcast room (a channel), publish to it, receive its publications. Each peer
speaks its own protocol where it has one:

* ``staywire``: Staywire v1 envelopes (docs/protocol.md): ``welcome`` after the
  upgrade, ``ping``/``pong`` for echo, ``sub``/``ack``, ``pub``/``msg``/``ack``.
* ``socketio``: engine.io v4 / socket.io v5 frames over a raw WebSocket: ``0{...}``
  open, ``40`` connect, ``42["event",data]`` events, ``42N[...]``/``43N[...]``
  acks, engine.io ping ``2`` answered with ``3``.
* ``bare``: the peers without a protocol (bare picows, websockets, Node ws) share a
  minimal JSON one: ``{"type":"echo"}`` echoed back, ``{"type":"sub"}`` answered by
  ``{"type":"ack"}``, ``{"type":"pub","data":X}`` broadcast as
  ``{"type":"msg","data":X}`` to a single room.

Publications carry ``{"i": N, "pad": "...", "t": SEND_TIME}``; the send time is
last so the receiver finds it with one ``rfind`` whatever the framing around it.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from staywire.protocol import binary

__all__ = ["BareProtocol", "ClientProtocol", "SocketIOProtocol", "StaywireProtocol", "get"]

CHANNEL = "bench"


class Sender(Protocol):
    def send_text(self, payload: bytes) -> None: ...


class ClientProtocol:
    name = "base"
    path = "/"
    subprotocol: str | None = None
    #: Prefixes of the frames the hot paths look for.
    msg_prefix = b'{"type":"msg"'
    echo_prefix = b'{"type":"echo"'
    ack_prefix = b'{"type":"ack"'
    ready_on_upgrade = True

    def handshake(self, conn: Sender, payload: bytes) -> bool | None:
        """A frame before the connection is usable: True when it now is, None on refusal."""
        return True

    def control(self, conn: Sender, payload: bytes) -> None:
        """A frame no phase expects: answer protocol heartbeats, ignore the rest."""

    def echo_request(self) -> bytes:
        raise NotImplementedError

    def sub_request(self, rid: int, since: tuple[str, int] | None) -> bytes:
        raise NotImplementedError

    def sub_ack(self, payload: bytes) -> tuple[str, int] | None:
        """The stream position an ack carries (Staywire), else ``("", 0)``."""
        return ("", 0)

    def is_error(self, payload: bytes) -> bool:
        return False

    def pub_request(self, rid: int, data: bytes) -> bytes:
        raise NotImplementedError

    def binary_pub_request(self, rid: int, data: bytes) -> bytes:
        """A binary frame publishing ``data`` (the binfanout workload)."""
        return data  # the bare peers broadcast a binary frame as it came

    @staticmethod
    def binary_payload_at(frame: bytes) -> int:
        """Where a received binary frame's data starts."""
        return 0


class StaywireProtocol(ClientProtocol):
    name = "staywire"
    path = "/ws"
    # v2 first: binary frames for binfanout; JSON stays text frames, as under v1.
    subprotocol = "staywire.v2, staywire.v1"
    echo_prefix = b'{"type":"pong"'
    ready_on_upgrade = False
    _ack = msgspec.json.Decoder(dict[str, Any])

    def handshake(self, conn: Sender, payload: bytes) -> bool | None:
        if payload.startswith(b'{"type":"welcome"'):
            return True
        if payload.startswith(b'{"type":"error"'):
            return None
        self.control(conn, payload)
        return False

    def control(self, conn: Sender, payload: bytes) -> None:
        if payload.startswith(b'{"type":"ping"'):
            # Answer the server's heartbeat with the same stamp.
            conn.send_text(b'{"type":"pong"' + payload[len(b'{"type":"ping"'):])

    def echo_request(self) -> bytes:
        return b'{"type":"ping","t":1}'

    def sub_request(self, rid: int, since: tuple[str, int] | None) -> bytes:
        if since and since[0]:
            return b'{"type":"sub","id":%d,"channel":"%s","since":{"epoch":"%s","offset":%d}}' % (
                rid, CHANNEL.encode(), since[0].encode(), since[1])
        return b'{"type":"sub","id":%d,"channel":"%s"}' % (rid, CHANNEL.encode())

    def sub_ack(self, payload: bytes) -> tuple[str, int] | None:
        ack = self._ack.decode(payload)
        return (str(ack.get("epoch", "")), int(ack.get("offset", 0)))

    def is_error(self, payload: bytes) -> bool:
        return payload.startswith(b'{"type":"error"')

    def pub_request(self, rid: int, data: bytes) -> bytes:
        return b'{"type":"pub","id":%d,"channel":"%s","data":%s}' % (rid, CHANNEL.encode(), data)

    def binary_pub_request(self, rid: int, data: bytes) -> bytes:
        return binary.encode_frame(b'{"type":"pub","id":%d,"channel":"%s"}'
                                   % (rid, CHANNEL.encode()), data)

    @staticmethod
    def binary_payload_at(frame: bytes) -> int:
        return 3 + (frame[1] << 8 | frame[2])  # protocol/binary.py: format, u16 length


class BareProtocol(ClientProtocol):
    name = "bare"

    def echo_request(self) -> bytes:
        return b'{"type":"echo","t":1}'

    def sub_request(self, rid: int, since: tuple[str, int] | None) -> bytes:
        return b'{"type":"sub"}'

    def pub_request(self, rid: int, data: bytes) -> bytes:
        return b'{"type":"pub","data":%s}' % data


class SocketIOProtocol(ClientProtocol):
    name = "socketio"
    path = "/socket.io/?EIO=4&transport=websocket"
    msg_prefix = b'42["msg"'
    echo_prefix = b'42["echo"'
    ack_prefix = b"43"
    ready_on_upgrade = False

    def handshake(self, conn: Sender, payload: bytes) -> bool | None:
        if payload.startswith(b"0{"):  # engine.io open: connect to the default namespace
            conn.send_text(b"40")
            return False
        if payload.startswith(b"40"):  # socket.io connect ack
            return True
        if payload.startswith(b"44"):  # connect error
            return None
        self.control(conn, payload)
        return False

    def control(self, conn: Sender, payload: bytes) -> None:
        if payload == b"2":  # engine.io ping
            conn.send_text(b"3")

    def echo_request(self) -> bytes:
        return b'42["echo",{"t":1}]'

    def sub_request(self, rid: int, since: tuple[str, int] | None) -> bytes:
        return b'42%d["sub"]' % rid

    def pub_request(self, rid: int, data: bytes) -> bytes:
        return b'42["pub",%s]' % data


_PROTOCOLS: dict[str, type[ClientProtocol]] = {
    "staywire": StaywireProtocol,
    "bare": BareProtocol,
    "socketio": SocketIOProtocol,
}


def get(name: str) -> ClientProtocol:
    return _PROTOCOLS[name]()
