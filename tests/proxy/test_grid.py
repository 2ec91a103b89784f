"""The proxy coverage grid: every event against every way the backend can answer.

Issue 14's "done when": real HTTP backends cover each event's allow, refuse,
timeout, malformed answer, backend down and recovery. One driver per event
(``DRIVERS``) says how a client makes the event happen and what it sees; one row
per case (``CASES``) says how the backend (``tests/proxy/backend.py``, uvicorn)
answers. ``test_cell`` runs their product; what each cell expects is docs/proxy.md,
*When the backend cannot answer*:

| event     | allow        | refuse            | timeout / malformed / down      | recovery                |
|-----------|--------------|-------------------|---------------------------------|-------------------------|
| connect   | welcome      | close, its code   | close 1013                      | welcome, circuit closed |
| refresh   | extended     | close, its code   | stays open                      | extended, circuit closed|
| subscribe | ack          | error, its code   | error ``unavailable``           | ack, circuit closed     |
| publish   | ack          | error, its code   | error ``unavailable``, not sent twice, nothing published | ack, circuit closed |
| rpc       | result       | error, its code   | error ``unavailable``, not sent twice | result, circuit closed |

Each failing cell also asserts the outcome the proxy counted (the
``staywire_proxy_calls_total`` label): ``timeout``, ``unreachable``/``circuit_open``,
``malformed``, ``oversized`` or ``status_5xx``. "malformed" is one cell per way to be
off contract (``MALFORMED``). Cells the grid does not hold, because they test more
than one outcome, stay beside the feature they test: routing and grants
(test_channels.py), the forwarded headers and custom data (test_connect.py), publish
data replaced (test_channels.py), ``expired: true`` (test_rpc_refresh.py), the
concurrency bound (test_connect.py). ``test_the_grid_is_complete`` checks every
event has every case.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import websockets

from staywire.config import Config
from staywire.proxy.breaker import BreakerState
from staywire.server.app import Server
from tests.proxy.backend import GARBAGE, HUGE, SLOW, T, Backend, get, metric
from tests.proxy.conftest import FAST
from tests.support.ws import closed_with, connect, expect, request

# One backend (uvicorn) for the whole grid, reset before each cell: a uvicorn start and
# stop per cell would be most of the grid's time. The cells share its event loop.
IN_GRID_LOOP = pytest.mark.asyncio(loop_scope="module")


EVENTS = ("connect", "refresh", "subscribe", "publish", "rpc")
CASES = ("allow", "refuse", "timeout", "malformed", "down", "recovery")

# Small settings: the whole grid runs in seconds. Two failures in a row open a circuit,
# and it lets a probe through 0.3 s later.
GRID = {"proxy_timeout": 0.5, "proxy_breaker_failures": 2, "proxy_breaker_reset": 0.3}

# Off-contract answers, per event where the schema differs: (name, answer, outcome counted).
_COMMON = [("not_json", GARBAGE, "malformed"), ("oversized", HUGE, "oversized"),
           ("status_500", 500, "status_5xx")]
MALFORMED: dict[str, list[tuple[str, Any, str]]] = {
    "connect": _COMMON + [
        ("wrong_type", {"result": {"user": 42}}, "malformed"),
        ("two_outcomes", {"result": {"user": "1"}, "disconnect": {"code": 4503}}, "malformed"),
        ("unknown_field", {"result": {"user": "1", "chanels": ["*"]}}, "malformed"),
        ("empty_user", {"result": {"user": ""}}, "malformed"),
        ("status_404", 404, "status_4xx")],
    "refresh": _COMMON + [
        ("wrong_type", {"result": {"expire_at": "soon"}}, "malformed"),
        ("two_outcomes", {"result": {"expired": True}, "disconnect": {}}, "malformed"),
        ("unknown_field", {"result": {"expires_at": 1}}, "malformed")],
    "subscribe": _COMMON + [
        ("wrong_type", {"error": {"code": 5}}, "malformed"),
        ("two_outcomes", {"result": {}, "error": {"code": "forbidden"}}, "malformed"),
        ("unknown_field", {"result": {"dta": 1}}, "malformed"),
        ("unknown_code", {"error": {"code": "no_such_code"}}, "malformed")],
    "publish": _COMMON + [
        ("wrong_type", {"error": {"reason": 7}}, "malformed"),
        ("two_outcomes", {"result": {}, "error": {}}, "malformed"),
        ("unknown_field", {"result": {"dta": 1}}, "malformed")],
    "rpc": _COMMON + [
        ("wrong_type", {"error": {"code": "forbidden", "reason": []}}, "malformed"),
        ("two_outcomes", {"result": {"data": 1}, "error": {}}, "malformed"),
        ("unknown_field", {"result": {"dta": 1}}, "malformed")],
}


Seen = tuple[Any, ...]  # what the client saw, e.g. ("close", 1013) or ("error", "unavailable")


@dataclass
class Driver:
    """How a client makes ``event`` happen, and what it sees of the backend's verdict."""

    event: str
    allow: Any  # an answer that allows it
    refuse: Any  # an answer that refuses it, with a code of the backend's choice
    allowed: Seen  # what the client sees when allowed
    refused: Seen  # ... refused
    failed: Seen  # ... when the backend gives no verdict (timeout, malformed, down)
    options: Callable[[str], dict[str, Any]]  # the server's options, given the backend URL

    async def setup(self, server: Server, backend: Backend) -> Any:
        """What ``attempt`` needs that outlives one attempt (an open connection)."""
        # An open connection, welcomed while the backend answered: no cell may drop it.
        if self.event == "refresh":
            backend.answer["connect"] = lambda body: {"result": {
                "user": "42", "expire_at": time.time() + 0.1}}
        ws = await connect(ws_url(server))
        await expect(ws, "welcome")
        return ws

    async def attempt(self, server: Server, backend: Backend, ws: Any, n: int) -> Seen:
        """One try of the event; ``n`` makes each try's channel or method its own."""
        if self.event == "connect":
            try:
                async with connect(ws_url(server)) as sock:
                    first = await expect(sock, None)
                    if first["type"] == "welcome":
                        return ("welcome",)
                    return ("unexpected", first)
            except websockets.ConnectionClosed as exc:
                return ("close", exc.rcvd.code if exc.rcvd is not None else 1006)
        if self.event == "refresh":
            return await _next_refresh(server, ws)
        if self.event == "subscribe":
            reply = await request(ws, {"type": "sub", "id": n, "channel": f"room:{n}"})
        elif self.event == "publish":
            reply = await request(ws, {"type": "pub", "id": n, "channel": "room:p", "data": n})
        else:
            reply = await request(ws, {"type": "rpc", "id": n, "method": "shop.sum",
                                       "data": [1, 1]})
        if reply["type"] == "error":
            return ("error", reply["code"])
        if reply["type"] == "result":
            return ("result", reply["data"])
        return (reply["type"],)


