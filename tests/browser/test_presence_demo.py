"""The demo page shows who is in the room: two people in two browsers see each other, and
one leaving (after the grace period) is gone from the other's list."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, T, open_demo, wait_for

pytestmark = pytest.mark.browser


def members(page) -> list[dict]:
    return page.evaluate("demo.members")


def test_two_users_see_each_other_in_the_room(browser, context, start_demo_server) -> None:
    srv = start_demo_server(presence_grace=0.5)
    first = open_demo(context, srv, "channel=room:who")
    other = browser.new_context(viewport={"width": 1100, "height": 720})
    try:
        other.set_default_timeout(10_000 * T)
        second = open_demo(other, srv, "channel=room:who")
        for page in (first, second):
            wait_for(lambda p=page: len(members(p)) == 2, 10, "two members on each page")
        ids = {m["client"] for m in members(first)}
        assert ids == {first.evaluate("demo.client.status.clientId"),
                       second.evaluate("demo.client.status.clientId")}
        assert first.get_by_test_id("member-count").inner_text() == "2 people"
        assert first.locator("[data-testid=member]").count() == 2
        shown = first.locator("[data-testid=member]").all_inner_texts()
        assert sum("(you)" in text for text in shown) == 1, shown
        ARTIFACTS.mkdir(exist_ok=True)
        first.screenshot(path=str(ARTIFACTS / "demo-presence.png"), full_page=True)
    finally:
        other.close()  # the second person closes the browser
    wait_for(lambda: len(members(first)) == 1, 10, "the other person's leave")
    assert first.get_by_test_id("member-count").inner_text() == "1 person"
    assert any("left" in e["text"] for e in first.evaluate("demo.events"))
    assert first.errors == []
