"""Fixtures for the client's integration tests: TCP proxies and clients closed at teardown.

Servers come from ``tests/conftest.py`` (``server_factory``, ``anon_server``): real
``staywire serve`` processes on free loopback ports, killed by PID at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from staywire.client import Client
from tests.client.helpers import FAST
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Callable[..., Awaitable[TcpProxy]]]:
    proxies: list[TcpProxy] = []

    async def make(upstream_port: int, **options: Any) -> TcpProxy:
        proxy = await TcpProxy("127.0.0.1", upstream_port, **options).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[..., Client]]:
    """Clients that are closed at the end of the test, whatever happened."""
    clients: list[Client] = []

    def make(url: str, **options: Any) -> Client:
        client = Client(url, **{**FAST, **options})
        clients.append(client)
        return client

    yield make
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
