"""The server API's methods as ``Call`` values: the body to send and the reply type to expect.

Both clients (``sync.py``, ``aio.py``) and ``Batch`` build their requests here, so a
method's parameters are spelled once. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode
from typing import Any, Generic, TypeVar

import msgspec

from staywire.api import schema as s
from staywire.exceptions import ApiError

__all__ = ["Batch", "Call", "content_type", "decode_reply", "encode_body", "target"]

R = TypeVar("R", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()
_BYTES = (bytes, bytearray, memoryview)
_error_decoder = msgspec.json.Decoder(s.ErrorReply)


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    method: str
    params: dict[str, Any]
    reply: type[R]
    # Binary data (a publish of bytes): the body as it is, the params in the query.
    raw: bytes | None = None


def encode_body(call: Call[Any]) -> bytes:
    return _encoder.encode(call.params) if call.raw is None else call.raw


def target(call: Call[Any]) -> str:
    """The path after the API prefix: ``/api/<method>``, with the query of a binary call."""
    if call.raw is None:
        return f"/api/{call.method}"
    return f"/api/{call.method}?{urlencode(call.params)}"


def content_type(call: Call[Any]) -> str:
    return "application/json" if call.raw is None else "application/octet-stream"


def _given(**params: Any) -> dict[str, Any]:
    """The parameters that were given: a ``None`` is the server's default, left out."""
    return {k: v for k, v in params.items() if v is not None}


def decode_reply(call: Call[R], status: int, body: bytes) -> R:
    """The typed reply of a 200, else the ``ApiError`` the server answered."""
    if status == 200:
        try:
            return msgspec.json.decode(body, type=call.reply)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError("internal", f"unreadable {call.method} reply: {exc}", status) from None
    try:
        error = _error_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ApiError("internal", body[:200].decode(errors="replace"), status) from None
    raise ApiError(error.code, error.reason, status)


def publish(channel: str, data: Any, key: str | None = None) -> Call[s.PublishReply]:
    """``data``: any JSON value, or bytes (``bytes``, ``bytearray``, ``memoryview``) to
    publish as binary data (``application/octet-stream``, docs/api.md)."""
    if isinstance(data, _BYTES):
        return Call("publish", _given(channel=channel, key=key), s.PublishReply,
                    raw=bytes(data))
    return Call("publish", _given(channel=channel, data=data, key=key), s.PublishReply)


def broadcast(channels: list[str], data: Any, key: str | None = None
              ) -> Call[s.BroadcastReply]:
    if isinstance(data, _BYTES):
        raise TypeError("broadcast takes JSON data; publish bytes to each channel instead")
    return Call("broadcast", _given(channels=list(channels), data=data, key=key),
                s.BroadcastReply)


def history(channel: str, since: tuple[str, int] | None = None, limit: int | None = None,
            reverse: bool = False) -> Call[s.HistoryReply]:
    position = {"epoch": since[0], "offset": since[1]} if since is not None else None
    return Call("history", _given(channel=channel, since=position, limit=limit,
                                  reverse=reverse or None), s.HistoryReply)


def presence(channel: str, limit: int | None = None) -> Call[s.PresenceReply]:
    return Call("presence", _given(channel=channel, limit=limit), s.PresenceReply)


def presence_stats(channel: str) -> Call[s.PresenceStatsReply]:
    return Call("presence_stats", {"channel": channel}, s.PresenceStatsReply)


def channels(pattern: str, limit: int | None = None) -> Call[s.ChannelsReply]:
    return Call("channels", _given(pattern=pattern, limit=limit), s.ChannelsReply)


def info() -> Call[s.InfoReply]:
    return Call("info", {}, s.InfoReply)


def disconnect(user: str, *, code: int | None = None, reason: str | None = None,
               reconnect: bool | None = None, client: str | None = None
               ) -> Call[s.DisconnectReply]:
    return Call("disconnect", _given(user=user, code=code, reason=reason, reconnect=reconnect,
                                     client=client), s.DisconnectReply)


def refresh(user: str, expire_at: float | None) -> Call[s.RefreshReply]:
    # Sent even when None: null is "no expiry".
    return Call("refresh", {"user": user, "expire_at": expire_at}, s.RefreshReply)


def subscribe(user: str, channel: str) -> Call[s.SubscribeReply]:
    return Call("subscribe", {"user": user, "channel": channel}, s.SubscribeReply)


def unsubscribe(user: str, channel: str) -> Call[s.UnsubscribeReply]:
    return Call("unsubscribe", {"user": user, "channel": channel}, s.UnsubscribeReply)


class Batch:
    """Commands for one ``batch`` request, run by the server in this order.

    ``Batch().publish("a", 1).history("a", limit=1)``; the client's ``batch()`` answers
    one typed reply (or ``ApiError``) per command."""

    def __init__(self) -> None:
        self.calls: list[Call[Any]] = []

    def __len__(self) -> int:
        return len(self.calls)

    def _add(self, call: Call[Any]) -> Batch:
        if call.raw is not None:
            raise TypeError("a batch is JSON: publish bytes on their own (publish())")
        self.calls.append(call)
        return self

    def publish(self, channel: str, data: Any, *, key: str | None = None) -> Batch:
        return self._add(publish(channel, data, key))

    def broadcast(self, channels: list[str], data: Any, *, key: str | None = None) -> Batch:
        return self._add(broadcast(channels, data, key))

    def history(self, channel: str, *, since: tuple[str, int] | None = None,
                limit: int | None = None, reverse: bool = False) -> Batch:
        return self._add(history(channel, since, limit, reverse))

    def presence(self, channel: str, *, limit: int | None = None) -> Batch:
        return self._add(presence(channel, limit))

    def presence_stats(self, channel: str) -> Batch:
        return self._add(presence_stats(channel))

    def channels(self, pattern: str, *, limit: int | None = None) -> Batch:
        return self._add(channels(pattern, limit))

    def info(self) -> Batch:
        return self._add(info())

    def disconnect(self, user: str, *, code: int | None = None, reason: str | None = None,
                   reconnect: bool | None = None, client: str | None = None) -> Batch:
        return self._add(disconnect(user, code=code, reason=reason, reconnect=reconnect,
                                    client=client))

    def refresh(self, user: str, expire_at: float | None) -> Batch:
        return self._add(refresh(user, expire_at))

    def subscribe(self, user: str, channel: str) -> Batch:
        return self._add(subscribe(user, channel))

    def unsubscribe(self, user: str, channel: str) -> Batch:
        return self._add(unsubscribe(user, channel))

    def call(self) -> Call[s.BatchReply]:
        if not self.calls:
            raise ValueError("an empty batch")
        return Call("batch", {"commands": [
            {"method": c.method, "params": c.params} for c in self.calls]}, s.BatchReply)

    def results(self, reply: s.BatchReply) -> list[Any]:
        """Each command's typed reply, or the ``ApiError`` it failed with."""
        out: list[Any] = []
        for call, item in zip(self.calls, reply.replies, strict=True):
            if item.error is not None:
                out.append(ApiError(item.error.code, item.error.reason, 200))
            else:
                out.append(msgspec.convert(item.result, call.reply))
        return out