def ws_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


async def _next_refresh(server: Server, ws: Any) -> Seen:
    """Wait for the next refresh call to end; then is the connection still open?"""
    assert server.backend is not None
    outcomes = server.backend.client.outcomes
    before = sum(n for (event, _), n in outcomes.items() if event == "refresh")
    deadline = time.monotonic() + 5 * T
    while sum(n for (event, _), n in outcomes.items() if event == "refresh") == before:
        if ws.close_code is not None:
            return ("close", ws.close_code)
        assert time.monotonic() < deadline, f"no refresh was asked: {dict(outcomes)}"
        await asyncio.sleep(0.02)  # poll interval, bounded by the deadline
    try:
        reply = await request(ws, {"type": "rpc", "id": 1, "method": "none"})
    except websockets.ConnectionClosed:
        return ("close", (await closed_with(ws))[0])
    assert reply["code"] == "unknown_method", reply  # answered: the connection lives
    # The client sees no difference; the server's expiry is the backend's, or not.
    [conn] = list(server.table.connections)
    extended = conn.identity is not None and conn.identity.expires_at == 2e9
    return ("open", "extended" if extended else "not extended")


def _anonymous(**routes: str) -> Callable[[str], dict[str, Any]]:
    """An anonymous node (no connect proxy) whose one event is routed to the backend."""
    return lambda url: {"allow_anonymous": True, "anonymous_channels": ("*",),
                        **{k: (v.format(url=url),) for k, v in routes.items()}}


