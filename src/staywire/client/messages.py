"""The client's side of the envelope codec (docs/protocol.md).

Why a separate codec from the server's: the server must reject anything off
contract, while a client must keep working against a newer server, so here
unknown fields are ignored and an unknown ``type`` is skipped, not fatal.
Outbound envelopes are built as dicts with only the fields that are set,
because the server forbids unknown fields and ``null`` where a field is absent.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from staywire.protocol import binary
from staywire.protocol.stream import ChannelPosition

__all__ = [
    "Ack",
    "Drain",
    "Error",
    "Join",
    "Leave",
    "Msg",
    "Ping",
    "Pong",
    "Result",
    "ServerMessage",
    "Subscribed",
    "Unsubscribed",
    "Welcome",
    "BinaryInfo",
    "decode",
    "binary_info",
    "encode_auth",
    "encode_ping",
    "encode_presence",
    "encode_pong",
    "encode_pub",
    "encode_pub_binary",
    "encode_rpc",
    "encode_rpc_binary",
    "encode_sub",
    "encode_unsub",
]


class _Base(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class RateLimit(msgspec.Struct, frozen=True):
    """The server's per-connection limits: messages and bytes per second, and bursts."""

    messages: float
    burst: float
    bytes: float
    bytes_burst: float


class BinaryInfo(msgspec.Struct, frozen=True):
    """``welcome.binary`` (protocol v2): the bounds of binary data and transfers."""

    max_data_size: int
    max_transfer_size: int
    transfer_timeout: float
    transfer_window: int = 8


class Welcome(_Base, frozen=True, tag="welcome"):
    client: str
    session: str
    ping_interval: float = 25.0
    pong_timeout: float = 10.0
    expires_at: float | None = None
    resumed: bool = False
    resume_failed: str | None = None  # why a requested session was not resumed
    subs: list[ChannelPosition] = []
    rate_limit: RateLimit | None = None
    data: Any = None  # the application's backend's custom data (connect proxy), if any
    server_subs: list[ChannelPosition] = []  # subscribed by the server (connect proxy)
    binary: dict[str, Any] | None = None  # protocol v2: max_data_size, transfers' limits


class Ack(_Base, frozen=True, tag="ack"):
    id: int
    epoch: str | None = None
    offset: int | None = None
    recovered: bool | None = None
    duplicate: bool = False


class Result(_Base, frozen=True, tag="result"):
    id: int
    data: Any = None
    encoding: str | None = None  # "base64": bytes answered to a v1 connection


class Msg(_Base, frozen=True, tag="msg"):
    channel: str
    epoch: str
    offset: int
    data: Any = None
    encoding: str | None = None  # "base64": a binary publication to a v1 connection
    chunk: Any = None  # a piece of a transfer (protocol.binary.Chunk, or its JSON under v1)


class Ping(_Base, frozen=True, tag="ping"):
    t: Any = None


class Pong(_Base, frozen=True, tag="pong"):
    t: Any = None


class Error(_Base, frozen=True, tag="error"):
    code: str
    reason: str = ""
    id: int | None = None
    channel: str | None = None  # without an id: the server ended this subscription


class Subscribed(_Base, frozen=True, tag="subscribed"):
    """The server subscribed this open connection to ``channel`` (the server API), at
    ``(epoch, offset)``: its ``msg``s follow from there."""

    channel: str
    epoch: str
    offset: int


class Unsubscribed(_Base, frozen=True, tag="unsubscribed"):
    """The server took this connection out of ``channel`` (the server API)."""

    channel: str


class Drain(_Base, frozen=True, tag="drain"):
    reconnect_in_ms: float = 0.0


class MemberInfo(msgspec.Struct, frozen=True):
    """A member of a presence channel, as the server sends it."""

    client: str
    user: str = ""
    info: Any = None


class Join(_Base, frozen=True, tag="join"):
    channel: str
    member: MemberInfo


class Leave(_Base, frozen=True, tag="leave"):
    channel: str
    member: MemberInfo


ServerMessage = (Welcome | Ack | Result | Msg | Ping | Pong | Error | Drain | Subscribed
                 | Unsubscribed | Join | Leave)
_decoder: Final = msgspec.json.Decoder(ServerMessage)
_encoder: Final = msgspec.json.Encoder()


def decode(payload: bytes) -> ServerMessage | None:
    """Decode one text frame; ``None`` for a message this client does not understand."""
    try:
        return _decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def binary_info(welcome: Welcome) -> BinaryInfo | None:
    """``welcome.binary`` typed; None under v1 (or when it is not understood)."""
    if welcome.binary is None:
        return None
    try:
        return msgspec.convert(welcome.binary, BinaryInfo)
    except msgspec.ValidationError:
        return None


def encode_data(data: Any) -> bytes:
    """Application data as JSON; raises ``TypeError`` for what JSON cannot hold, early."""
    try:
        return _encoder.encode(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"data is not JSON-serializable: {exc}") from None


def encode_auth(token: str) -> bytes:
    return _encoder.encode({"type": "auth", "token": token})


def encode_sub(request_id: int, channel: str, since: tuple[str, int] | None) -> bytes:
    msg: dict[str, Any] = {"type": "sub", "id": request_id, "channel": channel}
    if since is not None:
        msg["since"] = {"epoch": since[0], "offset": since[1]}
    return _encoder.encode(msg)


def encode_unsub(request_id: int, channel: str) -> bytes:
    return _encoder.encode({"type": "unsub", "id": request_id, "channel": channel})


def encode_pub(request_id: int, channel: str, data: bytes, key: str) -> bytes:
    """``data`` is already JSON (the outbox keeps encoded bytes): it is spliced in as is."""
    return _encoder.encode(
        {"type": "pub", "id": request_id, "channel": channel, "data": msgspec.Raw(data), "key": key}
    )


def encode_pub_binary(request_id: int, channel: str, data: bytes, key: str,
                      chunk: bytes | None = None) -> bytes:
    """A binary ``pub`` frame (protocol v2): the header, then ``data`` unchanged. With
    ``chunk`` (the JSON of a transfer's chunk object) it carries that instead of the key:
    the server derives a chunk's key."""
    if chunk is not None:
        header = b'{"type":"pub","id":%d,"channel":"%s","chunk":%s}' % (
            request_id, channel.encode(), chunk)  # a checked channel name, a chunk's JSON
        return binary.encode_frame(header, data)
    return binary.encode_frame(_encoder.encode(
        {"type": "pub", "id": request_id, "channel": channel, "key": key}), data)


def encode_rpc_binary(request_id: int, method: str, data: bytes) -> bytes:
    return binary.encode_frame(_encoder.encode(
        {"type": "rpc", "id": request_id, "method": method}), data)


def encode_rpc(request_id: int, method: str, data: bytes) -> bytes:
    return _encoder.encode(
        {"type": "rpc", "id": request_id, "method": method, "data": msgspec.Raw(data)}
    )


def encode_presence(request_id: int, channel: str, stats: bool) -> bytes:
    kind = "presence_stats" if stats else "presence"
    return _encoder.encode({"type": kind, "id": request_id, "channel": channel})


def encode_ping(t: float) -> bytes:
    return _encoder.encode({"type": "ping", "t": t})


def encode_pong(t: Any) -> bytes:
    return _encoder.encode({"type": "pong"} if t is None else {"type": "pong", "t": t})
