"""Graceful shutdown on SIGTERM: readiness turns 503, clients get `drain` spread over the
window, then close 1012, and the process exits."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request

import pytest
import websockets

from tests.support.ws import closed_with, connect, expect

pytestmark = pytest.mark.asyncio


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_sigterm_drains_clients_over_the_window(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, drain_window=1.5, shutdown_timeout=5)
    clients = [await connect(srv.url).__aenter__() for _ in range(20)]
    try:
        for ws in clients:
            await expect(ws, "welcome")
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        drains = await asyncio.gather(*(expect(ws, "drain") for ws in clients))
        delays = [d["reconnect_in_ms"] for d in drains]
        assert all(0 <= d <= 1500 for d in delays)
        assert max(delays) - min(delays) > 300  # spread, not a thundering herd
        assert status(f"{srv.http}/readyz") == 503
        with pytest.raises((websockets.InvalidStatus, OSError)):
            async with connect(srv.url):
                pass
        closes = await asyncio.gather(*(closed_with(ws) for ws in clients))
        assert {c for c, _ in closes} == {1012}
        assert time.monotonic() - started < 1.5 + 2
        assert srv.wait(10) == 0
    finally:
        for ws in clients:
            await ws.close()