DRIVERS = {d.event: d for d in [
    Driver("connect", allow={"result": {"user": "42"}},
           refuse={"disconnect": {"code": 4403, "reason": "not now"}},
           allowed=("welcome",), refused=("close", 4403), failed=("close", 1013),
           options=lambda url: {"connect_proxy_url": f"{url}/connect"}),
    Driver("refresh", allow={"result": {"expire_at": 2e9}},
           refuse={"disconnect": {"code": 4503, "reason": "logged out"}},
           allowed=("open", "extended"), refused=("close", 4503),
           failed=("open", "not extended"),
           options=lambda url: {"connect_proxy_url": f"{url}/connect",
                                "refresh_proxy_url": f"{url}/refresh"}),
    Driver("subscribe", allow={"result": {}},
           refuse={"error": {"code": "unauthorized", "reason": "log in"}},
           allowed=("ack",), refused=("error", "unauthorized"), failed=("error", "unavailable"),
           options=_anonymous(subscribe_proxy_url="room:* {url}/subscribe")),
    Driver("publish", allow={"result": {}},
           refuse={"error": {"code": "forbidden", "reason": "moderated"}},
           allowed=("ack",), refused=("error", "forbidden"), failed=("error", "unavailable"),
           options=_anonymous(publish_proxy_url="room:* {url}/publish")),
    Driver("rpc", allow=lambda body: {"result": {"data": sum(body["data"])}},
           refuse={"error": {"code": "invalid_params", "reason": "no such item"}},
           allowed=("result", 2), refused=("error", "invalid_params"),
           failed=("error", "unavailable"),
           options=lambda url: {"allow_anonymous": True,
                                "rpc_proxy_url": (f"shop.* {url}/rpc",)}),
]}


def cells() -> list[Any]:
    out = []
    for event, case in itertools.product(EVENTS, CASES):
        if case == "malformed":
            out += [pytest.param(event, case, m, id=f"{event}-malformed-{m[0]}")
                    for m in MALFORMED[event]]
        else:
            out.append(pytest.param(event, case, None, id=f"{event}-{case}"))
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_backend() -> AsyncIterator[Backend]:
    b = await Backend().start()
    yield b
    await b.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def backend(shared_backend: Backend) -> AsyncIterator[Backend]:
    """The shared backend, as a fresh one: up, no answers set, nothing seen."""
    b = shared_backend
    if b._server is None:
        await b.start()  # a down or recovery cell left it stopped
    b.answer.clear()
    b.after_slow.clear()
    b.seen.clear()
    yield b
    b.release.set()  # a SLOW answer still held gives up
    b.release = asyncio.Event()


@pytest_asyncio.fixture(loop_scope="module")
async def node(backend: Backend) -> AsyncIterator[Callable[[str], Awaitable[Server]]]:
    started: list[Server] = []

    async def start(event: str) -> Server:
        options = {**FAST, **GRID, **DRIVERS[event].options(backend.url)}
        server = Server(Config(port=0, **options))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@IN_GRID_LOOP
