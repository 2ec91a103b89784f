"""A real HTTP backend and a real Staywire server wired to it, both on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from staywire.config import Config
from staywire.server.app import Server
from tests.proxy.backend import Backend

# Short enough for a test, long enough for a loopback answer on a busy 2-core machine.
FAST = {"proxy_timeout": 0.5, "proxy_breaker_reset": 0.3, "close_timeout": 0.4,
        "drain_window": 0.1}


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend().start()
    yield b
    await b.stop()


@pytest.fixture
async def staywire() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """Start a server with the options given; each is stopped when the test ends."""
    started: list[Server] = []

    async def start(**options: Any) -> Server:
        server = Server(Config(port=0, **{**FAST, **options}))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()
