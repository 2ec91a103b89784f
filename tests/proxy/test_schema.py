"""Answers are validated on the way back: off-contract ones never reach the server."""

from __future__ import annotations

import msgspec
import pytest

from staywire.protocol.codes import ErrorCode
from staywire.proxy.routes import Routes
from staywire.proxy.schema import (
    ChannelResponse,
    ConnectResponse,
    ConnectResult,
    Disconnect,
    Failure,
    RefreshResponse,
    outcome,
)


def decode(raw: bytes, kind: type) -> object:
    return outcome(msgspec.json.decode(raw, type=kind))


def test_valid_answers() -> None:
    ok = decode(b'{"result":{"user":"42","expire_at":10,"channels":["room:*"],'
                b'"data":{"name":"Ann"}}}', ConnectResponse)
    assert isinstance(ok, ConnectResult) and ok.user == "42" and ok.channels == ["room:*"]
    assert bytes(ok.data) == b'{"name":"Ann"}'  # type: ignore[arg-type]
    refused = decode(b'{"disconnect":{"code":4503,"reason":"log in"}}', ConnectResponse)
    assert refused == Disconnect(4503, "log in")
    err = decode(b'{"error":{"code":"forbidden","reason":"no"}}', ChannelResponse)
    assert err == Failure(ErrorCode.FORBIDDEN, "no")


@pytest.mark.parametrize("raw,kind", [
    (b'{}', ConnectResponse),  # no outcome
    (b'{"result":{"user":"1"},"disconnect":{"code":4503}}', ConnectResponse),  # two
    (b'{"result":{"user":""}}', ConnectResponse),  # no user
    (b'{"result":{"user":1}}', ConnectResponse),  # wrong type
    (b'{"result":{"user":"1","chanels":["*"]}}', ConnectResponse),  # a typo is not ignored
    (b'{"result":{"user":"1","subscriptions":["a b"]}}', ConnectResponse),  # not a channel
    (b'{"result":{"user":"1","subscriptions":"user:1"}}', ConnectResponse),  # not a list
    (b'{"disconnect":{"code":1000}}', ConnectResponse),  # outside 4000-4999
    (b'{"error":{"code":"no_such_code"}}', ChannelResponse),
    (b'{"result":{}}', RefreshResponse),  # neither expire_at nor expired
    (b'[1,2]', ChannelResponse),
    (b'{"result":', ChannelResponse),
])
def test_malformed_answers_are_refused(raw: bytes, kind: type) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        msgspec.json.decode(raw, type=kind)


def test_routes_first_match_wins_and_bad_entries_say_why() -> None:
    routes = Routes(["room:vip:* http://a/vip", "room:* http://a/room", "http://a/any"])
    assert routes.url_for("room:vip:1") == "http://a/vip"
    assert routes.url_for("room:2") == "http://a/room"
    assert routes.url_for("feed") == "http://a/any"
    assert Routes(["room:* http://a/room"]).url_for("feed") is None
    with pytest.raises(ValueError, match="http"):
        Routes(["room:* ftp://a"])
    with pytest.raises(ValueError, match="PATTERN URL"):
        Routes(["a b c"])