@pytest.mark.parametrize("event,case,malformed", cells())
async def test_cell(backend: Backend, node: Callable[[str], Awaitable[Server]], event: str,
                    case: str, malformed: tuple[str, Any, str] | None) -> None:
    d = DRIVERS[event]
    server = await node(event)
    assert server.backend is not None
    proxy = server.backend.client
    if event != "connect":
        backend.answer.setdefault("connect", {"result": {"user": "42"}})
    backend.answer[event] = d.allow
    ws = await d.setup(server, backend)
    started = time.monotonic()

    if case == "allow":
        assert await d.attempt(server, backend, ws, 1) == d.allowed
        assert proxy.outcomes[(event, "ok")] >= 1
    elif case == "refuse":
        backend.answer[event] = d.refuse
        assert await d.attempt(server, backend, ws, 1) == d.refused
    elif case in ("timeout", "malformed"):
        name, answer, counted = (("slow", SLOW, "timeout") if case == "timeout"
                                 else malformed)  # type: ignore[misc]
        backend.answer[event] = answer
        assert await d.attempt(server, backend, ws, 1) == d.failed, name
        assert proxy.outcomes[(event, counted)] >= 1, dict(proxy.outcomes)
        # One request's failure, bounded by proxy_timeout and not by the backend.
        assert time.monotonic() - started < 0.5 + 2.0 * T
    elif case == "down":
        await backend.stop()
        for n in range(1, 4):  # refused at TCP, then the circuit opens and fails fast
            assert await d.attempt(server, backend, ws, n) == d.failed
        assert proxy.outcomes[(event, "unreachable")] >= 1
        assert proxy.state(event) is not BreakerState.CLOSED
        # The node itself is fine: a load balancer must not pull it for the backend's outage.
        assert (await get(f"http://127.0.0.1:{server.port}/readyz"))[0] == 200
    else:
        await _recovery(d, server, backend, ws)

    if event in ("publish", "rpc") and case in ("timeout", "malformed", "down"):
        # Sent once, never retried: the backend may have acted on it.
        assert len(backend.seen[event]) == (1 if case != "down" else 0)
    if event == "publish" and case not in ("allow", "recovery"):
        assert (await server.broker.history("room:p", None)).position.offset == 0, \
            "a publish the backend did not allow was published"
    if not (event == "refresh" and case == "refuse"):
        # No open connection is dropped for what the backend did.
        assert ws.close_code is None
        await ws.close()


async def _recovery(d: Driver, server: Server, backend: Backend, ws: Any) -> None:
    """Down until the circuit opens; back up: the next request succeeds and it closes."""
    assert server.backend is not None
    proxy = server.backend.client
    api = f"http://127.0.0.1:{server.api_port}"
    await backend.stop()
    for n in range(1, 11):  # bounded: two failures in a row open it
        assert await d.attempt(server, backend, ws, n) == d.failed
        if proxy.state(d.event) is BreakerState.OPEN:
            break
    assert proxy.state(d.event) is BreakerState.OPEN
    assert await metric(api, "staywire_proxy_breaker_state", f'event="{d.event}"') == 2.0
    await backend.start()
    deadline = time.monotonic() + 5 * T
    for n in range(100, 300):  # after proxy_breaker_reset, one probe goes and closes it
        seen = await d.attempt(server, backend, ws, n)
        if seen != d.failed:
            break
        assert time.monotonic() < deadline, "never recovered"
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline
    assert seen == d.allowed
    assert proxy.state(d.event) is BreakerState.CLOSED
    assert await metric(api, "staywire_proxy_breaker_state", f'event="{d.event}"') == 0.0


def test_the_grid_is_complete() -> None:
    ids = {p.id for p in cells()}
    for event, case in itertools.product(EVENTS, CASES):
        prefix = f"{event}-{case}"
        assert any(i == prefix or i.startswith(prefix + "-") for i in ids), prefix
    assert set(DRIVERS) == set(EVENTS) == set(MALFORMED)
    for event in EVENTS:
        assert {m[0] for m in MALFORMED[event]} >= {"not_json", "wrong_type", "two_outcomes",
                                                    "oversized"}
    # The table in this module's docstring names every event.
    table = __doc__ or ""
    assert all(f"| {event} " in table for event in EVENTS)
