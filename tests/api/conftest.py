"""Fixtures of the server API tests: real ``staywire serve`` processes with an API key.

Servers come from ``tests/conftest.py`` (``server_factory``), clients of the WebSocket
port from ``tests/client/conftest.py`` (``client_factory``), Redis from
``tests/support/redis_server.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from staywire.api import ApiClient
from tests.client.conftest import client_factory
from tests.client.helpers import SECRET
from tests.support.redis_server import RedisServer
from tests.support.servers import ServerProcess

__all__ = ["API_KEY", "NODE", "api_server", "client_factory", "redis"]

API_KEY = "api-key-for-tests"
# Users with JWTs, anonymous users too (a subscriber without a token), and the API.
NODE = {"jwt_secret": SECRET, "allow_anonymous": True, "anonymous_channels": ["*"],
        "api_key": API_KEY}


@pytest.fixture
def api_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(**NODE)


@pytest.fixture
def api(api_server: ServerProcess) -> Iterator[ApiClient]:
    with ApiClient(api_server.api, API_KEY) as client:
        yield client


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
