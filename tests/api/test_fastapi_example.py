"""examples/fastapi_publish/app.py under real uvicorn, publishing through AsyncApiClient to a
real Staywire server: a subscriber receives what a POST to the app published."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import API_KEY
from tests.support.servers import free_port, wait_http
from tests.support.ws import connect, expect, request

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_publish"


def test_docs_show_the_example_as_it_is() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    shown = re.search(r"## From FastAPI.*?```python\n(.*?)```", doc, re.S)
    assert shown is not None, "docs/api.md shows no FastAPI example"
    assert shown.group(1) in (EXAMPLE / "app.py").read_text()


@pytest.fixture
def app_url(api_server) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAYWIRE_")}
    env.update(STAYWIRE_API_KEY=API_KEY, API_URL=api_server.api)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLE), "app:app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdin=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/openapi.json", timeout=20,
                  alive=lambda: proc.poll() is None)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def test_a_post_to_the_app_reaches_a_subscriber(api_server, app_url) -> None:
    async with connect(api_server.url) as ws:
        await expect(ws, "welcome")
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "room:lobby"}))[
            "type"] == "ack"
        async with httpx.AsyncClient(base_url=app_url, trust_env=False) as http:
            sent = {"author": "ann", "text": "hello"}
            headers = {"Idempotency-Key": "m-1"}
            resp = await http.post("/rooms/lobby/messages", json=sent, headers=headers)
            assert (resp.status_code, resp.json()) == (201, {"offset": 1})
            msg = await expect(ws, "msg")
            assert (msg["channel"], msg["offset"], msg["data"]) == ("room:lobby", 1, sent)
            # The retried POST (same key) publishes nothing new; a bad room is a 400.
            again = await http.post("/rooms/lobby/messages", json=sent, headers=headers)
            assert (again.status_code, again.json()) == (201, {"offset": 1})
            bad = await http.post("/rooms/no room/messages", json=sent)
            assert bad.status_code == 400 and "not published" in bad.json()["detail"]
            # Many handlers at once share the client's connections.
            replies = await asyncio.gather(*(http.post("/rooms/lobby/messages", json=sent)
                                             for _ in range(3)))
            assert sorted(r.json()["offset"] for r in replies) == [2, 3, 4]
            assert [(await expect(ws, "msg"))["offset"] for _ in range(3)] == [2, 3, 4]
