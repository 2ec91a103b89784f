"""Connect, subscribe, publish, receive; the connection panel follows every state change."""

from __future__ import annotations

import re

from tests.browser.conftest import (
    ARTIFACTS, api_publish, open_demo, texts, wait_for, wait_state,
)


def test_demo_connects_subscribes_publishes_and_shows_state(context, demo_server) -> None:
    page = open_demo(context, demo_server, "channel=room:demo")
    # The panel: state, round trip from the heartbeat, which tab holds the connection.
    assert page.get_by_test_id("state").inner_text() == "OPEN"
    page.wait_for_function("/\\d+ ms/.test(document.getElementById('rtt').textContent)")
    tab = page.get_by_test_id("tab-id").inner_text()
    assert page.get_by_test_id("leader").inner_text() == tab
    assert page.get_by_test_id("is-leader").inner_text() == "this tab"
    assert page.get_by_test_id("sharing").inner_text() == "shared by all tabs"
    page.wait_for_function("demo.sub !== null")

    # Publish from the page, and from the server's API: both arrive, in order.
    page.get_by_test_id("text").fill("hello from the page")
    page.get_by_test_id("send").click()
    wait_for(lambda: texts(page) == ["hello from the page"], 5, "the page's own message")
    ack = api_publish(demo_server, "room:demo", {"text": "hello from the API", "from": "api"})
    wait_for(lambda: texts(page) == ["hello from the page", "hello from the API"], 5,
             "the API's message")
    offsets = page.locator("#messages li[data-testid=message]").evaluate_all(
        "els => els.map(e => Number(e.dataset.offset))")
    assert offsets == [ack["offset"] - 1, ack["offset"]]
    assert page.get_by_test_id("queued").inner_text() == "0"

    # Cut: RECONNECTING with a countdown, then OPEN again on a new connection.
    conn = page.get_by_test_id("conn-id").inner_text()
    page.get_by_test_id("cut").click()
    wait_state(page, "RECONNECTING", 2)
    assert re.fullmatch(r"\d+\.\d s", page.get_by_test_id("countdown").inner_text())
    assert page.get_by_test_id("attempts").inner_text() == "1"
    wait_state(page, "OPEN", 5)
    assert page.get_by_test_id("conn-id").inner_text() != conn
    states = [s["state"] for s in page.evaluate("demo.states")]
    assert states == ["OPEN", "RECONNECTING", "OPEN"]
    delay = page.evaluate("demo.reconnects[0].delay")
    assert 500 <= delay < 1500  # 1 s times 0.5 + random()

    page.get_by_test_id("text").fill("after the cut")
    page.get_by_test_id("send").click()
    wait_for(lambda: texts(page)[-1:] == ["after the cut"], 5, "a message after the cut")
    assert len(texts(page)) == 3
    assert page.errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000
