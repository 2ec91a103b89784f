"""What a proxy handler receives and returns, whatever the web framework.

A handler gets a ``ProxyCall`` (the connection's client id, IP, forwarded headers
and cookies, and per event the user, channel, method, data) and returns one of the
answers below; ``encode`` turns it into the JSON body docs/proxy.md specifies, so
an application never writes those dicts by hand. Each answer is checked when it
is made: a handler that returns the wrong thing fails in the application's own
traceback, not as a "malformed" answer seen from Staywire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

import msgspec

from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import CHANNEL_PATTERN
from staywire.proxy import schema

_CHANNEL = re.compile(CHANNEL_PATTERN)

__all__ = ["Allow", "Deny", "Disconnect", "Identify", "ProxyCall", "Refresh", "decode_call",
           "decode_calls", "encode", "encode_batch"]


@dataclass(frozen=True, slots=True)
class ProxyCall:
    event: str  # connect, refresh, subscribe, publish, rpc
    client: str
    ip: str
    headers: dict[str, str]
    user: str = ""
    channel: str = ""
    method: str = ""
    data: Any = None  # publish: the publication; rpc: the params

    @property
    def cookies(self) -> dict[str, str]:
        """The forwarded ``Cookie`` header, parsed; a malformed one reads as no cookies."""
        raw = next((v for k, v in self.headers.items() if k.lower() == "cookie"), "")
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}


@dataclass(frozen=True, slots=True)
class Identify:
    """connect: this connection is ``user``; the server subscribes it to
    ``subscriptions`` itself (docs/protocol.md, *Server-side subscriptions*)."""

    user: str
    channels: list[str] = field(default_factory=list)
    expire_at: float | None = None
    data: Any = None
    subscriptions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("Identify needs a non-empty user")
        for channel in self.subscriptions:
            if not isinstance(channel, str) or not _CHANNEL.match(channel):
                raise ValueError(f"Identify: invalid channel name in subscriptions: {channel!r}")


@dataclass(frozen=True, slots=True)
class Refresh:
    """refresh: extend until ``expire_at``, or end the session (``expired=True``)."""

    expire_at: float | None = None
    expired: bool = False

    def __post_init__(self) -> None:
        if not self.expired and self.expire_at is None:
            raise ValueError("Refresh needs expire_at, or expired=True")


@dataclass(frozen=True, slots=True)
class Disconnect:
    """connect or refresh: close the connection with ``code`` (4000-4999)."""

    code: int = 4503
    reason: str = ""

    def __post_init__(self) -> None:
        if not 4000 <= self.code <= 4999:
            raise ValueError(f"a disconnect code is 4000-4999, got {self.code}")


@dataclass(frozen=True, slots=True)
class Allow:
    """subscribe, publish: allowed (publish: with ``data`` instead, when given);
    rpc: the result is ``data``."""

    data: Any = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class Deny:
    """subscribe, publish, rpc: refused; the client gets ``error {code, reason}``."""

    code: ErrorCode | str = ErrorCode.FORBIDDEN
    reason: str = ""

    def __post_init__(self) -> None:
        ErrorCode(self.code)  # ValueError for a code the clients would not know


_REQUESTS: dict[str, type[Any]] = {
    "connect": schema.ConnectRequest, "refresh": schema.RefreshRequest,
    "subscribe": schema.ChannelRequest, "publish": schema.ChannelRequest,
    "rpc": schema.RpcRequest,
}
_ALLOWED: dict[str, tuple[type, ...]] = {
    "connect": (Identify, Disconnect), "refresh": (Refresh, Disconnect),
    "subscribe": (Allow, Deny), "publish": (Allow, Deny), "rpc": (Allow, Deny),
}


def decode_call(event: str, body: bytes) -> ProxyCall:
    """The request body of ``event`` as a ``ProxyCall``; ``msgspec`` errors if off contract."""
    req = msgspec.json.decode(body, type=_REQUESTS[event])
    data = getattr(req, "data", None)
    decoded = msgspec.json.decode(data) if isinstance(data, msgspec.Raw) else None
    return ProxyCall(event, req.client, req.ip, dict(req.headers), getattr(req, "user", ""),
                     getattr(req, "channel", ""), getattr(req, "method", ""), decoded)


class _Probe(msgspec.Struct, frozen=True):
    """Is a body a batch? Its other fields (a single request's) are skipped, not read."""

    batch: list[schema.ChannelRequest] | msgspec.UnsetType = msgspec.UNSET


_probe = msgspec.json.Decoder(_Probe).decode


def decode_calls(event: str, body: bytes) -> tuple[list[ProxyCall], bool]:
    """The calls of a body, and whether it was a batch (``{"batch": [...]}``, docs/proxy.md,
    *Batches*; subscribe only). ``msgspec`` errors if off contract."""
    if event == "subscribe":
        probe = _probe(body)
        if probe.batch is not msgspec.UNSET:
            return [ProxyCall(event, r.client, r.ip, dict(r.headers), r.user, r.channel)
                    for r in probe.batch], True
    return [decode_call(event, body)], False


def encode_batch(event: str, answers: list[bytes]) -> bytes:
    """The answer to a batch: each item's encoded answer, in the batch's order."""
    return b'{"batch":[%s]}' % b",".join(answers)


def encode(event: str, answer: object) -> bytes:
    """The JSON answer to ``event``; ``TypeError`` if the handler returned the wrong kind."""
    if not isinstance(answer, _ALLOWED[event]):
        names = " or ".join(t.__name__ for t in _ALLOWED[event])
        raise TypeError(f"a {event} handler returns {names}, got {type(answer).__name__}")
    body: dict[str, Any]
    if isinstance(answer, Identify):
        result: dict[str, Any] = {"user": answer.user, "channels": answer.channels,
                                  "expire_at": answer.expire_at}
        if answer.data is not None:
            result["data"] = answer.data
        if answer.subscriptions:
            result["subscriptions"] = answer.subscriptions
        body = {"result": result}
    elif isinstance(answer, Refresh):
        body = {"result": {"expired": True} if answer.expired
                else {"expire_at": answer.expire_at}}
    elif isinstance(answer, Disconnect):
        body = {"disconnect": {"code": answer.code, "reason": answer.reason}}
    elif isinstance(answer, Deny):
        body = {"error": {"code": str(ErrorCode(answer.code)), "reason": answer.reason}}
    else:
        assert isinstance(answer, Allow)
        if event == "rpc":
            body = {"result": {"data": None if answer.data is msgspec.UNSET else answer.data}}
        elif answer.data is msgspec.UNSET or event == "subscribe":
            body = {"result": {}}
        else:
            body = {"result": {"data": answer.data}}
    return msgspec.json.encode(body)
