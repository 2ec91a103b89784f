"""Close codes and error codes: the one place both vocabularies are defined.

Two vocabularies, as in centrifuge: an *error* is a reply to one request and the
connection lives on; a *close code* ends the connection.  Close codes carry the
reconnect policy in their range, so every client decides the same way:

* 1000-1015 (RFC 6455 section 7.4.1): 1000 is final; the others reconnect.
* 4000-4499: application codes that mean "reconnect with backoff".
* 4500-4999: terminal: "do not reconnect without new credentials or user action".

The browser client's constants are generated from this module by
``python -m staywire.protocol.jsgen`` (protocol/jsgen.py) and a test checks that they agree.
"""

from __future__ import annotations

import enum

__all__ = ["CloseCode", "ErrorCode", "Reconnect", "reconnect_policy", "valid_close_code"]


class Reconnect(enum.Enum):
    """What a client must do after a close with a given code."""

    NEVER = "never"  # terminal: surface the close to the application
    BACKOFF = "backoff"  # reconnect with exponential backoff and jitter
    NEW_TOKEN = "new_token"  # fetch a fresh token, then reconnect


class CloseCode(enum.IntEnum):
    """Every close code Staywire sends, with the reason it is sent."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002  # bad framing: RSV bits, bad opcode, bad close code
    ABNORMAL = 1006  # never sent: no close frame was received (network failure)
    INVALID_TEXT = 1007  # a text frame that is not valid UTF-8
    POLICY_VIOLATION = 1008  # never sent by Staywire: other servers and proxies; policy only
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # never carries details of the failure
    SERVICE_RESTART = 1012  # graceful drain
    TRY_AGAIN_LATER = 1013  # the application's backend (connect proxy) could not answer

    HEARTBEAT_TIMEOUT = 4000
    SLOW_CONSUMER = 4008
    FORCE_RECONNECT = 4010  # the server API's disconnect, with reconnect
    RATE_LIMITED = 4029
    TOKEN_EXPIRED = 4401

    PROTOCOL_VIOLATION = 4500
    UNAUTHORIZED = 4501
    FORBIDDEN = 4503
    AUTH_TIMEOUT = 4508
    FORCE_DISCONNECT = 4510  # the server API's disconnect, without reconnect

    @property
    def reconnect(self) -> Reconnect:
        return reconnect_policy(int(self))

    @property
    def reason(self) -> str:
        """The default human-readable reason sent with the code."""
        return _REASONS[self]


_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.GOING_AWAY: "going away",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.ABNORMAL: "abnormal closure",
    CloseCode.INVALID_TEXT: "text frame is not valid UTF-8",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SERVICE_RESTART: "service restart",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat timeout",
    CloseCode.SLOW_CONSUMER: "slow consumer",
    CloseCode.FORCE_RECONNECT: "disconnected by the server, reconnect",
    CloseCode.RATE_LIMITED: "rate limited",
    CloseCode.TOKEN_EXPIRED: "token expired",
    CloseCode.PROTOCOL_VIOLATION: "protocol violation",
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.AUTH_TIMEOUT: "auth timeout",
    CloseCode.FORCE_DISCONNECT: "disconnected by the server",
}


def valid_close_code(code: int) -> bool:
    """May a peer send this code in a close frame? (RFC 6455 7.4, and the IANA registry.)

    1005, 1006 and 1015 are reserved for reporting, never for the wire; 1004 and
    1016-2999 are unassigned; 3000-4999 belong to libraries and applications."""
    return (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999)


def reconnect_policy(code: int) -> Reconnect:
    """The reconnect policy for any close code, including ones this version does not know."""
    if code == CloseCode.NORMAL:
        return Reconnect.NEVER
    if code == CloseCode.TOKEN_EXPIRED:
        return Reconnect.NEW_TOKEN
    if 4500 <= code <= 4999:
        return Reconnect.NEVER
    return Reconnect.BACKOFF


class ErrorCode(enum.StrEnum):
    """Codes of ``error`` replies: the request failed, the connection stays open."""

    BAD_REQUEST = "bad_request"  # not JSON, not an object, wrong field types
    UNKNOWN_TYPE = "unknown_type"  # a ``type`` this server does not know
    BINARY_UNSUPPORTED = "binary_unsupported"  # a binary frame on a v1 connection
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"  # the token does not grant this channel
    NOT_SUBSCRIBED = "not_subscribed"
    ALREADY_SUBSCRIBED = "already_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    CHANNEL_FULL = "channel_full"  # the channel's max_subscribers is reached on this node
    UNKNOWN_METHOD = "unknown_method"
    INVALID_PARAMS = "invalid_params"
    UNAUTHORIZED = "unauthorized"  # an in-band re-auth token was rejected
    UNAVAILABLE = "unavailable"  # the broker is unreachable: nothing was published
    PRESENCE_DISABLED = "presence_disabled"  # presence asked on a channel without ``presence``
    INTERNAL = "internal"  # the handler failed; no details are leaked
    # Transfers (docs/protocol.md, *Transfers*): replies to a chunk, and the reasons a
    # subscriber's transfer ends unfinished.
    TRANSFER_ORDER = "transfer_order"  # not the next seq, or ``at`` is not the bytes so far
    TRANSFER_UNKNOWN = "transfer_unknown"  # a chunk of a transfer never started (or forgotten)
    TRANSFER_TOO_LARGE = "transfer_too_large"  # over max_transfer_size
    TRANSFER_CORRUPT = "transfer_corrupt"  # the payload does not match the last chunk's sha256
    TRANSFER_TIMEOUT = "transfer_timeout"  # no chunk within transfer_timeout
