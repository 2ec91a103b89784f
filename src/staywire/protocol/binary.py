"""Binary frames of protocol v2: an explicit header, then the payload as sent.

A binary frame is never guessed from its content. It always reads::

    byte 0      format, 0x01
    bytes 1-2   N, the header's length, unsigned 16-bit big-endian (1..MAX_HEADER)
    N bytes     the header: one JSON object (UTF-8) with a string ``type``
    the rest    the payload: the application's bytes, unchanged (may be empty)

The header carries what the text envelope carries, less ``data``: ``pub {id,
channel, key?, chunk?}`` and ``rpc {id, method}`` from a client; ``msg {channel,
epoch, offset, chunk?}`` and ``result {id}`` from the server. ``chunk`` marks one
piece of a transfer (docs/protocol.md, *Transfers*). Headers are decoded by msgspec
into frozen structs with the same field rules as text messages, so a binary request
is validated exactly as a text one is. This module has no I/O.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import Channel, Id, InvalidMessage, Key, Method, salvage_id
from staywire.protocol.stream import MAX_ID

__all__ = [
    "FORMAT",
    "MAX_HEADER",
    "BinaryInbound",
    "BinaryMsg",
    "BinaryPub",
    "BinaryResult",
    "BinaryRpc",
    "BytesPub",
    "BytesRpc",
    "Chunk",
    "decode_frame",
    "decode_request",
    "decode_server_frame",
    "encode_frame",
    "msg_frame",
    "result_frame",
]

FORMAT: Final = 0x01  # the only header format of protocol v2
MAX_HEADER: Final = 2048  # bytes of header JSON: a channel, a key and a chunk's fields fit
MAX_META: Final = 1024  # bytes of a transfer's ``meta`` JSON (its first chunk only)

TransferId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}\Z")]
Size = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
Digest = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]
AbortCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}\Z")]


class Chunk(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One piece of a transfer: where it sits, and on the last one, the whole's digest.

    ``seq`` counts chunks from 0 and ``at`` is the byte position of this chunk's first
    byte in the whole payload. The first chunk (seq 0) may carry ``size`` (the total,
    when known) and ``meta`` (the application's JSON: a file name, a content type).
    The last carries ``last: true`` and ``sha256``, the hex SHA-256 of the whole
    payload. ``abort`` is sent by the server only: the transfer ended unfinished, and
    the code says why (``transfer_timeout``, ``transfer_corrupt``)."""

    transfer: TransferId
    seq: Size
    at: Size
    last: bool = False
    size: Size | None = None
    sha256: Digest | None = None
    meta: msgspec.Raw = msgspec.Raw()  # empty: none given
    abort: AbortCode | None = None

    def problem(self) -> str | None:
        """The rule of a chunk that its field types alone do not say, when broken."""
        if (self.seq == 0) != (self.at == 0):
            return "chunk 'at' must be 0 exactly on seq 0"
        if self.last != (self.sha256 is not None) and self.abort is None:
            return "the last chunk, and only it, carries 'sha256'"
        if self.seq and (self.meta or self.size is not None):
            return "'meta' and 'size' belong to the first chunk (seq 0)"
        if len(self.meta) > MAX_META:
            return f"chunk 'meta' is over {MAX_META} bytes"
        return None


