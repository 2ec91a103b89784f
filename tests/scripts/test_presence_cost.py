"""The measurement behind docs/configuration.md's presence cost (scripts/presence_cost.py)
still runs and measures what it says: a small run, on the memory store and on Redis."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.support.redis_server import redis_server  # noqa: F401 - a fixture

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "presence_cost.py"
_spec = importlib.util.spec_from_file_location("presence_cost", SCRIPT)
assert _spec is not None and _spec.loader is not None
presence_cost = importlib.util.module_from_spec(_spec)
sys.modules["presence_cost"] = presence_cost  # its dataclass looks its module up there
_spec.loader.exec_module(presence_cost)

pytestmark = pytest.mark.asyncio


async def test_memory_store_figures() -> None:
    r = await presence_cost.measure(500, 0.2, None, bound=100)
    assert r["members"] == 500 and r["presence_answer"]["stats_only"] is True
    assert r["presence_answer"]["clients"] == 500 and r["presence_answer"]["users"] == 500
    assert 50 < r["bytes_per_member"] < 5000  # a member is a few hundred bytes
    assert r["join_leave_events_sent"] == 100  # events stop at the bound


async def test_reconnects_are_absorbed_by_the_grace_period() -> None:
    r = await presence_cost.measure(50, 0.3, None, bound=100, trace=False, churn=6000)
    assert r["presence_answer"]["users"] == 50
    assert r["join_leave_events_sent"] == 50  # the first joins only: no reconnect shows


@pytest.mark.redis
async def test_redis_store_figures(redis_server) -> None:  # noqa: F811
    r = await presence_cost.measure(300, 0.2, redis_server.url, bound=100)
    assert r["store"] == "redis" and r["presence_answer"]["clients"] == 300
    assert r["redis_bytes"] > 300 * 20
