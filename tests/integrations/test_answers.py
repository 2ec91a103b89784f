"""The framework-neutral answers: encoded as docs/proxy.md says, wrong ones refused early."""

from __future__ import annotations

import msgspec
import pytest

from staywire.integrations.answers import (
    Allow,
    Deny,
    Disconnect,
    Identify,
    Refresh,
    decode_call,
    encode,
)
from staywire.proxy.schema import ChannelResponse, ConnectResponse, RefreshResponse, RpcResponse


def test_each_answer_decodes_as_staywire_reads_it() -> None:
    ok = msgspec.json.decode(encode("connect", Identify("ann", ["room:*"], 10.0, {"a": 1})),
                             type=ConnectResponse)
    assert ok.result is not None and ok.result.user == "ann" and ok.result.expire_at == 10.0
    assert ok.result.subscriptions == []
    subs = msgspec.json.decode(encode("connect", Identify("ann", subscriptions=["user:ann"])),
                               type=ConnectResponse)
    assert subs.result is not None and subs.result.subscriptions == ["user:ann"]
    assert msgspec.json.decode(encode("connect", Disconnect(4503, "no")),
                               type=ConnectResponse).disconnect is not None
    assert msgspec.json.decode(encode("refresh", Refresh(expired=True)),
                               type=RefreshResponse).result.expired  # type: ignore[union-attr]
    pub = msgspec.json.decode(encode("publish", Allow({"x": 1})), type=ChannelResponse)
    assert bytes(pub.result.data) == b'{"x":1}'  # type: ignore[union-attr,arg-type]
    sub = msgspec.json.decode(encode("subscribe", Allow()), type=ChannelResponse)
    assert sub.result is not None and sub.result.data is msgspec.UNSET
    rpc = msgspec.json.decode(encode("rpc", Allow([1, 2])), type=RpcResponse)
    assert bytes(rpc.result.data) == b"[1,2]"  # type: ignore[union-attr]
    err = msgspec.json.decode(encode("rpc", Deny("invalid_params", "bad")), type=RpcResponse)
    assert err.error is not None and err.error.code == "invalid_params"


def test_wrong_answers_fail_in_the_application() -> None:
    with pytest.raises(TypeError, match="connect handler returns Identify or Disconnect"):
        encode("connect", Allow())
    with pytest.raises(ValueError):
        Identify("")
    with pytest.raises(ValueError, match="channel name"):
        Identify("ann", subscriptions=["no spaces"])
    with pytest.raises(ValueError):
        Disconnect(1000)
    with pytest.raises(ValueError):
        Deny("no_such_code")
    with pytest.raises(ValueError):
        Refresh()


def test_decode_call_reads_cookies_and_data() -> None:
    call = decode_call("publish", b'{"client":"c","ip":"1.2.3.4","headers":{"Cookie":'
                                  b'"session=abc; theme=dark"},"user":"ann","channel":"room:1",'
                                  b'"data":{"t":1}}')
    assert call.cookies == {"session": "abc", "theme": "dark"}
    assert call.user == "ann" and call.channel == "room:1" and call.data == {"t": 1}
    with pytest.raises(msgspec.ValidationError):
        decode_call("connect", b'{"ip":"x"}')