class _Header(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class BinaryPub(_Header, tag="pub", frozen=True):
    id: Id
    channel: Channel
    key: Key | None = None
    chunk: Chunk | None = None


class BinaryRpc(_Header, tag="rpc", frozen=True):
    id: Id
    method: Method


BinaryInbound = BinaryPub | BinaryRpc
_decoder = msgspec.json.Decoder(BinaryInbound)
_KNOWN_TYPES: Final = frozenset({"pub", "rpc"})


def decode_frame(frame: bytes) -> tuple[BinaryInbound, memoryview]:
    """A client's binary frame: its validated header, and a view of its payload.

    Raises ``InvalidMessage`` for a frame whose framing or header breaks the contract:
    a short frame, another format byte, a header length past the frame, a header that
    is not a JSON object of a known binary ``type``, or a chunk that breaks its rules."""
    size = len(frame)
    if size < 3:
        raise InvalidMessage(ErrorCode.BAD_REQUEST, "binary frame shorter than its 3-byte prefix")
    if frame[0] != FORMAT:
        raise InvalidMessage(ErrorCode.BAD_REQUEST,
                             f"unknown binary header format 0x{frame[0]:02x}")
    length = frame[1] << 8 | frame[2]
    if length == 0 or length > MAX_HEADER:
        raise InvalidMessage(ErrorCode.BAD_REQUEST,
                             f"binary header length {length} is not in 1..{MAX_HEADER}")
    if 3 + length > size:
        raise InvalidMessage(ErrorCode.BAD_REQUEST,
                             f"binary header length {length} runs past the frame ({size} bytes)")
    view = memoryview(frame)
    raw = bytes(view[3:3 + length])
    try:
        header = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        reason = str(exc)
        rid = _salvage(raw)
        if ("Invalid value" in reason and "$.type" in reason) or reason.startswith(
                "Object missing required field `type`"):
            raise InvalidMessage(*_type_problem(raw), rid) from None
        raise InvalidMessage(ErrorCode.BAD_REQUEST, f"binary header: {reason}", rid) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise InvalidMessage(ErrorCode.BAD_REQUEST, "binary header is not a JSON object") from None
    if isinstance(header, BinaryPub) and header.chunk is not None:
        problem = header.chunk.problem()
        if problem is None and header.chunk.abort is not None:
            problem = "'abort' is sent by the server only"
        if problem is not None:
            raise InvalidMessage(ErrorCode.BAD_REQUEST, problem, header.id)
    return header, view[3 + length:]


class BytesPub(msgspec.Struct, frozen=True):
    """A binary ``pub`` as the server handles it: the header's fields and the payload.

    ``chunk`` is the chunk header re-encoded from its validated struct (canonical JSON,
    safe to splice into the subscribers' ``msg``), or None."""

    id: int
    channel: str
    data: bytes
    key: str | None = None
    chunk: bytes | None = None


class BytesRpc(msgspec.Struct, frozen=True):
    """A binary ``rpc``: the method is called with the payload as its params."""

    id: int
    method: str
    data: bytes


_chunk_encoder = msgspec.json.Encoder()


def decode_request(frame: bytes) -> BytesPub | BytesRpc:
    """A client's binary frame as a request (``decode_frame``, then the payload copied
    out once: it outlives the frame, in history)."""
    header, payload = decode_frame(frame)
    if isinstance(header, BinaryPub):
        chunk = header.chunk
        return BytesPub(header.id, header.channel, bytes(payload), header.key,
                        None if chunk is None else _chunk_encoder.encode(chunk))
    return BytesRpc(header.id, header.method, bytes(payload))


class _ServerHeader(msgspec.Struct, frozen=True, tag_field="type"):
    pass  # unknown fields allowed: a client reads what it knows of a newer server's


class BinaryMsg(_ServerHeader, tag="msg", frozen=True):
    channel: str
    epoch: str
    offset: int
    chunk: Chunk | None = None


class BinaryResult(_ServerHeader, tag="result", frozen=True):
    id: int


_server_decoder = msgspec.json.Decoder(BinaryMsg | BinaryResult)


def decode_server_frame(frame: bytes) -> tuple[BinaryMsg | BinaryResult, memoryview]:
    """A server's binary frame, as a client reads it: its header and a view of its payload.

    Raises ``ValueError`` for a frame that breaks the framing or has another ``type``."""
    if len(frame) < 3 or frame[0] != FORMAT:
        raise ValueError("not a binary frame of format 0x01")
    length = frame[1] << 8 | frame[2]
    if not 0 < length <= MAX_HEADER or 3 + length > len(frame):
        raise ValueError(f"binary header length {length} does not fit the frame")
    view = memoryview(frame)
    try:
        header = _server_decoder.decode(view[3:3 + length])
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise ValueError(f"binary header: {exc}") from None
    return header, view[3 + length:]


def _salvage(raw: bytes) -> int | None:
    try:
        return salvage_id(raw)
    except UnicodeDecodeError:
        return None


def _type_problem(raw: bytes) -> tuple[ErrorCode, str]:
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return ErrorCode.BAD_REQUEST, "binary header is not a JSON object"
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind is None:
        return ErrorCode.BAD_REQUEST, "binary header is missing field 'type'"
    if isinstance(kind, str) and kind not in _KNOWN_TYPES:
        return ErrorCode.UNKNOWN_TYPE, f"unknown binary type {kind[:32]!r}"
    return ErrorCode.BAD_REQUEST, "binary header field 'type' must be a string"


def encode_frame(header: bytes, payload: bytes | bytearray | memoryview) -> bytes:
    """Frame an encoded header (JSON object bytes, at most ``MAX_HEADER``) and a payload."""
    length = len(header)
    if not 0 < length <= MAX_HEADER:
        raise ValueError(f"binary header of {length} bytes is not in 1..{MAX_HEADER}")
    return b"".join((bytes((FORMAT, length >> 8, length & 0xFF)), header, payload))


def msg_frame(channel: str, epoch: str, offset: int, data: bytes,
              chunk: bytes | None = None) -> bytes:
    """The binary ``msg`` of a publication, built once and shared by every subscriber.

    ``channel`` and ``epoch`` are validated names and ``chunk`` is the chunk's JSON as
    validated when it was published, so splicing them is safe."""
    if chunk is None:
        header = b'{"type":"msg","channel":"%s","epoch":"%s","offset":%d}' % (
            channel.encode(), epoch.encode(), offset)
    else:
        header = b'{"type":"msg","channel":"%s","epoch":"%s","offset":%d,"chunk":%s}' % (
            channel.encode(), epoch.encode(), offset, chunk)
    return encode_frame(header, data)


def result_frame(request_id: int, data: bytes | bytearray | memoryview) -> bytes:
    """The binary ``result`` of an RPC whose handler answered bytes."""
    return encode_frame(b'{"type":"result","id":%d}' % request_id, data)
