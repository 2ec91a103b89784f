"""Access rules: may this identity subscribe or publish to this channel?

The default rule is the identity's channel grants (``auth.can_access``: glob patterns
from the token); an application can pass its own ``authorize(identity, channel,
action)`` to ``Server``, which then decides alone.

A channel matched by ``subscribe_proxy_url`` (or ``publish_proxy_url``) is decided by
the application's backend instead, alone as well: ``asks`` says whether it is, and
``ask`` puts the question (docs/proxy.md). The synchronous ``allows`` stays the
only check on every other channel, so a node without proxies pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from msgspec import Raw

from staywire.channel_options import ChannelOptions
from staywire.protocol.codes import ErrorCode
from staywire.proxy.routes import Routes
from staywire.proxy.schema import ChannelResult, Failure
from staywire.server.auth import Identity, can_access

__all__ = ["AccessRules", "Authorizer", "ChannelBackend", "Verdict"]

Authorizer = Callable[[Identity, str, str], bool]

# None: allowed as is; bytes: allowed, publish this data instead; (code, reason): refused.
Verdict = None | bytes | tuple[ErrorCode, str]

_EVENT = {"sub": "subscribe", "pub": "publish"}


class Asker(Protocol):
    """What ``ask`` reads of the connection: who it is, and what it forwards."""

    @property
    def id(self) -> str: ...
    @property
    def ip(self) -> str: ...
    @property
    def identity(self) -> Identity | None: ...
    @property
    def headers(self) -> dict[str, str] | None: ...


class ChannelBackend(Protocol):
    """The application's backend as access rules use it (``proxy.backend.Backend``)."""

    @property
    def subscribe(self) -> Routes: ...
    @property
    def publish(self) -> Routes: ...

    async def channel(self, event: str, url: str, caller: tuple[str, str, dict[str, str] | None],
                      user: str, channel: str, data: bytes | None = None
                      ) -> ChannelResult | Failure: ...


class AccessRules:
    __slots__ = ("_authorize", "_backend", "_options", "proxied_sub", "proxied_pub")

    def __init__(self, authorize: Authorizer | None = None,
                 backend: ChannelBackend | None = None,
                 options: Callable[[str], ChannelOptions] | None = None) -> None:
        self._authorize = authorize
        self._backend = backend
        self._options = options  # per-channel options (Config.channel)
        self.proxied_sub = backend is not None and bool(backend.subscribe)
        self.proxied_pub = backend is not None and bool(backend.publish)

    def allows(self, identity: Identity, channel: str, action: str) -> bool:
        """``action`` is ``"sub"`` or ``"pub"``.

        A channel's ``anonymous_read`` / ``anonymous_write`` option, when set, decides
        for anonymous connections before anything else."""
        if identity.anonymous and self._options is not None:
            opts = self._options(channel)
            setting = opts.anonymous_read if action == "sub" else opts.anonymous_write
            if setting is not None:
                return setting
        if self._authorize is not None:
            return bool(self._authorize(identity, channel, action))
        return can_access(identity, channel)

    def clients_publish(self, channel: str) -> bool:
        """May clients publish here at all (option ``publish``), or only the backend?"""
        return self._options is None or self._options(channel).publish

    def asks(self, channel: str, action: str) -> str | None:
        """The backend URL that decides ``action`` on ``channel``, or None (``allows`` does)."""
        backend = self._backend
        if backend is None:
            return None
        routes = backend.subscribe if action == "sub" else backend.publish
        return routes.url_for(channel)

    async def ask(self, url: str, conn: Asker, channel: str, action: str,
                  data: bytes | None = None) -> Verdict:
        """The backend's verdict; ``ProxyUnavailable`` when it gave none."""
        assert self._backend is not None
        ident = conn.identity
        answer = await self._backend.channel(_EVENT[action], url, (conn.id, conn.ip, conn.headers),
                                             ident.user if ident is not None else "", channel,
                                             data)
        if isinstance(answer, Failure):
            return answer.code, answer.reason or f"refused by the application ({action})"
        if isinstance(answer.data, Raw) and action == "pub":
            return bytes(answer.data)
        return None
