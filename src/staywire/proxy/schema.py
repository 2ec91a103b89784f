"""The bodies Staywire sends to the application's backend, and the answers it accepts.

docs/proxy.md shows each one as a JSON schema. Requests are encoded from these
Structs; answers are decoded into them, so an answer with a wrong type, an unknown
field or two outcomes at once is refused here, before anything acts on it
(``forbid_unknown_fields``: a typo such as ``"chanels"`` must not silently grant
nothing). Every answer is an object with exactly one of ``result``, ``error`` or,
where it applies, ``disconnect``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from staywire.protocol.codes import ErrorCode
from staywire.protocol.envelope import CHANNEL_PATTERN

__all__ = [
    "BatchRequest",
    "BatchResponse",
    "ChannelRequest",
    "ChannelResponse",
    "ChannelResult",
    "ConnectRequest",
    "ConnectResponse",
    "ConnectResult",
    "Disconnect",
    "Failure",
    "RefreshRequest",
    "RefreshResponse",
    "RefreshResult",
    "RpcRequest",
    "RpcResponse",
    "RpcResult",
    "outcome",
]


_CHANNEL = re.compile(CHANNEL_PATTERN)


class _Request(msgspec.Struct, frozen=True):
    client: str
    ip: str
    headers: dict[str, str] = {}


class _Answer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


# ---------------------------------------------------------------- requests


class ConnectRequest(_Request, frozen=True):
    transport: str = "websocket"
    protocol: str = "staywire.v1"


class RefreshRequest(_Request, frozen=True):
    user: str = ""


class ChannelRequest(_Request, frozen=True):
    """A subscribe (no ``data``) or a publish (with the publication's ``data``)."""

    user: str = ""
    channel: str = ""
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # absent from a subscribe


class RpcRequest(_Request, frozen=True):
    user: str = ""
    method: str = ""
    data: msgspec.Raw = msgspec.Raw(b"null")


class BatchRequest(msgspec.Struct, frozen=True):
    """Subscribes sent together (``proxy_subscribe_batch``): the node joins the items'
    encoded bodies itself (``batch.py``); the backends decode it with this."""

    batch: list[ChannelRequest]


# ---------------------------------------------------------------- answers


class Failure(_Answer, frozen=True):
    """A refusal of one request: the client gets ``error {code, reason}``."""

    code: ErrorCode = ErrorCode.FORBIDDEN
    reason: str = ""


class Disconnect(_Answer, frozen=True):
    """A refusal of the connection itself: it is closed with ``code`` (4000-4999)."""

    code: int = 4503
    reason: str = ""

    def __post_init__(self) -> None:
        # Only the application range: the range carries the reconnect policy
        # (protocol/codes.py), and 1000-1015 belong to the WebSocket layer.
        if not 4000 <= self.code <= 4999:
            raise ValueError(f"disconnect code must be 4000-4999, got {self.code}")


class ConnectResult(_Answer, frozen=True):
    user: str
    expire_at: float | None = None  # Unix seconds; None: never expires
    channels: list[str] = []  # glob patterns the user may subscribe and publish to
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # the client's ``welcome.data``
    # Channels the server subscribes the connection to itself (welcome.server_subs).
    subscriptions: list[str] = []

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("user must be a non-empty string")
        for channel in self.subscriptions:
            # A name no client could subscribe to is off contract, like any wrong field.
            if not _CHANNEL.match(channel):
                raise ValueError(f"invalid channel name in subscriptions: {channel!r}")


class RefreshResult(_Answer, frozen=True):
    expired: bool = False
    expire_at: float | None = None

    def __post_init__(self) -> None:
        if not self.expired and self.expire_at is None:
            raise ValueError("a refresh result needs expire_at, or expired: true")


class ChannelResult(_Answer, frozen=True):
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # publish: the data to publish instead


class RpcResult(_Answer, frozen=True):
    data: msgspec.Raw = msgspec.Raw(b"null")


class _Response(_Answer, frozen=True):
    def __post_init__(self) -> None:
        # Checked while decoding, so an answer with no outcome (or two) is "malformed"
        # like any other off-contract answer.
        present = sum(getattr(self, name) is not None for name in self.__struct_fields__)
        if present != 1:
            names = "/".join(self.__struct_fields__)
            raise ValueError(f"the answer must hold exactly one of {names}, got {present}")


class ConnectResponse(_Response, frozen=True):
    result: ConnectResult | None = None
    disconnect: Disconnect | None = None


class RefreshResponse(_Response, frozen=True):
    result: RefreshResult | None = None
    disconnect: Disconnect | None = None


class ChannelResponse(_Response, frozen=True):
    result: ChannelResult | None = None
    error: Failure | None = None


class RpcResponse(_Response, frozen=True):
    result: RpcResult | None = None
    error: Failure | None = None


class BatchResponse(_Answer, frozen=True):
    """The answers to a ``BatchRequest``, in its order; each item is a ``ChannelResponse``,
    decoded on its own so that one bad answer fails only its own request."""

    batch: list[msgspec.Raw]


def outcome(answer: msgspec.Struct) -> Any:
    """The one outcome of a decoded answer (decoding already checked there is exactly one)."""
    for name in answer.__struct_fields__:
        value = getattr(answer, name)
        if value is not None:
            return value
    raise AssertionError("unreachable: _Response.__post_init__ checked it")
