"""The ready-made backends answer batched subscribes (``proxy_subscribe_batch``) by
calling the application's ``on_subscribe`` once per item: FastAPI under real uvicorn,
Django under real ``manage.py runserver`` with SQLite, each behind a real Staywire node.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from staywire.config import Config, load_config
from staywire.integrations.answers import Allow, Deny, Disconnect, Identify, ProxyCall
from staywire.integrations.fastapi import StaywireProxy
from staywire.server.app import Server
from staywire_bench.ports import free_port
from tests.integrations.test_django import client, login, staywire_toml
from tests.support.django_project import DjangoProject
from tests.support.ws import connect, expect

pytestmark = pytest.mark.asyncio

T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))


def fastapi_app() -> tuple[FastAPI, list[str]]:
    """An app whose subscribe handler is async, raises for ``room:boom`` and returns the
    wrong kind for ``room:wrong``; ``requests`` logs each HTTP request's path."""
    proxy = StaywireProxy(prefix="/staywire")
    requests: list[str] = []

    @proxy.on_connect
    def on_connect(call: ProxyCall) -> Identify | Disconnect:
        user = call.cookies.get("u")
        return Identify(user) if user else Disconnect(4503, "log in first")

    @proxy.on_subscribe
    async def on_subscribe(call: ProxyCall) -> Any:
        await asyncio.sleep(0)  # a real await, as a database lookup would be
        if call.channel == "room:boom":
            raise RuntimeError("a bug in the application")
        if call.channel == "room:wrong":
            return "not an answer"
        if call.channel == f"room:{call.user}":
            return Allow()
        return Deny("forbidden", f"{call.user} is not in {call.channel}")

    app = FastAPI()

    @app.middleware("http")
    async def count(request: Any, call_next: Any) -> Any:
        requests.append(request.url.path)
        return await call_next(request)

    app.include_router(proxy.router)
    return app, requests


@pytest.fixture
async def fastapi_backend() -> AsyncIterator[tuple[str, list[str]]]:
    app, requests = fastapi_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="off"))
    task = asyncio.get_running_loop().create_task(server.serve())
    async with asyncio.timeout(10 * T):
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}", requests
    server.should_exit = True
    async with asyncio.timeout(10 * T):
        await task


async def ask_all(asks: list[tuple[Any, str]]) -> list[dict[str, Any]]:
    """Every ``(socket, channel)``'s ``sub`` sent at once (ids in order), then each reply."""
    for n, (ws, channel) in enumerate(asks):
        await ws.send(json.dumps({"type": "sub", "id": n + 1, "channel": channel}))
    replies: dict[int, dict[str, Any]] = {}
    async with asyncio.timeout(10 * T):
        for ws in {id(ws): ws for ws, _ in asks}.values():
            mine = {n + 1 for n, (w, _) in enumerate(asks) if w is ws}
            while not mine <= replies.keys():
                reply = json.loads(await ws.recv())
                if reply.get("type") in ("ack", "error") and reply.get("id") in mine:
                    replies[reply["id"]] = reply
    return [replies[n + 1] for n in range(len(asks))]


def item(user: str, channel: str) -> dict[str, Any]:
    return {"client": f"c-{user}", "ip": "127.0.0.1", "headers": {"Cookie": f"u={user}"},
            "user": user, "channel": channel}


async def test_fastapi_answers_each_item_in_order(
        fastapi_backend: tuple[str, list[str]]) -> None:
    url, requests = fastapi_backend
    batch = [item("ann", "room:ann"), item("ann", "room:bob"), item("bob", "room:boom"),
             item("bob", "room:wrong"), item("bob", "room:bob")]
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10 * T) as http:
        resp = await http.post("/staywire/subscribe", json={"batch": batch})
        assert resp.status_code == 200
        # One item's bug is that item's ``internal``; its neighbours get their own answers.
        assert resp.json() == {"batch": [
            {"result": {}},
            {"error": {"code": "forbidden", "reason": "ann is not in room:bob"}},
            {"error": {"code": "internal", "reason": ""}},
            {"error": {"code": "internal", "reason": ""}},
            {"result": {}}]}
        # A single request is answered as before; an off-contract batch is a 400.
        single = await http.post("/staywire/subscribe", json=item("ann", "room:ann"))
        assert single.json() == {"result": {}}
        bad = await http.post("/staywire/subscribe", json={"batch": [{"client": 1}]})
        assert bad.status_code == 400
        empty = await http.post("/staywire/subscribe", json={"batch": []})
        assert empty.json() == {"batch": []}
    assert requests.count("/staywire/subscribe") == 4


