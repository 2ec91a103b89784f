"""A corpus of bad inputs over real sockets. Each gets its documented answer, and a
well-behaved client connected meanwhile sees no error and no delay beyond a bound."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import struct
import time
from pathlib import Path

import jwt
import pytest
import websockets

from tests.support.ws import RawSocket, closed_with, connect, expect, raw_frame

pytestmark = pytest.mark.asyncio
SECRET = "hardening-secret-0123456789abcdef0123"
BOUND = 0.5  # seconds: the worst round trip the bystander may see while others misbehave


class Bystander:
    """Pings the server in a loop and records round trips and anything unexpected."""

    def __init__(self, url: str, first: dict | None = None) -> None:
        self.url = url
        self.first = first
        self.rtts: list[float] = []
        self.problems: list[str] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Bystander:
        self.ws = await connect(self.url).__aenter__()
        if self.first is not None:
            await self.ws.send(json.dumps(self.first))
        await expect(self.ws, "welcome")
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        n = 0
        while True:
            n += 1
            sent = time.monotonic()
            await self.ws.send(json.dumps({"type": "ping", "t": n}))
            msg = await expect(self.ws, timeout=5)
            if msg != {"type": "pong", "t": n}:
                self.problems.append(repr(msg))
            self.rtts.append(time.monotonic() - sent)
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        for _ in range(100):  # a few more round trips after the last bad input
            if len(self.rtts) > 5 or self._task.done():
                break
            await asyncio.sleep(0.02)
        done = self._task.done()
        self._task.cancel()
        await self.ws.close()
        assert not done, f"bystander loop ended: {self._task.exception()!r}"
        assert not self.problems, self.problems
        assert len(self.rtts) > 5 and max(self.rtts) < BOUND, max(self.rtts)


async def raw(srv, headers: dict | None = None) -> RawSocket:
    sock, head = await RawSocket.open("127.0.0.1", srv.port, headers=headers)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_corpus_on_an_open_connection(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], max_message_size=4096,
                         rate_messages=1000, rate_burst=1000)
    async with Bystander(srv.url):
        cases: list[tuple[str, bytes, object]] = [
            ("invalid utf-8", raw_frame(1, b'{"type":"ping","t":"\xed\xa0\x80"}'), 1007),
            ("oversized frame", raw_frame(1, b" " * 5000), 1009),
            ("fragmented oversized", raw_frame(1, b"[" * 3000, fin=False)
             + raw_frame(0, b"]" * 3000), 1009),
            ("reserved opcode", raw_frame(3, b"x"), 1002),
            ("rsv bits", raw_frame(1, b"{}", rsv=1), 1002),
            ("continuation first", raw_frame(0, b"{}"), 1002),
            ("control frame too long", raw_frame(9, b"p" * 126), 1002),
            ("bad close code", raw_frame(8, struct.pack("!H", 999)), 1002),
        ]
        for name, data, code in cases:
            sock = await raw(srv)
            await sock.read_frame()  # welcome
            sock.send(data)
            assert await sock.close_code() == code, name
            sock.abort()
        errors = [
            (b"\x00\xff binary junk", 2, "binary_unsupported"),
            (b"[1,2,3]", 1, "bad_request"),
            (b'"just a string"', 1, "bad_request"),
            (b'{"type":"sub","id":"one","channel":"c"}', 1, "bad_request"),
            (b'{"type":"sub","id":99999999999999999999,"channel":"c"}', 1, "bad_request"),
            (b'{"type":"pub","id":1,"channel":"c","data":' + b"[" * 2000 + b"]" * 2000 + b"}",
             1, "bad_request"),
            (b'{"type":"nope"}', 1, "unknown_type"),
            (b'{"type":"sub","id":1,"channel":"../../etc/passwd x"}', 1, "bad_request"),
        ]
        sock = await raw(srv)
        await sock.read_frame()
        for payload, opcode, code in errors:
            sock.send(raw_frame(opcode, payload))
            op, reply = await sock.read_frame()
            assert json.loads(reply)["code"] == code, payload[:40]
        sock.abort()


async def test_flood_is_limited_without_hurting_others(server_factory) -> None:
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"])
    async with Bystander(srv.url):
        sock = await raw(srv)
        await sock.read_frame()
        sock.send(raw_frame(1, b'{"type":"ping"}') * 2000)
        seen = set()
        async with asyncio.timeout(10):
            while True:
                op, payload = await sock.read_frame()
                if op == 8:
                    assert struct.unpack("!H", payload[:2])[0] == 4029
                    break
                seen.add(json.loads(payload)["type"])
        assert seen == {"pong", "error"}
        sock.abort()


async def test_auth_corpus(server_factory) -> None:
    srv = server_factory(jwt_secret=SECRET, auth_timeout=1.0)
    good = jwt.encode({"sub": "ok", "exp": int(time.time()) + 60, "channels": ["*"]}, SECRET)
    expired = jwt.encode({"sub": "ok", "exp": int(time.time()) - 1}, SECRET)
    forged = jwt.encode({"sub": "admin", "channels": ["*"]}, "not-the-secret-but-long-enough!!")
    none_alg = jwt.encode({"sub": "admin"}, None, algorithm="none")
    async with Bystander(srv.url, {"type": "auth", "token": good}):
        for query, code in [(f"token={expired}", 4401), (f"token={forged}", 4501),
                            (f"token={none_alg}", 4501), ("token=%00%ff%fe", 4501),
                            ("token=" + "A" * 5000, 4501)]:
            async with connect(f"{srv.url}?{query}") as ws:
                assert (await closed_with(ws))[0] == code, query[:30]
        for query in ["%%%", "session=../../x&session=1", "a=" + "%" * 300, "token="]:
            async with connect(f"{srv.url}?{query}") as ws:
                # Garbage in the query is no credential: the connection waits for auth.
                await ws.send(json.dumps({"type": "auth", "token": good}))
                assert (await expect(ws, "welcome"))["resumed"] is False
        async with connect(srv.url) as ws:  # an operation before auth
            await ws.send(json.dumps({"type": "pub", "id": 1, "channel": "c", "data": 1}))
            assert (await closed_with(ws))[0] == 4501
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(srv.url, origin="https://attacker.example"):
                pass
        assert info.value.response.status_code == 403


async def test_random_frames_fuzz(server_factory) -> None:
    """Random and malformed frames from several sockets; the server must answer each
    connection with a close (or an error reply) and go on serving the bystander."""
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], max_message_size=2048)
    rng = random.Random(1234)
    async with Bystander(srv.url):
        for _ in range(60):
            sock = await raw(srv)
            await sock.read_frame()
            for _ in range(rng.randint(1, 6)):
                opcode = rng.choice([0, 1, 1, 2, 3, 8, 9, 10, 11, 15])
                payload = rng.randbytes(rng.randint(0, 300))
                if rng.random() < 0.3:
                    payload = json.dumps({"type": rng.choice(["sub", "pub", "ping"]),
                                          "id": rng.randint(-2, 5), "channel": "c",
                                          "data": rng.random()}).encode()
                sock.send(raw_frame(opcode, payload, fin=rng.random() < 0.8,
                                    rsv=rng.choice([0, 0, 0, 1])))
            if rng.random() < 0.5:
                sock.send(rng.randbytes(rng.randint(1, 64)))  # not even a frame
            sock.abort()
        await asyncio.sleep(0.3)


V2 = {"Sec-WebSocket-Protocol": "staywire.v2, staywire.v1"}
BINARY_VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "binary.json")
                            .read_text())
BINARY_CONFIG = """
max_invalid = 100000
max_data_size = 512

