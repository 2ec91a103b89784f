"""Authentication: the ``Authenticator`` interface, JWT built in, and token hygiene.

Tokens arrive three ways (query, cookie, first message; see docs/protocol.md).
Whatever the way, a token is never written to a log line or a metric label:
``redact`` scrubs request targets before anything logs them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from staywire.protocol.patterns import matches
from staywire.exceptions import AuthError, ConfigError, TokenExpired

__all__ = [
    "Authenticator",
    "Identity",
    "JWTAuthenticator",
    "can_access",
    "proxy_identity",
    "cookie_token",
    "query_params",
    "redact",
]


@dataclass(frozen=True, slots=True)
class Identity:
    user: str  # "" for anonymous
    channels: tuple[str, ...] = ()  # glob patterns of channels the user may use
    expires_at: float | None = None  # Unix seconds
    claims: dict[str, object] = field(default_factory=dict, compare=False)
    via_proxy: bool = False  # granted by connect_proxy_url: refresh_proxy_url renews it
    # Channels the server subscribed it to itself (the connect proxy's answer, and the
    # server API's ``subscribe``): granted by whoever named them.
    server_subs: tuple[str, ...] = ()
    # Those of ``server_subs`` the server API added: kept in the session record, so a
    # resumed session gets them back (docs/api.md, subscribe).
    api_subs: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.user == ""


class Authenticator(Protocol):
    """Turn a token into an ``Identity`` or raise ``AuthError`` / ``TokenExpired``."""

    def __call__(self, token: str) -> Identity | Awaitable[Identity]: ...


class JWTAuthenticator:
    """HS256 with a shared secret, or RS256 with a public key.

    Claims: ``sub`` (required), ``exp``, ``channels`` (glob patterns)."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (secret is None) == (public_key is None):
            raise ConfigError("JWTAuthenticator needs exactly one of secret or public_key")
        import jwt  # here, not at module level: a server without JWT auth starts faster

        self._jwt = jwt
        if public_key is not None and not public_key.lstrip().startswith("-----BEGIN"):
            try:
                with open(public_key) as fh:
                    public_key = fh.read()
            except OSError as exc:
                raise ConfigError(f"cannot read jwt_public_key: {exc.strerror}") from None
        self._key = secret if secret is not None else public_key
        self._algorithms = ["HS256"] if secret is not None else ["RS256"]
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._clock = clock

    def __call__(self, token: str) -> Identity:
        jwt = self._jwt
        try:
            # Expiry is checked below against our own clock, so tests can move it.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["sub"], "verify_exp": False,
                         "verify_aud": self._audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        exp = claims.get("exp")
        if exp is not None:
            if not isinstance(exp, (int, float)):
                raise AuthError("invalid token: exp is not a number")
            if exp + self._leeway <= self._clock():
                raise TokenExpired("token expired")
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise AuthError("invalid token: channels must be a list of strings")
        user = claims["sub"]
        if not isinstance(user, str) or not user:
            raise AuthError("invalid token: sub must be a non-empty string")
        return Identity(user, tuple(channels), float(exp) if exp is not None else None, claims)


def proxy_identity(user: str, channels: list[str], expire_at: float | None,
                   subscriptions: Sequence[str] = ()) -> Identity:
    """The identity the application's backend granted (connect proxy, docs/proxy.md)."""
    return Identity(user, tuple(channels), expire_at, via_proxy=True,
                    server_subs=tuple(dict.fromkeys(subscriptions)))


def can_access(identity: Identity, channel: str) -> bool:
    # Every client publish and subscribe asks this: a plain loop, and the common grant
    # "*" without the pattern cache (any() over a generator cost 8x more for "*").
    for pattern in identity.channels:
        if pattern == "*" or matches(pattern, channel):
            return True
    return False


_TOKEN_IN_TARGET = re.compile(r"([?&](?:token|access_token)=)[^&#\s]*", re.IGNORECASE)


def redact(target: str) -> str:
    """A request target safe to log: token values replaced by ``[REDACTED]``."""
    return _TOKEN_IN_TARGET.sub(r"\1[REDACTED]", target)


def query_params(target: str) -> dict[str, str]:
    """The first value of each query parameter; garbage yields what can be read of it."""
    try:
        query = urlsplit(target).query
        return {k: v[0] for k, v in parse_qs(query, max_num_fields=32).items() if v}
    except ValueError:
        return {}


def cookie_token(header: str | None, name: str) -> str | None:
    if not header:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(header)
    except CookieError:
        return None
    morsel = cookie.get(name)
    return morsel.value if morsel is not None and morsel.value else None
