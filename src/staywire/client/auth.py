"""Where the client's token comes from, and how it is presented to the server.

Why a provider: tokens expire. A fixed ``token=`` works until its ``exp``; an
``async def get_token() -> str`` is called again before every connection
attempt and before ``exp`` (in-band refresh), so a long-lived client never
presents a stale credential.

Why first-message auth by default: a token in the URL ends up in proxy access
logs. The query and cookie modes exist for environments that need them.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["AuthMode", "HeaderSource", "HeadersProvider", "TokenProvider", "TokenSource",
           "connect_target"]

TokenProvider = Callable[[], Awaitable[str]]
HeadersProvider = Callable[[], Awaitable[Mapping[str, str]]]

# The upgrade's own headers: set by the WebSocket handshake, never by the application.
_RESERVED = frozenset({"host", "upgrade", "connection", "sec-websocket-key",
                       "sec-websocket-version", "sec-websocket-extensions",
                       "sec-websocket-protocol", "sec-websocket-accept", "content-length",
                       "transfer-encoding"})


class AuthMode(enum.Enum):
    FIRST_MESSAGE = "first_message"  # {"type": "auth", "token": ...} right after the upgrade
    QUERY = "query"  # ?token=... (redacted from server logs, but proxies may log it)
    COOKIE = "cookie"  # Cookie: <cookie_name>=<token>


class TokenSource:
    """A fixed token, a provider, or neither (anonymous)."""

    def __init__(self, token: str | None, provider: TokenProvider | None) -> None:
        if token is not None and provider is not None:
            raise ValueError("give token= or token_provider=, not both")
        self._token = token
        self._provider = provider

    @property
    def can_refresh(self) -> bool:
        """Whether a new token can be had (after 4401, or before ``exp``)."""
        return self._provider is not None

    async def get(self) -> str | None:
        """The token to present now; the provider is asked every time."""
        if self._provider is None:
            return self._token
        token = await self._provider()
        if not isinstance(token, str) or not token:
            raise TypeError("token_provider must return a non-empty str")
        return token


class HeaderSource:
    """Extra upgrade headers (``Cookie``, ``Authorization``...): a fixed mapping, a provider
    asked before every connection attempt, or neither.

    They are how a connect proxy (docs/proxy.md) knows the client: the application's
    backend reads its own session cookie or bearer token from them. Sent with the
    upgrade only, never in the URL, so they stay out of access logs as a query token
    would not."""

    def __init__(self, headers: Mapping[str, str] | HeadersProvider | None) -> None:
        if headers is not None and not callable(headers):
            headers = dict(_checked(headers))
        self._headers = headers

    @property
    def given(self) -> bool:
        return self._headers is not None

    async def get(self) -> dict[str, str]:
        if self._headers is None:
            return {}
        if callable(self._headers):
            return dict(_checked(await self._headers()))
        return dict(self._headers)


def _checked(headers: Mapping[str, str]) -> Mapping[str, str]:
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of str to str, got {type(headers).__name__}")
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("headers must be a mapping of str to str")
        if name.lower() in _RESERVED:
            raise ValueError(f"{name} is the WebSocket handshake's own header: not settable")
        if not name or any(c in name for c in " :\r\n") or any(c in value for c in "\r\n"):
            raise ValueError(f"not a valid header: {name!r}")
    return headers


def connect_target(
    url: str,
    *,
    token: str | None,
    mode: AuthMode,
    cookie_name: str,
    session: str | None,
    client_id: str | None,
    extra: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """The URL (with query parameters) and extra headers for one connection attempt;
    ``extra``: the application's own headers (a ``Cookie`` of its own is joined with the
    token cookie)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query)
             if k not in ("token", "session", "client", "auth")]
    if token is not None and mode is AuthMode.QUERY:
        query.append(("token", token))
    elif token is not None and mode is AuthMode.FIRST_MESSAGE:
        query.append(("auth", "message"))  # not the token: only that it comes first
    if session is not None:
        query.append(("session", session))
    if client_id is not None:
        query.append(("client", client_id))
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in (extra or {}).items():
        if name.lower() == "cookie":
            cookies.append(value)
        else:
            headers[name] = value
    if token is not None and mode is AuthMode.COOKIE:
        cookies.append(f"{cookie_name}={token}")
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    target = urlunsplit((parts.scheme, parts.netloc, parts.path or "/ws", urlencode(query), ""))
    return target, headers
