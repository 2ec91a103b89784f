"""The admin page on the API port, in Chromium against a real ``staywire serve``.

It renders with no console error, refuses a wrong key, shows the node, the charts move
under load (publications, deliveries, connects, closes by code), a channel search finds
the channel with its subscriber and who is present, the last slow-consumer close is
listed, and a disconnect
from the page closes the user's connection with the code the page asked for.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import jwt
import pytest
from websockets.sync.client import connect as ws_connect

from tests.browser.conftest import API_KEY, ARTIFACTS, T, api_publish, wait_for

pytestmark = pytest.mark.slow  # runs first (tests/conftest.py)

SECRET = "admin-test-secret-0123456789abcdef"


def _token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 300, "channels": ["*"]}, SECRET)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5 * T) as resp:  # noqa: S310 - loopback
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _open_admin(context: Any, url: str) -> Any:
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
    page.on("console", lambda msg: page.errors.append(msg.text)  # type: ignore[attr-defined]
            if msg.type == "error" else None)
    page.goto(url)
    return page


def test_the_admin_page_is_on_the_api_port_only(start_demo_server) -> None:
    srv = start_demo_server()
    status, headers, body = _get(f"{srv.api}/admin")
    assert status == 200 and b"Staywire admin" in body
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert _get(f"{srv.api}/admin/admin.js")[0] == 200
    assert _get(f"{srv.api}/admin/../pyproject.toml")[0] == 404
    assert _get(f"{srv.api}/admin/nope.js")[0] == 404
    # The public port never serves it.
    assert _get(f"{srv.http}/admin")[0] == 404


def test_under_its_own_csp_it_signs_in_and_shows_the_node(context, start_demo_server) -> None:
    # Locator waits only: they run in Playwright's own world, so the page's CSP applies to
    # the page alone and a violation would be a console error.
    srv = start_demo_server()
    page = _open_admin(context, f"{srv.api}/admin")
    page.fill("#key", API_KEY)
    page.click("#signin-form button")
    page.locator("#nodes tbody tr").first.wait_for()
    page.locator("#status.ok").wait_for()
    page.locator("#c-publications").wait_for()
    assert page.locator("#nodes tbody tr").count() == 1
    assert page.errors == []  # type: ignore[attr-defined]


def test_admin_shows_live_figures_and_disconnects_a_user(browser, start_demo_server) -> None:
    # The demo turns presence on for room:* (docs/configuration.md, --demo).
    srv = start_demo_server(jwt_secret=SECRET, max_send_buffer=65536)
    # bypass_csp: the waits below evaluate expressions in the page, which its CSP forbids
    # (no 'unsafe-eval'); the test above holds the page to the CSP itself.
    context = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    context.set_default_timeout(10_000 * T)
    try:
        _live(context, srv)
    finally:
        context.close()


def _live(context: Any, srv: Any) -> None:
    page = _open_admin(context, f"{srv.api}/admin")

    page.fill("#key", "not the key")
    page.click("#signin-form button")
    page.wait_for_function("document.getElementById('status').textContent === 'wrong API key'")
    # Chromium logs the refused request itself as a console error: the one expected here.
    assert [e for e in page.errors if "status of 401" not in e] == []  # type: ignore[attr-defined]
    page.errors.clear()  # type: ignore[attr-defined]
    page.fill("#key", API_KEY)
    page.click("#signin-form button")
    page.wait_for_function("document.querySelectorAll('#nodes tbody tr').length === 1")

    # A user, subscribed: the one the page will disconnect.
    mallory = ws_connect(f"{srv.url}?token={_token('mallory')}",
                         subprotocols=["staywire.v1"], open_timeout=5 * T)
    assert json.loads(mallory.recv(timeout=5 * T))["type"] == "welcome"
    mallory.send(json.dumps({"type": "sub", "id": 1, "channel": "room:admin"}))
    assert json.loads(mallory.recv(timeout=5 * T))["type"] == "ack"

    # Load for the charts: publications, and connections opening and closing.
    stop = threading.Event()

    def load() -> None:
        n = 0
        deadline = time.monotonic() + 30 * T
        while not stop.is_set() and time.monotonic() < deadline:
            api_publish(srv, "room:admin", {"n": n})
            with ws_connect(srv.url, subprotocols=["staywire.v1"], open_timeout=5 * T) as ws:
                ws.recv(timeout=5 * T)
            n += 1
            time.sleep(0.02)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        moved = ("s => s.publications.some(v => v > 0) && s.deliveries.some(v => v > 0)"
                 " && s.connects.some(v => v > 0) && Object.keys(s.closes).includes('1000')")
        page.wait_for_function(f"({moved})(window.staywireAdmin.series)", timeout=15_000 * T)
    finally:
        stop.set()
        loader.join(timeout=10 * T)

    page.fill("#pattern", "room:*")
    page.click("#channels-form button")
    page.wait_for_function(
        "[...document.querySelectorAll('#channels tbody tr')]"
        ".some(r => r.cells[0].textContent === 'room:admin' && r.cells[1].textContent === '1'"
        " && r.cells[2].textContent === '1' && r.cells[3].textContent === '1')")

    # A slow consumer: a reader that never reads while the channel is flooded.
    slow = ws_connect(f"{srv.url}?token={_token('sloth')}", subprotocols=["staywire.v1"],
                      open_timeout=5 * T, max_size=None, max_queue=16)
    assert json.loads(slow.recv(timeout=5 * T))["type"] == "welcome"
    slow.send(json.dumps({"type": "sub", "id": 1, "channel": "flood"}))
    assert json.loads(slow.recv(timeout=5 * T))["type"] == "ack"
    # websockets' reader stops reading once max_queue (16) messages wait: from then on
    # the socket's buffers fill, then the node's bound, and the node closes it with 4008.
    blob = "x" * 16_000
    wait_for(lambda: _flood_until_closed(srv, blob), 20, "the slow consumer's close")
    page.wait_for_function(
        "[...document.querySelectorAll('#recent tbody tr')]"
        ".some(r => r.cells[2].textContent === '4008' && r.cells[3].textContent === 'sloth')",
        timeout=10_000 * T)
    slow.close()

    # Publish from the page, received by mallory.
    page.fill("#pub-channel", "room:admin")
    page.fill("#pub-data", '{"text": "from the admin page"}')
    page.click("#publish-form button")
    page.wait_for_function("document.getElementById('pub-result').textContent"
                           ".startsWith('published at offset')")
    for _ in range(500):  # bounded: the load's publications come first
        message = json.loads(mallory.recv(timeout=5 * T))
        if message.get("data") == {"text": "from the admin page"}:
            break
    else:
        pytest.fail("the page's publication never arrived")

    # Disconnect mallory from the page: closed with 4510, told not to come back.
    page.fill("#dis-user", "mallory")
    page.fill("#dis-reason", "banned")
    page.click("#disconnect-form button")
    page.wait_for_function("document.getElementById('dis-result').textContent"
                           " === 'closed 1 connection(s) with 4510'")
    with pytest.raises(Exception):  # noqa: B017 - the close is the point
        for _ in range(1000):
            mallory.recv(timeout=5 * T)
    assert mallory.close_code == 4510 and mallory.close_reason == "banned"

    assert page.errors == []  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)
    assert (ARTIFACTS / "admin.png").stat().st_size > 10_000


def _flood_until_closed(srv: Any, blob: str) -> bool:
    """Publish big messages on ``flood`` until the node has closed a slow consumer."""
    for _ in range(20):
        api_publish(srv, "flood", blob)
    status, _, body = _get(f"{srv.api}/metrics")
    return status == 200 and b'staywire_closes_total{code="4008"}' in body
