"""Stop and restart the server on the same port: the page reconnects with backoff, and what
was published in the page while the server was down arrives once, in order."""

from __future__ import annotations

from tests.browser.conftest import history, open_demo, texts, wait_for, wait_state


def test_page_reconnects_with_backoff_and_sends_its_queue_once_in_order(
        context, demo_server) -> None:
    page = open_demo(context, demo_server, "channel=room:restart")
    page.wait_for_function("demo.sub !== null")
    page.evaluate("demo.send('before')")
    wait_for(lambda: texts(page) == ["before"], 5, "the first message")
    old_epoch = page.evaluate("demo.received[0].epoch")

    demo_server.kill()  # SIGKILL: no drain, no close frame
    wait_state(page, "RECONNECTING", 5)
    for i in range(1, 4):
        page.get_by_test_id("text").fill(f"queued {i}")
        page.get_by_test_id("send").click()
    page.wait_for_function("document.getElementById('queued').textContent === '3'")
    assert page.locator("#pending li").count() == 3
    # Backoff: the first attempts wait 1 s then 2 s, each times 0.5 + random().
    page.wait_for_function("demo.reconnects.length >= 2", timeout=6000)
    delays = [r["delay"] for r in page.evaluate("demo.reconnects")]
    assert 500 <= delays[0] < 1500 and 1000 <= delays[1] < 3000, delays
    assert page.get_by_test_id("countdown").inner_text().endswith(" s")

    demo_server.start()  # same port; the memory broker starts a new epoch
    wait_state(page, "OPEN", 10)
    wait_for(lambda: texts(page) == ["before", "queued 1", "queued 2", "queued 3"], 10,
             "the queued messages, once, in order")
    page.wait_for_function("document.getElementById('queued').textContent === '0'")
    assert page.locator("#pending li").count() == 0
    got = page.evaluate("demo.received")
    new_epoch = got[1]["epoch"]
    assert new_epoch != old_epoch
    assert [m["offset"] for m in got[1:]] == [1, 2, 3]
    # The new stream is not the one the page followed: recovered: false was surfaced.
    recoveries = page.evaluate("demo.recoveries")
    assert len(recoveries) == 1 and recoveries[0]["recovered"] is False
    assert recoveries[0]["epochChanged"] is True
    # The server holds each exactly once.
    msgs, ack = history(demo_server, "room:restart", new_epoch, 0)
    assert [m["data"]["text"] for m in msgs] == ["queued 1", "queued 2", "queued 3"]
    assert ack["offset"] == 3
    states = [s["state"] for s in page.evaluate("demo.states")]
    assert states == ["OPEN", "RECONNECTING", "OPEN"]
    assert page.errors == []
