"""Auth over real sockets: query, cookie and first-message tokens; expiry; refresh; redaction."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import jwt
import pytest

from tests.support.servers import metric
from tests.support.ws import closed_with, connect, expect, request

pytestmark = pytest.mark.asyncio
SECRET = "test-secret-0123456789abcdef0123456789"


def token(sub: str = "alice", ttl: float = 60, channels: list[str] | None = None,
          secret: str = SECRET) -> str:
    claims = {"sub": sub, "exp": int(time.time() + ttl) if ttl >= 1 else time.time() + ttl,
              "channels": channels if channels is not None else ["room:*"]}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def jwt_server(server_factory):
    return server_factory(jwt_secret=SECRET, auth_timeout=0.6, log_level="info")


async def test_first_message_auth_and_channel_permissions(jwt_server) -> None:
    async with connect(jwt_server.url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token()}))
        welcome = await expect(ws, "welcome")
        assert welcome["expires_at"] > time.time()
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "room:1"}))["type"] == "ack"
        denied = await request(ws, {"type": "sub", "id": 2, "channel": "admin"})
        assert denied["code"] == "forbidden"
        denied = await request(ws, {"type": "pub", "id": 3, "channel": "admin", "data": 1})
        assert denied["code"] == "forbidden"
        # The connection stays open after a refusal.
        assert (await request(ws, {"type": "pub", "id": 4, "channel": "room:1", "data": 1}))[
            "type"] == "ack"


async def test_token_in_query(jwt_server) -> None:
    async with connect(f"{jwt_server.url}?token={token()}") as ws:
        assert (await expect(ws))["type"] == "welcome"


async def test_token_in_cookie(jwt_server) -> None:
    headers = {"Cookie": f"other=1; staywire_token={token()}"}
    async with connect(jwt_server.url, additional_headers=headers) as ws:
        assert (await expect(ws))["type"] == "welcome"


async def test_bad_token_closes_4501_and_never_reaches_logs(jwt_server) -> None:
    secret_value = token(secret="another-secret-that-is-long-enough!!")
    async with connect(f"{jwt_server.url}?token={secret_value}") as ws:
        code, reason = await closed_with(ws)
    assert code == 4501 and "invalid token" in reason
    await asyncio.sleep(0.2)
    log = jwt_server.log()
    assert "code=4501" in log
    assert secret_value not in log and secret_value[:20] not in log
    with urllib.request.urlopen(f"{jwt_server.api}/metrics") as resp:
        metrics = resp.read()
    assert secret_value.encode()[:20] not in metrics


async def test_token_redacted_from_refused_handshake_log(server_factory) -> None:
    srv = server_factory(jwt_secret=SECRET)
    import websockets

    with pytest.raises(websockets.InvalidStatus):
        async with connect(f"{srv.url}?token=SUPERSECRETVALUE&x=1", origin="https://evil.test"):
            pass
    await asyncio.sleep(0.1)
    log = srv.log()
    assert "token=[REDACTED]" in log and "SUPERSECRETVALUE" not in log


async def test_expired_token_in_handshake_closes_4401(jwt_server) -> None:
    async with connect(f"{jwt_server.url}?token={token(ttl=-5)}") as ws:
        assert (await closed_with(ws))[0] == 4401


async def test_message_before_auth_closes_4501(jwt_server) -> None:
    async with connect(jwt_server.url) as ws:
        await ws.send(json.dumps({"type": "sub", "id": 1, "channel": "room:1"}))
        code, reason = await closed_with(ws)
    assert code == 4501 and "auth first" in reason


async def test_no_auth_within_auth_timeout_closes_4508(jwt_server) -> None:
    async with connect(jwt_server.url) as ws:
        started = time.monotonic()
        assert (await closed_with(ws))[0] == 4508
        assert 0.5 <= time.monotonic() - started < 3


async def test_expiry_closes_4401_and_refresh_in_band_keeps_the_connection(jwt_server) -> None:
    async with connect(jwt_server.url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token(ttl=1.2)}))
        await expect(ws, "welcome")
        assert (await closed_with(ws, timeout=5))[0] == 4401
    async with connect(jwt_server.url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token(ttl=1.2)}))
        first = await expect(ws, "welcome")
        await ws.send(json.dumps({"type": "auth", "token": token(ttl=60)}))
        again = await expect(ws, "welcome")
        assert again["session"] == first["session"] and again["expires_at"] > first["expires_at"]
        await asyncio.sleep(1.6)
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "room:9"}))["type"] == "ack"


async def test_refresh_with_bad_token_is_an_error_not_a_close(jwt_server) -> None:
    async with connect(jwt_server.url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token()}))
        await expect(ws, "welcome")
        await ws.send(json.dumps({"type": "auth", "token": "garbage"}))
        err = await expect(ws, "error")
        assert err["code"] == "unauthorized"
        await ws.send(json.dumps({"type": "auth", "token": token(sub="mallory")}))
        assert (await expect(ws, "error"))["code"] == "forbidden"
        assert (await request(ws, {"type": "sub", "id": 1, "channel": "room:1"}))["type"] == "ack"


async def test_refresh_that_narrows_the_channels_ends_those_subscriptions_out_loud(
        jwt_server) -> None:
    """A subscription never ends in silence: each channel the new token no longer grants
    gets ``error {code: forbidden, channel}`` (no id) before the new ``welcome``."""
    async with connect(jwt_server.url) as ws, connect(jwt_server.url) as pub:
        await ws.send(json.dumps({"type": "auth", "token": token(channels=["room:*"])}))
        await expect(ws, "welcome")
        await pub.send(json.dumps({"type": "auth", "token": token(channels=["room:*"])}))
        await expect(pub, "welcome")
        for rid, channel in ((1, "room:1"), (2, "room:2")):
            assert (await request(ws, {"type": "sub", "id": rid, "channel": channel}))["type"] \
                == "ack"
        await ws.send(json.dumps({"type": "auth", "token": token(channels=["room:1"])}))
        assert await expect(ws) == {"type": "error", "code": "forbidden", "channel": "room:2",
                                    "reason": "the refreshed token does not grant this channel"}
        assert (await expect(ws))["type"] == "welcome"
        for rid, channel in ((3, "room:2"), (4, "room:1")):
            await request(pub, {"type": "pub", "id": rid, "channel": channel, "data": channel})
        msg = await expect(ws, "msg")
        assert (msg["channel"], msg["data"]) == ("room:1", "room:1")  # nothing of room:2
        assert (await request(ws, {"type": "sub", "id": 5, "channel": "room:2"}))["code"] \
            == "forbidden"


async def test_anonymous_refused_without_allow_anonymous(jwt_server) -> None:
    # No token, no allow_anonymous: the connection waits for auth (and times out, 4508).
    async with connect(jwt_server.url) as ws:
        assert (await closed_with(ws))[0] == 4508
    assert metric(jwt_server.api, "staywire_closes_total", 'code="4508"') >= 1
