"""The envelope codec: typed decoding of every inbound message, and outbound encoders.

Inbound messages are decoded by msgspec straight into frozen structs, so a
message either matches the contract in docs/protocol.md (field types, ranges,
channel pattern, no unknown fields) or raises ``InvalidMessage`` with a reason
that is safe to send back. ``data`` stays as the raw JSON bytes the client
sent: the server never decodes application data it only forwards.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Final

import msgspec

from staywire.protocol.codes import ErrorCode
from staywire.protocol.stream import MAX_ID, Position

__all__ = [
    "Auth",
    "Inbound",
    "InvalidMessage",
    "Ping",
    "Pong",
    "PresenceQuery",
    "PresenceStatsQuery",
    "Pub",
    "Rpc",
    "Sub",
    "Unsub",
    "decode",
    "encode",
    "msg_envelope",
    "msg_envelope_base64",
]

SUBPROTOCOL: Final = "staywire.v1"  # Sec-WebSocket-Protocol of protocol v1
# Protocol v2: v1 plus binary data in binary frames (protocol/binary.py). A client offers
# both, v2 first; the server selects v2 when it is offered and binary is enabled.
SUBPROTOCOL_V2: Final = "staywire.v2"
# What a client offers, best first: a server without binary selects v1.
SUBPROTOCOLS: Final = (SUBPROTOCOL_V2, SUBPROTOCOL)
# \Z, not $: Python's $ also matches before a final newline ("room\n"). The browser
# client gets it as a JS regular expression (protocol/jsgen.py), where $ is the end.
CHANNEL_PATTERN: Final = r"^[A-Za-z0-9_\-:.@/=]{1,128}\Z"

Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
Channel = Annotated[str, msgspec.Meta(pattern=CHANNEL_PATTERN)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
Method = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
Stamp = int | float | None


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class Auth(_Base, tag="auth", frozen=True):
    token: Token


class Sub(_Base, tag="sub", frozen=True):
    id: Id
    channel: Channel
    since: Position | None = None


class Unsub(_Base, tag="unsub", frozen=True):
    id: Id
    channel: Channel


class Pub(_Base, tag="pub", frozen=True):
    id: Id
    channel: Channel
    data: msgspec.Raw
    key: Key | None = None


class Rpc(_Base, tag="rpc", frozen=True):
    id: Id
    method: Method
    data: msgspec.Raw = msgspec.Raw(b"null")


class PresenceQuery(_Base, tag="presence", frozen=True):
    """Who is subscribed to ``channel`` (a channel with the ``presence`` option)."""

    id: Id
    channel: Channel


class PresenceStatsQuery(_Base, tag="presence_stats", frozen=True):
    """How many clients and users are subscribed to ``channel``."""

    id: Id
    channel: Channel


class Ping(_Base, tag="ping", frozen=True):
    t: Stamp = None


class Pong(_Base, tag="pong", frozen=True):
    t: Stamp = None


Inbound = Auth | Sub | Unsub | Pub | Rpc | PresenceQuery | PresenceStatsQuery | Ping | Pong
_decoder = msgspec.json.Decoder(Inbound)
_KNOWN_TYPES: Final = frozenset({"auth", "sub", "unsub", "pub", "rpc", "presence",
                                 "presence_stats", "ping", "pong"})


class InvalidMessage(Exception):
    """A message that does not match the contract; ``reason`` is safe to send back."""

    def __init__(self, code: ErrorCode, reason: str, request_id: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.request_id = request_id


def salvage_id(payload: bytes) -> int | None:
    """The ``id`` of an invalid request, when there is a usable one, for the error reply."""
    try:
        obj = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(obj, dict):
        rid = obj.get("id")
        if type(rid) is int and 1 <= rid <= MAX_ID:
            return rid
    return None


def decode(payload: bytes) -> Inbound:
    """Decode one text frame's payload (already known to be UTF-8) into a request."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        reason = str(exc)
        rid = salvage_id(payload)
        if "Invalid value" in reason and "$.type" in reason:
            return _unknown_type(payload, rid)
        if reason.startswith("Object missing required field `type`"):
            raise InvalidMessage(ErrorCode.BAD_REQUEST, "missing field 'type'", rid) from None
        raise InvalidMessage(ErrorCode.BAD_REQUEST, reason, rid) from None
    except msgspec.DecodeError:
        raise InvalidMessage(ErrorCode.BAD_REQUEST, "not a JSON object") from None
    except RecursionError:
        # msgspec refuses nesting deeper than its limit with RecursionError, not a
        # DecodeError: a hostile client must get an error reply, not a 1011 close.
        raise InvalidMessage(ErrorCode.BAD_REQUEST, "JSON nested too deeply") from None


def _unknown_type(payload: bytes, rid: int | None) -> Inbound:
    # msgspec checks the tag as soon as it reads it, so the rest may still be broken
    # JSON (`{"type":""` fails as a bad tag before it fails as truncated input).
    try:
        obj = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        raise InvalidMessage(ErrorCode.BAD_REQUEST, "not a JSON object", rid) from None
    kind = obj.get("type") if isinstance(obj, dict) else None
    if isinstance(kind, str) and kind not in _KNOWN_TYPES:
        raise InvalidMessage(ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:32]!r}", rid)
    raise InvalidMessage(ErrorCode.BAD_REQUEST, "field 'type' must be a string", rid)


_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    """Encode an outbound envelope (a dict); field order is kept for readable traces."""
    return _encoder.encode(obj)


def msg_envelope(channel: str, epoch: str, offset: int, data: bytes) -> bytes:
    """The ``msg`` envelope, built once per publication and shared by every subscriber.

    ``channel`` and ``epoch`` are validated names (no characters that JSON escapes),
    and ``data`` is JSON that was validated when it was published, so splicing is safe
    and skips a decode/encode round trip of the application's data."""
    return b'{"type":"msg","channel":"%s","epoch":"%s","offset":%d,"data":%s}' % (
        channel.encode(),
        epoch.encode(),
        offset,
        data,
    )


def msg_envelope_base64(channel: str, epoch: str, offset: int, data: bytes,
                        chunk: bytes | None = None) -> bytes:
    """The text ``msg`` of a binary publication, for a v1 connection (which never gets a
    binary frame): ``data`` is the base64 of the bytes, and ``"encoding": "base64"`` says
    so. ``chunk`` is the validated chunk header JSON of a transfer's piece, when any."""
    head = b'{"type":"msg","channel":"%s","epoch":"%s","offset":%d,"data":"%s","encoding":"base64"' % (
        channel.encode(), epoch.encode(), offset, base64.b64encode(data))
    if chunk is None:
        return head + b"}"
    return head + b',"chunk":' + chunk + b"}"