async def test_fastapi_behind_a_node(fastapi_backend: tuple[str, list[str]]) -> None:
    url, requests = fastapi_backend
    server = Server(Config(port=0, close_timeout=0.4, drain_window=0.1, proxy_timeout=2 * T,
                           connect_proxy_url=f"{url}/staywire/connect",
                           subscribe_proxy_url=(f"room:* {url}/staywire/subscribe",),
                           proxy_subscribe_batch=32))
    await server.start()
    users = ["ann", "bob", "cy", "dee", "eve", "fay"]
    try:
        ws_url = f"ws://127.0.0.1:{server.port}/ws"
        sockets = [await connect(ws_url, additional_headers={"Cookie": f"u={u}"})
                   for u in users]
        try:
            for ws in sockets:
                await expect(ws, "welcome")
            # Each socket asks for its own room and a neighbour's, all at once.
            asks = [(ws, i, f"room:{users[(i + k) % len(users)]}")
                    for i, ws in enumerate(sockets) for k in (0, 1)]
            replies = await ask_all([(ws, ch) for ws, _, ch in asks])
        finally:
            for ws in sockets:
                await ws.close()
        for (_, i, channel), reply in zip(asks, replies, strict=True):
            if channel == f"room:{users[i]}":
                assert reply["type"] == "ack", reply
            else:
                assert (reply["code"], reply["reason"]) == (
                    "forbidden", f"{users[i]} is not in {channel}"), reply
        calls, carried = server.backend.client.batches()["subscribe"]  # type: ignore[union-attr]
        assert carried == len(asks)
        assert requests.count("/staywire/subscribe") == calls <= len(asks)
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoProject]:
    proj = DjangoProject(tmp_path_factory.mktemp("django-batch"), STAYWIRE_CHECK_EVERY=60)
    proj.add_user("ann", "ann-pw")
    proj.add_user("bob", "bob-pw")
    proj.start()
    yield proj
    proj.stop()


async def test_django_answers_each_item_with_its_own_session(project: DjangoProject,
                                                             tmp_path: Path) -> None:
    async with client(project) as http:
        ann = await login(http, "ann", "ann-pw")
    async with client(project) as http:
        bob = await login(http, "bob", "bob-pw")
    # Straight to the view: one batch, two sessions, answers in order.
    batch = {"batch": [
        {"client": "c1", "ip": "127.0.0.1", "headers": {"Cookie": ann}, "user": "1",
         "channel": "room:ann"},
        {"client": "c2", "ip": "127.0.0.1", "headers": {"Cookie": bob}, "user": "2",
         "channel": "room:ann"},
        {"client": "c2", "ip": "127.0.0.1", "headers": {"Cookie": bob}, "user": "2",
         "channel": "room:lobby"}]}
    async with client(project) as http:
        resp = await http.post("/staywire/subscribe", json=batch)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"batch": [
        {"result": {}}, {"error": {"code": "forbidden", "reason": "not your room"}},
        {"result": {}}]}
    # Through a node with the example's staywire.toml and batches on.
    cfg = load_config(path=str(staywire_toml(project, tmp_path)), env={},
                      overrides={"port": 0, "api_port": 0, "close_timeout": 0.4,
                                 "drain_window": 0.1, "proxy_subscribe_batch": 16,
                                 "proxy_timeout": 5 * T})
    server = Server(cfg)
    await server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with connect(url, additional_headers={"Cookie": ann}) as a, \
                connect(url, additional_headers={"Cookie": bob}) as b:
            await expect(a, "welcome")
            await expect(b, "welcome")
            asks = [(a, "room:ann", "ack"), (a, "room:bob", "error"), (b, "room:bob", "ack"),
                    (b, "room:ann", "error"), (a, "room:lobby", "ack")]
            replies = await ask_all([(ws, ch) for ws, ch, _ in asks])
            assert [r["type"] for r in replies] == [want for _, _, want in asks], replies
        assert server.backend.client.batches()["subscribe"][1] == len(asks)  # type: ignore[union-attr]
    finally:
        await server.stop()
