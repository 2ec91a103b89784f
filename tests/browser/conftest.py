"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, real servers.

Every test starts its own ``staywire serve`` on a free loopback port (stopped by PID at the
end, its log kept in test-artifacts/) and gets a fresh browser context, so tabs of one test
share an origin's storage and locks and tests share nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from tests.support.servers import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "staywire" / "static"
ARTIFACTS = ROOT / "test-artifacts"
API_KEY = "browser-test-key"
T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    # Imported here: the rest of the suite does not need Playwright.
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (make system-deps)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 720})
    ctx.set_default_timeout(10_000 * T)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def start_demo_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerProcess]]:
    """Starts ``staywire serve --allow-anonymous --demo --allowed-origin http://127.0.0.1:PORT``
    (plus ``extra_origins``, and any other setting in ``config``); each is killed by PID at the
    end and its log kept."""
    started: list[ServerProcess] = []

    def start(extra_origins: tuple[str, ...] = (), **config: Any) -> ServerProcess:
        port = free_port()
        srv = ServerProcess(
            {
                "allow_anonymous": True,
                "anonymous_channels": ["*"],
                "demo": True,
                "allowed_origins": [f"http://127.0.0.1:{port}", *extra_origins],
                "api_key": API_KEY,
                **config,
            },
            port,
        )
        started.append(srv)
        return srv.start()

    try:
        yield start
    finally:
        for i, srv in enumerate(started):
            srv.kill()
            ARTIFACTS.mkdir(exist_ok=True)
            suffix = f"-{i}" if i else ""
            (ARTIFACTS / f"{request.node.name}{suffix}-server.log").write_text(srv.log())
            srv.close()


@pytest.fixture
def demo_server(start_demo_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_demo_server()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def other_origin() -> Iterator[str]:
    """A tiny http.server on another port serving the same static files: another origin."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(STATIC)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------- helpers


def open_demo(context: Any, srv: ServerProcess, query: str = "", *, base: str | None = None,
              wait_open: bool = True) -> Any:
    """A new tab on the demo page; waits until its panel says OPEN."""
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
    page.goto(f"{base or srv.http}/{'?' + query if query else ''}")
    if wait_open:
        wait_state(page, "OPEN")
    return page


def wait_state(page: Any, state: str, timeout: float = 10.0) -> None:
    page.wait_for_function(
        "s => document.getElementById('state').dataset.state === s", arg=state,
        timeout=timeout * 1000 * T)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
             ) -> Any:
    """Polls ``predicate`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout * T
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def received(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("demo.received")


def texts(page: Any) -> list[str]:
    """The texts of the chat messages shown on the page, in order."""
    return page.locator("#messages li[data-testid=message] .text").all_inner_texts()


def api_publish(srv: ServerProcess, channel: str, data: Any, key: str | None = None
                ) -> dict[str, Any]:
    body = {"channel": channel, "data": data}
    if key is not None:
        body["key"] = key
    req = urllib.request.Request(
        f"{srv.api}/api/publish", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5 * T) as resp:
        return json.loads(resp.read())


def history(srv: ServerProcess, channel: str, epoch: str, offset: int = 0
            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every publication after ``(epoch, offset)`` as the server replays it, and the ack;
    read by an independent client (the ``websockets`` library)."""
    with ws_connect(srv.url, subprotocols=["staywire.v1"], open_timeout=5 * T) as ws:
        msgs: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5 * T
        welcomed = False
        while not welcomed:
            welcomed = json.loads(ws.recv(timeout=5 * T))["type"] == "welcome"
        ws.send(json.dumps({"type": "sub", "id": 1, "channel": channel,
                            "since": {"epoch": epoch, "offset": offset}}))
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=5 * T))
            if msg["type"] == "msg":
                msgs.append(msg)
            elif msg["type"] in ("ack", "error") and msg.get("id") == 1:
                return msgs, msg
        raise AssertionError("no ack to the history sub")


def connections(srv: ServerProcess) -> float:
    from tests.support.servers import metric

    return metric(srv.api, "staywire_connections")