[channels."text:*"]
binary = false
"""


def _bin(header: bytes, payload: bytes = b"") -> bytes:
    return bytes((1, len(header) >> 8, len(header) & 0xFF)) + header + payload


async def _reply(sock: RawSocket) -> dict:
    while True:
        op, payload = await sock.read_frame()
        assert op == 1, (op, payload[:60])  # a reply to a bad request is never binary
        msg = json.loads(payload)
        if msg["type"] != "ping":
            return msg


async def test_binary_corpus_on_a_v2_connection(server_factory, tmp_path) -> None:
    """Every invalid frame of tests/vectors/binary.json, and the binary data a channel or
    size refuses: each an error reply with its code (and id when usable), and the same
    connection goes on publishing; a bystander is served throughout."""
    path = tmp_path / "staywire.toml"
    path.write_text(BINARY_CONFIG)
    srv = server_factory(config=str(path), allow_anonymous=True, anonymous_channels=["*"],
                         rate_messages=1000, rate_burst=1000)
    cases = [(c["name"], bytes.fromhex(c["frame"]), c["code"], None)
             for c in BINARY_VECTORS["invalid"]]
    cases += [
        ("lying length, one byte short", _bin(b'{"type":"pub","id":5,"channel":"r"}')[:-1],
         "bad_request", None),
        ("header not UTF-8", _bin(b'{"type":"pub","id":5,"channel":"\xff"}'), "bad_request",
         None),
        ("id out of range", _bin(b'{"type":"pub","id":0,"channel":"r"}'), "bad_request", None),
        ("rpc without method", _bin(b'{"type":"rpc","id":6}'), "bad_request", 6),
        ("binary on a binary = false channel", _bin(b'{"type":"pub","id":7,"channel":"text:1"}',
                                                    b"\x00"), "forbidden", 7),
        ("over max_data_size", _bin(b'{"type":"pub","id":8,"channel":"r"}', b"\x00" * 513),
         "bad_request", 8),
        ("unknown rpc method", _bin(b'{"type":"rpc","id":9,"method":"nope"}', b"\x00"),
         "unknown_method", 9),
        ("nested header", _bin(b'{"type":"pub","id":10,"channel":"r","key":' + b"[" * 600
                               + b"]" * 600 + b"}"), "bad_request", 10),
    ]
    async with Bystander(srv.url):
        sock = await raw(srv, V2)
        assert (await _reply(sock))["type"] == "welcome"
        for name, frame, code, rid in cases:
            sock.send(raw_frame(2, frame))
            reply = await _reply(sock)
            assert (reply["type"], reply["code"]) == ("error", code), (name, reply)
            if rid is not None:
                assert reply.get("id") == rid, (name, reply)
        sock.send(raw_frame(2, _bin(b'{"type":"pub","id":99,"channel":"r"}', b"\x00ok")))
        ack = await _reply(sock)
        assert (ack["type"], ack["id"]) == ("ack", 99)
        sock.abort()


async def test_random_binary_frames_fuzz(server_factory, tmp_path) -> None:
    """Random binary frames on v2 connections: mutated prefixes, lengths and headers. Each
    one gets exactly one reply (an error, or an ack for the few that are valid), in order,
    and the bystander is served throughout."""
    path = tmp_path / "staywire.toml"
    path.write_text(BINARY_CONFIG)
    srv = server_factory(config=str(path), allow_anonymous=True, anonymous_channels=["*"],
                         rate_messages=1000, rate_burst=1000)
    rng = random.Random(4321)
    fields = [b'"type":"pub"', b'"type":"rpc"', b'"type":"msg"', b'"id":%d', b'"channel":"r"',
              b'"channel":"a b"', b'"key":"k"', b'"method":"m"', b'"data":1', b'"chunk":{}',
              b'"chunk":{"transfer":"t","seq":0,"at":0}', b'"x":null', b'"type":7',
              b'"chunk":{"transfer":"t","seq":3,"at":9}',
              b'"chunk":{"transfer":"t","seq":1,"at":5,"last":true,"sha256":"%s"}' % (b"0" * 64)]
    async with Bystander(srv.url):
        for _ in range(20):
            sock = await raw(srv, V2)
            assert (await _reply(sock))["type"] == "welcome"
            sent = rng.randint(1, 8)
            for i in range(sent):
                picked = rng.sample(fields, rng.randint(0, 5))
                header = b"{" + b",".join(f.replace(b"%d", b"%d" % (i + 1)) for f in picked) + b"}"
                if rng.random() < 0.2:
                    header = rng.randbytes(rng.randint(0, 40))
                frame = _bin(header, rng.randbytes(rng.randint(0, 64)))
                if rng.random() < 0.3:  # a lying prefix: another format, or a wrong length
                    at = rng.randint(0, 2)
                    frame = frame[:at] + bytes((rng.randrange(256),)) + frame[at + 1:]
                if rng.random() < 0.1:
                    frame = frame[:rng.randint(0, len(frame))]
                sock.send(raw_frame(2, frame))
            replies = [await _reply(sock) for _ in range(sent)]
            assert all(r["type"] in ("error", "ack") for r in replies), replies
            sock.send(raw_frame(1, b'{"type":"ping","t":1}'))
            assert await _reply(sock) == {"type": "pong", "t": 1}  # nothing more was pending
            sock.abort()


def _chunk(rid: int, transfer: str, seq: int, at: int, payload: bytes, **fields: object) -> bytes:
    chunk = {"transfer": transfer, "seq": seq, "at": at, **fields}
    header = json.dumps({"type": "pub", "id": rid, "channel": "files", "chunk": chunk},
                        separators=(",", ":")).encode()
    return _bin(header, payload)


async def test_transfer_corpus_on_a_v2_connection(server_factory, tmp_path) -> None:
    """The issue's bad transfers: a chunk of a transfer never started, one out of order or
    at the wrong byte, a transfer over max_transfer_size, a last chunk whose digest lies.
    Each gets its error code with its id, and the connection goes on with a good transfer
    whose resent chunk is acked as a duplicate; a bystander is served throughout."""
    path = tmp_path / "staywire.toml"
    path.write_text("max_transfer_size = 1000\n" + BINARY_CONFIG)
    srv = server_factory(config=str(path), allow_anonymous=True, anonymous_channels=["*"],
                         rate_messages=1000, rate_burst=1000)
    good = b"a" * 400 + b"b" * 300
    digest = hashlib.sha256(good).hexdigest()
    cases = [
        ("never started", _chunk(1, "t1", 1, 10, b"x" * 10), "transfer_unknown"),
        ("start of t2", _chunk(2, "t2", 0, 0, b"x" * 10), None),
        ("a seq skipped", _chunk(3, "t2", 2, 10, b"x" * 10), "transfer_order"),
        ("the wrong byte position", _chunk(4, "t2", 1, 11, b"x" * 10), "transfer_order"),
        ("start of t3", _chunk(5, "t3", 0, 0, b"x" * 500), None),
        ("over max_transfer_size", _chunk(6, "t3", 1, 500, b"x" * 501), "transfer_too_large"),
        ("start of t4", _chunk(7, "t4", 0, 0, b"x" * 10), None),
        ("a lying digest", _chunk(8, "t4", 1, 10, b"y" * 10, last=True, sha256="0" * 64),
         "transfer_corrupt"),
        ("good start", _chunk(9, "t5", 0, 0, good[:400], size=len(good)), None),
        ("good start sent again", _chunk(10, "t5", 0, 0, good[:400], size=len(good)), "dup"),
        ("good end", _chunk(11, "t5", 1, 400, good[400:], last=True, sha256=digest), None),
    ]
    async with Bystander(srv.url):
        sock = await raw(srv, V2)
        assert (await _reply(sock))["type"] == "welcome"
        for rid, (name, frame, code) in enumerate(cases, 1):
            sock.send(raw_frame(2, frame))
            reply = await _reply(sock)
            assert reply.get("id") == rid, (name, reply)
            if code is None:
                assert reply["type"] == "ack" and not reply.get("duplicate"), (name, reply)
            elif code == "dup":
                assert reply["type"] == "ack" and reply.get("duplicate") is True, (name, reply)
            else:
                assert (reply["type"], reply["code"]) == ("error", code), (name, reply)
        sock.abort()
