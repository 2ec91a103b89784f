"""The proxies' HTTP pool against a real backend: what one call leaves for the next."""

from __future__ import annotations

import pytest
from starlette.responses import JSONResponse, RedirectResponse

from staywire.exceptions import ProxyUnavailable
from staywire.proxy.client import ProxyClient
from staywire.proxy.schema import ChannelRequest, ChannelResponse
from tests.proxy.backend import Backend

pytestmark = pytest.mark.asyncio


def body(user: str) -> ChannelRequest:
    return ChannelRequest("c1", "127.0.0.1", {"Cookie": f"session={user}"}, user, "room:1")


async def test_a_set_cookie_never_rides_on_the_next_users_call(backend: Backend) -> None:
    # The pool is shared by every connection of the node: a cookie jar would send ann's
    # session, set by one answer, with bob's call.
    answer = JSONResponse({"result": {}})
    answer.set_cookie("session", "ann-secret")
    backend.answer["subscribe"] = answer
    client = ProxyClient(timeout=2.0)
    try:
        for user in ("ann", "bob"):
            await client.call("subscribe", f"{backend.url}/subscribe", body(user),
                              ChannelResponse)
    finally:
        await client.close()
    assert backend.http_cookies == [None, None]
    # The user's own cookie travels in the body only, as forwarded.
    assert [s["headers"] for s in backend.seen["subscribe"]] == [
        {"Cookie": "session=ann"}, {"Cookie": "session=bob"}]


async def test_a_redirect_is_not_followed(backend: Backend) -> None:
    # Following it would send the forwarded cookies to wherever the Location points.
    backend.answer["subscribe"] = RedirectResponse(f"{backend.url}/publish", status_code=302)
    client = ProxyClient(timeout=2.0)
    try:
        with pytest.raises(ProxyUnavailable, match="status_3xx"):
            await client.call("subscribe", f"{backend.url}/subscribe", body("ann"),
                              ChannelResponse)
    finally:
        await client.close()
    assert backend.seen["publish"] == []
