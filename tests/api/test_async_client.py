"""AsyncApiClient against a real server: typed replies, errors, kept-alive connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from staywire.api import ApiConnectionError, ApiError, AsyncApiClient, Batch
from staywire.api.aio import _IDLE
from tests.api.conftest import API_KEY
from tests.support.servers import free_port


async def test_methods_errors_and_batch(api_server) -> None:
    async with AsyncApiClient(api_server.api, API_KEY, max_connections=2) as api:
        replies = await asyncio.gather(*(api.publish("x", i) for i in range(10)))
        assert sorted(r.offset for r in replies) == list(range(1, 11))
        history = await api.history("x", limit=3, reverse=True)
        assert [p.offset for p in history.publications] == [10, 9, 8]
        assert len((await api.info()).nodes) == 1
        with pytest.raises(ApiError) as bad:
            await api.publish("bad name", 1)
        assert (bad.value.code, bad.value.status) == ("bad_request", 400)
        results = await api.batch(Batch().publish("y", 1).info().history("no name"))
        assert results[0].offset == 1 and results[1].nodes
        assert isinstance(results[2], ApiError) and results[2].code == "bad_request"
        # Two connections at most served the ten concurrent publishes; both are kept.
        assert len(api._idle) == 2


async def test_an_idle_connection_is_replaced_and_a_closed_port_is_an_error(
        api_server) -> None:
    async with AsyncApiClient(api_server.api, API_KEY) as api:
        await api.info()
        (used, stream), = api._idle
        api._idle = [(used - _IDLE - 1, stream)]  # as if idle too long: not reused
        await api.info()
        assert stream[1].is_closing() and len(api._idle) == 1
    async with AsyncApiClient(f"http://127.0.0.1:{free_port()}", API_KEY, timeout=2) as gone:
        with pytest.raises(ApiConnectionError) as failed:
            await gone.info()
        assert failed.value.code == "unavailable" and failed.value.status == 0


def test_the_clients_load_no_server_and_no_dependency() -> None:
    code = ("import sys, staywire.api; "
            "print(sorted(m for m in sys.modules if m.startswith(('staywire.server', "
            "'staywire.brokers', 'redis', 'picows', 'uvloop', 'h11', 'httpx'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.strip() == "[]"
