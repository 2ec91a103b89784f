"""The client's pieces that need no server: codec, auth target, states, subscriptions, store."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from staywire.client import AuthMode, ConnectionState, Message, Recovery, Subscription
from staywire.client import messages as m
from staywire.client.auth import HeaderSource, TokenSource, connect_target
from staywire.client.state import CloseInfo, StateWatch
from staywire.client.store import SqliteOutboxStore
from staywire.exceptions import ReconnectFailed
from staywire.protocol.outbox import Outbox


def test_decode_is_lenient_about_unknown_fields_and_types():
    welcome = m.decode(b'{"type":"welcome","client":"c","session":"s","ping_interval":25,'
                       b'"pong_timeout":10,"expires_at":null,"resumed":false,"subs":[],"new":1}')
    assert isinstance(welcome, m.Welcome) and welcome.session == "s"
    assert m.decode(b'{"type":"from-the-future"}') is None
    assert m.decode(b"not json") is None
    ack = m.decode(b'{"type":"ack","id":3,"epoch":"e","offset":7,"duplicate":true}')
    assert isinstance(ack, m.Ack) and ack.duplicate and ack.recovered is None


def test_encoders_omit_absent_fields_and_splice_data():
    assert m.encode_sub(1, "room:1", None) == b'{"type":"sub","id":1,"channel":"room:1"}'
    assert m.encode_sub(2, "r", ("e", 0)) == \
        b'{"type":"sub","id":2,"channel":"r","since":{"epoch":"e","offset":0}}'
    assert m.encode_pub(3, "r", b'{"a":[1]}', "k") == \
        b'{"type":"pub","id":3,"channel":"r","data":{"a":[1]},"key":"k"}'
    assert m.encode_pong(None) == b'{"type":"pong"}'
    with pytest.raises(TypeError):
        m.encode_data(object())


@pytest.mark.parametrize("mode", list(AuthMode))
def test_connect_target_puts_the_token_where_the_mode_says(mode):
    url, headers = connect_target("ws://h:1/ws?x=1&token=old", token="T", mode=mode,
                                  cookie_name="sw", session="S", client_id=None)
    query = parse_qs(urlsplit(url).query)
    assert query["x"] == ["1"] and query["session"] == ["S"]
    assert query.get("token") == (["T"] if mode is AuthMode.QUERY else None)
    assert query.get("auth") == (["message"] if mode is AuthMode.FIRST_MESSAGE else None)
    assert headers == ({"Cookie": "sw=T"} if mode is AuthMode.COOKIE else {})


def test_connect_target_defaults_the_path():
    url, _ = connect_target("ws://h:1", token=None, mode=AuthMode.QUERY, cookie_name="c",
                            session=None, client_id="me")
    assert url == "ws://h:1/ws?client=me"


def test_connect_target_adds_the_applications_headers_and_joins_cookies():
    _, headers = connect_target("ws://h:1/ws", token="T", mode=AuthMode.COOKIE, cookie_name="sw",
                                session=None, client_id=None,
                                extra={"cookie": "sessionid=abc", "Authorization": "Bearer x"})
    assert headers == {"Authorization": "Bearer x", "Cookie": "sessionid=abc; sw=T"}
    url, headers = connect_target("ws://h:1/ws", token=None, mode=AuthMode.FIRST_MESSAGE,
                                  cookie_name="sw", session=None, client_id=None,
                                  extra={"Cookie": "sessionid=abc"})
    assert headers == {"Cookie": "sessionid=abc"} and "sessionid" not in url


@pytest.mark.parametrize("bad", [{"Sec-WebSocket-Key": "x"}, {"host": "evil"},
                                 {"Connection": "close"}, {"X-A": "1\r\nX-B: 2"},
                                 {"X A": "1"}, {"": "1"}])
def test_header_source_refuses_the_handshakes_own_and_broken_headers(bad):
    with pytest.raises(ValueError):
        HeaderSource(bad)


async def test_header_source_asks_the_provider_every_time_and_checks_it():
    answers = iter([{"Cookie": "s=1"}, {"Cookie": "s=2"}, {"Upgrade": "h2c"}])

    async def provider() -> dict[str, str]:
        return next(answers)

    source = HeaderSource(provider)
    assert source.given and await source.get() == {"Cookie": "s=1"}
    assert await source.get() == {"Cookie": "s=2"}
    with pytest.raises(ValueError):
        await source.get()
    assert not HeaderSource(None).given and await HeaderSource(None).get() == {}


async def test_token_source_asks_the_provider_every_time():
    n = 0

    async def provider() -> str:
        nonlocal n
        n += 1
        return f"t{n}"

    source = TokenSource(None, provider)
    assert [await source.get(), await source.get()] == ["t1", "t2"]
    assert source.can_refresh and not TokenSource("x", None).can_refresh
    with pytest.raises(ValueError):
        TokenSource("x", provider)


async def test_state_watch_feeds_callback_and_iterators_in_order():
    seen = []
    watch = StateWatch(ConnectionState.CLOSED, seen.append)
    changes = watch.changes()
    watch.set(ConnectionState.CONNECTING)
    watch.set(ConnectionState.OPEN)
    watch.set(ConnectionState.OPEN)  # not a change
    watch.set(ConnectionState.RECONNECTING, close=CloseInfo(1006), attempt=1, delay=0.5)
    watch.set(ConnectionState.RECONNECTING, close=CloseInfo(1006), attempt=2, delay=1.0)
    watch.set(ConnectionState.CLOSED, close=CloseInfo(1000))
    got = [c async for c in changes]
    assert got == seen
    assert [c.state.name for c in got] == ["CONNECTING", "OPEN", "RECONNECTING", "RECONNECTING",
                                           "CLOSED"]
    assert [c.attempt for c in got] == [0, 0, 1, 2, 0]
    assert [c async for c in watch.changes()] == []  # after CLOSED: nothing more comes


class FakeHost:
    def __init__(self) -> None:
        self.attached: list[Subscription] = []

    def _attach(self, sub: Subscription) -> None:
        self.attached.append(sub)
        sub._subscribed()

    def _detach(self, sub: Subscription) -> None:
        self.attached.remove(sub)

    def _position(self, channel: str):
        return None


async def test_subscription_delivers_what_it_holds_then_raises_the_terminal_error():
    host = FakeHost()
    async with Subscription(host, "room:1") as sub:
        assert host.attached == [sub]
        sub._push(Message("room:1", "e", 1, "a"))
        sub._push(Recovery("room:1", False, True, None, None))
        sub._fail(ReconnectFailed(1006, "gone", attempts=10))
        sub._push(Message("room:1", "e", 2, "late"))  # after the end: ignored
        got = [await sub.__anext__(), await sub.__anext__()]
        assert [type(i).__name__ for i in got] == ["Message", "Recovery"]
        with pytest.raises(ReconnectFailed) as info:
            await sub.__anext__()
        assert info.value.attempts == 10 and info.value.code == 1006
    assert host.attached == []


async def test_subscription_iteration_ends_after_close():
    sub = Subscription(FakeHost(), "room:1")
    await sub.__aenter__()
    reader = asyncio.create_task(_collect(sub))
    sub._push(Message("room:1", "e", 1, "x"))
    await sub.close()
    assert [i.data for i in await asyncio.wait_for(reader, 1)] == ["x"]


async def _collect(sub: Subscription) -> list:
    return [item async for item in sub]


def test_sqlite_store_keeps_entries_across_reopen(tmp_path):
    path = tmp_path / "o.sqlite"
    store = SqliteOutboxStore(path)
    box = Outbox(store=store)
    a = box.add("c", b'"a"', "ka")
    box.add("c", b'"b"', "kb")
    box.assign(a, 1)
    box.ack(1)
    store.close()
    reopened = SqliteOutboxStore(path)
    assert [(e.key, e.data, e.seq) for e in reopened.load()] == [("kb", b'"b"', 2)]
    reopened.close()


def test_sqlite_store_keeps_the_kind_and_upgrades_an_older_file(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)  # the schema before binary data: no kind column
    old.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "
                "channel TEXT NOT NULL, data BLOB NOT NULL)")
    old.execute("INSERT INTO outbox VALUES (1, 'k1', 'c', X'2231')")
    old.commit()
    old.close()
    store = SqliteOutboxStore(path)
    box = Outbox(store=store)
    box.add("c", b"\x00\xff", "k2", binary=True)
    store.close()
    reopened = SqliteOutboxStore(path)
    assert [(e.key, e.data, e.binary) for e in reopened.load()] == [
        ("k1", b'"1', False), ("k2", b"\x00\xff", True)]
    reopened.close()


def test_binary_frames_the_client_sends_and_reads():
    from staywire.protocol import binary

    frame = m.encode_pub_binary(7, "room", b"\x00\xff\x10", "k")
    header, payload = binary.decode_frame(frame)
    assert (header.id, header.channel, header.key, bytes(payload)) == (7, "room", "k",
                                                                       b"\x00\xff\x10")
    header, payload = binary.decode_server_frame(binary.msg_frame("room", "e1", 12, b"ab"))
    assert (header.channel, header.epoch, header.offset, bytes(payload)) == (
        "room", "e1", 12, b"ab")
    with pytest.raises(ValueError):
        binary.decode_server_frame(b"\x01\x00\x05{}")


def test_request_ids_stay_within_what_the_server_accepts():
    from staywire.client.requests import Requests
    from staywire.protocol.stream import MAX_ID

    reqs = Requests()
    assert [reqs.new_id(), reqs.new_id()] == [1, 2]
    reqs._next_id = MAX_ID - 1
    assert [reqs.new_id(), reqs.new_id()] == [MAX_ID, 1]


@pytest.mark.parametrize("name", ["room\n", "has space", "", "x" * 129])
def test_the_client_refuses_channel_names_the_server_refuses(name):
    from staywire.client.channels import check_channel

    with pytest.raises(ValueError, match="invalid channel name"):
        check_channel(name)
