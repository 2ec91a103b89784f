"""The outbox survives a page reload: unacknowledged publishes are kept (written ahead to
localStorage inside publish(), then in IndexedDB) and sent after the reload with the same keys,
and each lands exactly once."""

from __future__ import annotations

from tests.browser.conftest import api_publish, history, open_demo, texts, wait_for, wait_state

# Everything the outbox holds for the origin: IndexedDB merged with the write-ahead.
OUTBOX = """async () => {
  const { IdbStore } = await import('/idb-store.js');
  const { WriteAheadStore } = await import('/write-ahead.js');
  const idb = new IdbStore();
  const all = await new WriteAheadStore(idb).all();
  idb.close();
  return all.map((r) => ({ key: r.key, owner: r.owner, data: JSON.parse(r.data) }));
}"""


def test_unacknowledged_publishes_survive_a_reload_and_land_once(
        context, start_demo_server, other_origin) -> None:
    # The page comes from a static server that stays up (as from a CDN) while the WebSocket
    # server is down, so it can be reloaded then.
    demo_server = start_demo_server(extra_origins=(other_origin,))
    page = open_demo(context, demo_server, f"channel=room:reload&url={demo_server.url}",
                     base=other_origin)
    page.wait_for_function("demo.sub !== null")
    page.evaluate("demo.send('before')")
    wait_for(lambda: texts(page) == ["before"], 5, "the first message")
    first_tab = page.get_by_test_id("tab-id").inner_text()

    demo_server.kill()
    wait_state(page, "RECONNECTING", 5)
    for i in range(1, 4):
        page.evaluate("t => { demo.send(t).catch(() => {}); }", f"unacked {i}")
    page.wait_for_function("document.getElementById('queued').textContent === '3'")
    stored = page.evaluate(OUTBOX)
    assert sorted(r["data"]["text"] for r in stored) == ["unacked 1", "unacked 2", "unacked 3"]
    assert {r["owner"] for r in stored} == {first_tab}
    keys = {r["key"] for r in stored}

    page.reload()
    wait_state(page, "RECONNECTING", 5)
    assert page.get_by_test_id("tab-id").inner_text() != first_tab  # a new tab
    assert {r["key"] for r in page.evaluate(OUTBOX)} == keys  # still there, same keys

    demo_server.start()
    wait_state(page, "OPEN", 10)
    wait_for(lambda: texts(page) == ["unacked 1", "unacked 2", "unacked 3"], 10,
             "the messages published before the reload, once, in order")
    page.wait_for_function("document.getElementById('adopted').textContent === '3'")
    wait_for(lambda: page.evaluate(OUTBOX) == [], 5, "an empty outbox")
    epoch = page.evaluate("demo.received[0].epoch")
    msgs, ack = history(demo_server, "room:reload", epoch, 0)
    assert [m["data"]["text"] for m in msgs] == ["unacked 1", "unacked 2", "unacked 3"]
    assert ack["offset"] == 3

    # And once more with the server up: a reload right after publishing.
    for i in range(4, 7):
        page.evaluate("t => { demo.send(t).catch(() => {}); }", f"quick {i}")
    page.reload()
    wait_state(page, "OPEN", 10)
    wait_for(lambda: page.evaluate(OUTBOX) == [], 10, "an empty outbox after the reload")
    msgs, ack = history(demo_server, "room:reload", epoch, 0)
    body = [m["data"]["text"] for m in msgs]
    assert body[:3] == ["unacked 1", "unacked 2", "unacked 3"]
    assert sorted(body[3:]) == ["quick 4", "quick 5", "quick 6"]  # each exactly once
    assert page.errors == []


BURST = """([texts, reload]) => {
  for (const t of texts) demo.send(t).catch(() => {});
  if (reload) location.reload();  // in the same task: not one microtask more for this page
}"""


def test_a_burst_of_publishes_then_an_immediate_reload_lands_each_exactly_once(
        context, demo_server) -> None:
    # publish() makes its entry durable before it returns: a reload that cuts the IndexedDB
    # transaction short must not lose it. Ten publishes in a tight loop and a reload right
    # away, three times: twice in the very same task of the page (nothing was sent, nothing
    # reached IndexedDB), once from Playwright (some were sent, maybe acked). Every message
    # lands exactly once, in order, and the outbox ends empty.
    page = open_demo(context, demo_server, "channel=room:burst")
    page.wait_for_function("demo.sub !== null")
    start = api_publish(demo_server, "room:burst", {"text": "start", "from": "api"})

    def landed() -> list[str]:
        return [m["data"]["text"] for m in history(demo_server, "room:burst", start["epoch"])[0]]

    expected = ["start"]
    for rnd in range(3):
        burst = [f"round {rnd} msg {i}" for i in range(10)]
        expected += burst
        first_tab = page.get_by_test_id("tab-id").inner_text()
        if rnd == 1:
            page.evaluate(BURST, [burst, False])
            page.reload()
        else:
            with page.expect_navigation():
                page.evaluate(BURST, [burst, True])
        wait_state(page, "OPEN", 10)
        assert page.get_by_test_id("tab-id").inner_text() != first_tab  # a new page
        try:
            wait_for(lambda: len(landed()) >= len(expected), 10,
                     f"round {rnd}: {len(expected)} messages in the channel")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the channel holds {landed()}") from exc
        wait_for(lambda: page.evaluate(OUTBOX) == [], 10, f"round {rnd}: an empty outbox")
        assert landed() == expected  # each exactly once, in order
    assert page.errors == []
