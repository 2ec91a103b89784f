"""An acknowledged publish is never sent again, even when IndexedDB refuses to delete it.

The outbox removes a publish from IndexedDB once the server acknowledges it. If that delete
fails and the page reloads, the entry is still there, and the next page adopts it and sends it
again. Within the server's dedupe window its key turns the copy into a duplicate ack; past the
window the channel would hold it twice. The write-ahead marks the entry acknowledged in
localStorage before the delete, so a reload skips it, and the failed delete is retried."""

from __future__ import annotations

import time

from tests.browser.conftest import history, open_demo, texts, wait_for, wait_state

# IndexedDB alone: what survives a reload there.
IDB = """async () => {
  const { IdbStore } = await import('/idb-store.js');
  const idb = new IdbStore();
  const all = await idb.all();
  idb.close();
  return all.map((r) => JSON.parse(r.data).text);
}"""

# Every IndexedDB delete on this page fails, as a full or broken disk would make it.
REFUSE_DELETES = """() => {
  window.refusedDeletes = 0;
  IDBObjectStore.prototype.delete = function () {
    window.refusedDeletes += 1;
    throw new DOMException('test: the disk refused the delete', 'UnknownError');
  };
}"""

DEDUPE_WINDOW = 1.0


def test_an_acknowledged_publish_whose_delete_failed_is_not_sent_again_after_a_reload(
        context, start_demo_server) -> None:
    srv = start_demo_server(dedupe_window=DEDUPE_WINDOW)
    page = open_demo(context, srv, "channel=room:undeleted")
    page.wait_for_function("demo.sub !== null")

    # Held unacknowledged while the server is down, until it is in IndexedDB.
    srv.kill()
    wait_state(page, "RECONNECTING", 5)
    page.evaluate("() => { demo.send('once').catch(() => {}); }")
    wait_for(lambda: page.evaluate(IDB) == ["once"], 5, "the publish in IndexedDB")
    page.evaluate(REFUSE_DELETES)

    srv.start()
    wait_state(page, "OPEN", 10)
    wait_for(lambda: texts(page) == ["once"], 10, "the publish delivered")
    page.wait_for_function("document.getElementById('queued').textContent === '0'")
    page.wait_for_function("window.refusedDeletes >= 1")
    assert page.evaluate(IDB) == ["once"]  # the delete failed: IndexedDB still holds it
    # Visible: a warning, and a counter in the status.
    page.wait_for_function("demo.client.status.removeFailures >= 1")
    assert any("warning" in line and "remov" in line for line in page.evaluate(
        "Array.from(document.querySelectorAll('#log li'), (li) => li.textContent)"))
    epoch = page.evaluate("demo.received[0].epoch")

    # Past the dedupe window the server would take a second copy as a new publish.
    end = time.monotonic() + DEDUPE_WINDOW + 0.5
    wait_for(lambda: time.monotonic() > end, DEDUPE_WINDOW + 5, "the dedupe window to pass")
    page.reload()  # a new page, whose deletes work again
    wait_state(page, "OPEN", 10)
    # Its sweep retries the delete of the entry marked acknowledged, and does not send it.
    wait_for(lambda: page.evaluate(IDB) == [], 10, "IndexedDB emptied by the new page")
    msgs, _ = history(srv, "room:undeleted", epoch, 0)
    assert [m["data"]["text"] for m in msgs] == ["once"]  # exactly once
    assert page.errors == []
