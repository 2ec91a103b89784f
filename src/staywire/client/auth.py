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
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["AuthMode", "TokenProvider", "TokenSource", "connect_target"]

TokenProvider = Callable[[], Awaitable[str]]


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


def connect_target(
    url: str,
    *,
    token: str | None,
    mode: AuthMode,
    cookie_name: str,
    session: str | None,
    client_id: str | None,
) -> tuple[str, dict[str, str]]:
    """The URL (with query parameters) and extra headers for one connection attempt."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("token", "session", "client")]
    if token is not None and mode is AuthMode.QUERY:
        query.append(("token", token))
    if session is not None:
        query.append(("session", session))
    if client_id is not None:
        query.append(("client", client_id))
    headers: dict[str, str] = {}
    if token is not None and mode is AuthMode.COOKIE:
        headers["Cookie"] = f"{cookie_name}={token}"
    target = urlunsplit((parts.scheme, parts.netloc, parts.path or "/ws", urlencode(query), ""))
    return target, headers
