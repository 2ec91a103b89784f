"""Fixtures shared by every test package: real server processes on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_cluster import redis_cluster  # session-wide: formed once
from tests.support.servers import ServerProcess

__all__ = ["ANON", "anon_server", "redis_cluster", "server_factory"]

ANON = {"allow_anonymous": True, "anonymous_channels": ["*"]}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a ``slow`` test first, the rest in their order: the longest jobs start
    while there is short work left to balance the workers (scripts/run-tests.sh gives
    xdist whole files in this order)."""
    slow = {Path(str(item.fspath)) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: Path(str(item.fspath)) not in slow)  # stable


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with any options; every one is killed by PID when the test ends."""
    started: list[ServerProcess] = []

    def start(port: int | None = None, api_port: int | None = None, **options: Any
              ) -> ServerProcess:
        srv = ServerProcess(options, port, api_port)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.close()


@pytest.fixture
def anon_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A server that welcomes anonymous users on every channel."""
    return server_factory(**ANON)
