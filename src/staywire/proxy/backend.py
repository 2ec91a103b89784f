"""The five events Staywire asks the application's backend about, as typed calls.

``Backend`` knows which URL answers which event (``routes.py``) and what each
request and answer look like (``schema.py``); ``ProxyClient`` moves them. What an
answer *means* for a connection is decided where that concept lives in the server:
connect and refresh in ``server/requests.py`` (with ``server/auth.py``), subscribe and
publish in ``server/access.py``, rpc in ``server/rpc.py``.

Every method returns the answer's one outcome, or raises ``ProxyUnavailable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from staywire.config import Config
from staywire.proxy.routes import Routes
from staywire.proxy.schema import (
    ChannelRequest,
    ChannelResponse,
    ChannelResult,
    ConnectRequest,
    ConnectResponse,
    ConnectResult,
    Disconnect,
    Failure,
    RefreshRequest,
    RefreshResponse,
    RefreshResult,
    RpcRequest,
    RpcResponse,
    RpcResult,
    outcome,
)

if TYPE_CHECKING:
    from staywire.proxy.client import ProxyClient

__all__ = ["Backend", "Caller"]

Caller = tuple[str, str, dict[str, str] | None]  # (client id, ip, forwarded headers)


class Backend:
    __slots__ = ("client", "connect_url", "refresh_url", "subscribe", "publish", "rpc")

    def __init__(self, client: ProxyClient, *, connect_url: str | None = None,
                 refresh_url: str | None = None, subscribe: Routes | None = None,
                 publish: Routes | None = None, rpc: Routes | None = None) -> None:
        self.client = client
        self.connect_url = connect_url
        self.refresh_url = refresh_url
        self.subscribe = subscribe or Routes(())
        self.publish = publish or Routes(())
        self.rpc = rpc or Routes(())

    @classmethod
    def from_config(cls, cfg: Config) -> Backend | None:
        """The node's backend, or None when no proxy URL is set (the default)."""
        if not (cfg.connect_proxy_url or cfg.refresh_proxy_url or cfg.subscribe_proxy_url
                or cfg.publish_proxy_url or cfg.rpc_proxy_url):
            return None
        # Here, not at module level: a node without proxies never imports its HTTP client.
        from staywire.proxy.client import ProxyClient

        client = ProxyClient(timeout=cfg.proxy_timeout, max_concurrency=cfg.proxy_max_concurrency,
                             retries=cfg.proxy_retries,
                             max_response_size=cfg.proxy_max_response_size,
                             breaker_failures=cfg.proxy_breaker_failures,
                             breaker_reset=cfg.proxy_breaker_reset,
                             batch=cfg.proxy_subscribe_batch)
        return cls(client, connect_url=cfg.connect_proxy_url, refresh_url=cfg.refresh_proxy_url,
                   subscribe=Routes(cfg.subscribe_proxy_url),
                   publish=Routes(cfg.publish_proxy_url), rpc=Routes(cfg.rpc_proxy_url))

    async def close(self) -> None:
        await self.client.close()

    async def connect(self, caller: Caller) -> ConnectResult | Disconnect:
        assert self.connect_url is not None
        client, ip, headers = caller
        answer = await self.client.call("connect", self.connect_url,
                                        ConnectRequest(client, ip, headers or {}),
                                        ConnectResponse)
        return outcome(answer)  # type: ignore[no-any-return]

    async def refresh(self, caller: Caller, user: str) -> RefreshResult | Disconnect:
        assert self.refresh_url is not None
        client, ip, headers = caller
        answer = await self.client.call("refresh", self.refresh_url,
                                        RefreshRequest(client, ip, headers or {}, user),
                                        RefreshResponse)
        return outcome(answer)  # type: ignore[no-any-return]

    async def channel(self, event: str, url: str, caller: Caller, user: str, channel: str,
                      data: bytes | None = None) -> ChannelResult | Failure:
        """``event`` is ``"subscribe"`` or ``"publish"`` (with the publication's ``data``)."""
        client, ip, headers = caller
        raw = msgspec.Raw(data) if data is not None else msgspec.UNSET
        answer = await self.client.call(event, url, ChannelRequest(client, ip, headers or {},
                                                                   user, channel, raw),
                                        ChannelResponse)
        return outcome(answer)  # type: ignore[no-any-return]

    async def call(self, url: str, caller: Caller, user: str, method: str, data: bytes
                   ) -> RpcResult | Failure:
        client, ip, headers = caller
        answer = await self.client.call("rpc", url, RpcRequest(client, ip, headers or {}, user,
                                                               method, msgspec.Raw(data)),
                                        RpcResponse)
        return outcome(answer)  # type: ignore[no-any-return]

