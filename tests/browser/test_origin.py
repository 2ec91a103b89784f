"""A page served from another origin cannot open a connection (HTTP 403 at the handshake),
and the server's log says why."""

from __future__ import annotations

import http.client

from tests.browser.conftest import open_demo, wait_for, wait_state


def test_page_from_another_origin_is_refused_with_403(context, demo_server, other_origin) -> None:
    failures: list[str] = []

    def on_websocket(ws) -> None:
        ws.on("socketerror", lambda error: failures.append(error))

    page = context.new_page()
    page.on("websocket", on_websocket)
    page.goto(f"{other_origin}/index.html?url={demo_server.url}&channel=room:evil")
    wait_state(page, "RECONNECTING", 5)
    assert page.get_by_test_id("state").inner_text() == "RECONNECTING"
    page.wait_for_function("demo.reconnects.length >= 1")
    assert page.evaluate("demo.received") == []
    assert page.evaluate("demo.client.status.connId") is None
    # Chromium reports the refused upgrade with its status code.
    wait_for(lambda: any("403" in f for f in failures), 5, "a 403 handshake failure")

    # The same handshake from Python, to see the status line itself.
    conn = http.client.HTTPConnection("127.0.0.1", demo_server.port, timeout=5)
    conn.request("GET", "/ws", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "staywire.v1",
        "Origin": other_origin})
    assert conn.getresponse().status == 403
    conn.close()

    # The server's log (its stderr) names the origin it refused.
    refused = wait_for(
        lambda: [line for line in demo_server.log().splitlines()
                 if "refused handshake" in line and other_origin in line], 5,
        "the refusal in the server log")
    assert "status=403" in refused[0] and "reason=origin" in refused[0]

    # The demo's own origin still works.
    good = open_demo(context, demo_server, "channel=room:evil")
    wait_state(good, "OPEN")
