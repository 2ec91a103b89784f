"""One exception tree for the server, the brokers and the Python client.

::

    StaywireError
    ├── ConfigError                 bad configuration; raised at start-up
    ├── AuthError                   a token was rejected (server side)
    │   └── TokenExpired            ... because its ``exp`` has passed
    ├── BrokerError
    │   └── BrokerUnavailable       the broker cannot be reached right now
    ├── ProxyUnavailable            the application's backend gave no usable answer
    ├── ApiError                    an error answer of the server API (``staywire.api``)
    │   └── ApiConnectionError      ... or no answer: the API port unreachable or too slow
    └── ClientError                 raised by ``staywire.Client``
        ├── ConnectionClosed        the connection ended; carries code and reason
        │   ├── Unauthorized        closed with 4501 (or 4503): needs new credentials
        │   └── ReconnectFailed     ``max_retries`` reconnects failed in a row
        ├── RequestError            an ``error`` reply; carries its error code
        ├── RequestTimeout          no reply within the request's timeout
        ├── QueueFull               the outbox is at its bound
        └── TransferFailed          a received transfer cannot complete; carries its code
"""

from __future__ import annotations

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthError",
    "BrokerError",
    "BrokerUnavailable",
    "ClientError",
    "ConfigError",
    "ConnectionClosed",
    "ProxyUnavailable",
    "QueueFull",
    "ReconnectFailed",
    "RequestError",
    "RequestTimeout",
    "StaywireError",
    "TokenExpired",
    "TransferFailed",
    "Unauthorized",
]


class StaywireError(Exception):
    """Base of every exception Staywire raises on purpose."""


class ConfigError(StaywireError):
    """The configuration is invalid; the message says which option and why."""


class AuthError(StaywireError):
    """A credential was rejected. The message is safe to log: it never holds the token."""


class TokenExpired(AuthError):
    """The token's ``exp`` has passed."""


class BrokerError(StaywireError):
    """A broker operation failed."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached; nothing was published or stored."""


class ProxyUnavailable(StaywireError):
    """The application's backend (a proxy URL) gave no usable answer: down, slow, overloaded,
    oversized or malformed. Nothing was decided; the message names the outcome."""


class ApiError(StaywireError):
    """The server API answered an error: ``code`` is an ``ErrorCode`` value, ``status`` the
    HTTP status (0 when there was no answer)."""

    def __init__(self, code: str, reason: str, status: int) -> None:
        super().__init__(f"{code}: {reason}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.reason = reason
        self.status = status


class ApiConnectionError(ApiError):
    def __init__(self, reason: str) -> None:
        super().__init__("unavailable", reason, 0)


class ClientError(StaywireError):
    """Base of the Python client's errors."""


class ConnectionClosed(ClientError):
    """The connection ended with ``code`` and ``reason`` (1006: no close frame was received)."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed: {code} {reason}".rstrip())


class Unauthorized(ConnectionClosed):
    """The server refused the credentials (4501) or the user (4503); do not retry as is."""


class ReconnectFailed(ConnectionClosed):
    """The client gave up after ``max_retries`` failed reconnects; carries the last close."""

    def __init__(self, code: int, reason: str = "", attempts: int = 0) -> None:
        super().__init__(code, reason)
        self.attempts = attempts
        self.args = (f"gave up after {attempts} reconnect attempts; last close: {code} {reason}",)


class RequestError(ClientError):
    """The server answered a request with ``error``; the connection stays open."""

    def __init__(self, code: str, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}" if reason else code)


class RequestTimeout(ClientError):
    """No reply arrived within the request's timeout."""


class QueueFull(ClientError):
    """The outbox is at its bound (messages or bytes); the publish was not queued."""


class TransferFailed(ClientError):
    """A transfer that cannot complete: ``code`` says why (``transfer_corrupt``,
    ``transfer_timeout``, ``transfer_order``), never truncated data instead."""

    def __init__(self, transfer: str, code: str, reason: str) -> None:
        super().__init__(f"transfer {transfer}: {code}: {reason}")
        self.transfer = transfer
        self.code = code
        self.reason = reason
