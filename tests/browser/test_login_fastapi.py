"""docs/fastapi.md's example end to end in Chromium, under real uvicorn: the page logs in
through the app's own /login (which sets its cookie), opens a Staywire connection with no
token and is identified as that user; the app's /logout then ends it at the next refresh,
and the client's reconnect is refused.

One host for the cookie: the app on 127.0.0.1:A (uvicorn, which also serves the page and
the browser client), Staywire on 127.0.0.1:B with allowed_origins naming the app's origin
and the doc's own staywire.toml lines.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from tests.browser.conftest import ARTIFACTS, STATIC, T
from tests.integrations.test_fastapi import DOC, example
from tests.support.servers import ServerProcess, free_port

# The page of this test (the doc's example has none): the browser client, served by the app.
PAGE = """<!doctype html>
<title>FastAPI and Staywire</title>
<script type="module">
  import { Client } from '/static/staywire/staywire.js';
  window.Client = Client;
  window.ready = true;
</script>
"""

RECORD_CLOSES = """() => {
  window.closes = [];
  let last = staywire.status.lastClose;
  staywire.on('status', (s) => {
    if (s.lastClose && s.lastClose !== last) { last = s.lastClose; closes.push(s.lastClose.code); }
  });
}"""


@pytest.fixture
def app() -> Iterator[str]:
    module = example()
    module.SESSION_SECONDS = 0.5  # refresh soon, so the test sees logout end the session
    module.app.mount("/static/staywire", StaticFiles(directory=STATIC))
    module.app.get("/", response_class=HTMLResponse)(lambda: PAGE)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(module.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10 * T
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10 * T)


def staywire_toml(app: str, directory: Path) -> Path:
    """docs/fastapi.md's staywire.toml, pointed at the app's port, with its origin allowed."""
    block = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None and "127.0.0.1:8000" in block.group(1)
    path = directory / "staywire.toml"
    path.write_text(f'allowed_origins = ["{app}"]\n'
                    + block.group(1).replace("http://127.0.0.1:8000", app))
    return path


def test_fastapi_login_identifies_the_socket_and_logout_ends_it(
        context: Any, app: str, tmp_path: Path, request: Any) -> None:
    ws_port = free_port()
    ws_url = f"ws://127.0.0.1:{ws_port}/ws"
    staywire = ServerProcess({"config": str(staywire_toml(app, tmp_path))}, ws_port)
    try:
        staywire.start()
        page = context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{app}/")
        page.wait_for_function("window.ready === true")

        # The app's own login sets its session cookie (httponly: the page never sees it).
        assert page.evaluate("""async () => (await fetch('/login', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({user: 'ann'})})).status""") == 200
        assert page.evaluate("document.cookie") == ""
        page.evaluate("""async (url) => {
          window.staywire = new Client(url, { share: false, persist: false });
          await staywire.connect();
        }""", ws_url)
        assert sockets == [ws_url]  # no token in the URL: the cookie went with the upgrade
        # Identified as ann, by the app: its subscribe handler allows ann her own room only.
        verdicts = page.evaluate("""async () => {
          const verdict = (channel) => staywire.subscribe(channel).then(
            () => 'ok', (err) => `${err.code}: ${err.reason}`);
          return [await verdict('room:ann'), await verdict('room:bob')];
        }""")
        assert verdicts == ["ok", "forbidden: not your room"]

        page.evaluate(RECORD_CLOSES)
        assert page.evaluate("async () => (await fetch('/logout', {method: 'POST'})).status") == 200
        page.wait_for_function("staywire.state === 'CLOSED'", timeout=10_000 * T)
        # 4401: the next refresh saw the logout. The client reconnects (its credentials are
        # the cookies); the app knows no such session any more: 4503, refused for good.
        assert page.evaluate("closes") == [4401, 4503]
        assert page.evaluate("staywire.status.lastClose.reason") == "log in first"
        assert errors == []
    finally:
        staywire.kill()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{request.node.name}-server.log").write_text(staywire.log())
        staywire.close()
