"""A real HTTP backend for the proxy tests: a Starlette app under uvicorn on a loopback port.

Each test says how every event answers (``backend.answer[event] = ...``): a JSON
object to send, ``SLOW`` (answers ``after_slow[event]`` after longer than any proxy timeout, or once ``release`` is set), ``GARBAGE``
(not JSON), ``HUGE`` (a body over the size cap), an HTTP status code or a Starlette
``Response`` sent as is. Every request body is kept in ``backend.seen[event]``, and the
``Cookie`` HTTP header of each call (None when absent) in ``backend.http_cookies``. ``stop()`` and ``start()`` take the backend
down and bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from staywire_bench.ports import free_port

T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))

SLOW = "slow"
GARBAGE = "garbage"
HUGE = "huge"

EVENTS = ("connect", "refresh", "subscribe", "publish", "rpc")


class Backend:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer: dict[str, Any] = {}
        self.after_slow: dict[str, Any] = {}  # what a SLOW answer sends once released
        self.seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.peers: set[int] = set()  # client ports seen: one per TCP connection
        self.http_cookies: list[str | None] = []
        self.release = asyncio.Event()  # set at stop(): a SLOW answer gives up
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        routes = [Route(f"/{event}", self._endpoint(event), methods=["POST"])
                  for event in EVENTS]
        self.app = Starlette(routes=routes)

    def _endpoint(self, event: str) -> Any:
        async def endpoint(request: Request) -> Response:
            self.seen[event].append(json.loads(await request.body()))
            self.http_cookies.append(request.headers.get("cookie"))
            if request.client is not None:
                self.peers.add(request.client.port)
            answer = self.answer.get(event, {"result": {}})
            if isinstance(answer, Response):  # before callable(): an ASGI app is callable
                return answer
            if callable(answer):
                answer = answer(self.seen[event][-1])
            if answer == SLOW:
                try:
                    await asyncio.wait_for(self.release.wait(), 30 * T)
                except TimeoutError:
                    pass
                return JSONResponse(self.after_slow.get(event, {"result": {}}))
            if answer == GARBAGE:
                return Response(b"<html>oops</html>", media_type="text/html")
            if answer == HUGE:
                return JSONResponse({"result": {"data": "x" * 200_000}})
            if isinstance(answer, int):
                return Response(b"", status_code=answer)
            return JSONResponse(answer)

        return endpoint

    async def start(self) -> Backend:
        self.release = asyncio.Event()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        async with asyncio.timeout(10 * T):
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # raises why it could not start
                await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            async with asyncio.timeout(10 * T):
                await self._task
        self._server = self._task = None

    async def wait_seen(self, event: str, count: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout * T):
            while len(self.seen[event]) < count:
                await asyncio.sleep(0.01)


async def get(url: str) -> tuple[int, str]:
    """An HTTP GET from the test's own loop (the in-process server shares it: no blocking)."""
    import httpx

    async with httpx.AsyncClient(trust_env=False) as client:
        resp = await client.get(url, timeout=5 * T)
        return resp.status_code, resp.text


async def metric(api: str, name: str, labels: str = "") -> float:
    """One sample of the server's /metrics, 0 when absent."""
    _, text = await get(f"{api}/metrics")
    key = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0
