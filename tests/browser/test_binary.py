"""Binary data and transfers in Chromium against a real ``staywire serve`` (protocol v2):
bytes published in one page arrive byte for byte in another tab (through the leader), in
another browser context (its own connection) and in a Python subscriber; a Blob transfer of
a few MiB from the page reaches a Python subscriber with the right digest, and the Python
client's transfer reaches the page; a transfer from the page goes on after a TCP proxy
resets its connection in the middle, every chunk published once, and the Python client
reads it whole.

The raw Python subscriber is the ``websockets`` library (nothing of either client); the
Python client (``staywire.Client``) and the TCP proxy run on an asyncio loop in a thread
beside Playwright's sync API. The page's digests are computed by ``crypto.subtle``, not by
the client's sha256.js."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from staywire.client import Client, Transfer
from tests.browser.conftest import API_KEY, T, open_demo, wait_for
from tests.support.tcp_proxy import TcpProxy

V2 = ["staywire.v2", "staywire.v1"]
# Transfers of a few MiB in a few seconds: the byte rate limit is raised, as
# docs/protocol.md (*Transfers*) advises for a server that moves large payloads.
FAST = {"rate_bytes": 16 * 1024 * 1024, "rate_bytes_burst": 32 * 1024 * 1024}

# The page's helpers: bytes as hex, a digest by crypto.subtle, a deterministic payload.
PAGE_HELPERS = """
window.hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
window.digest = async (buf) => hex(await crypto.subtle.digest('SHA-256', buf));
window.payload = (n, seed) => {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i += 1) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; out[i] = x >>> 24; }
  return out;
};
"""


def payload(n: int, seed: int) -> bytes:
    """The page's ``payload(n, seed)``, in Python (for small sizes: large payloads are
    compared by their crypto.subtle digest)."""
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = x >> 24
    return bytes(out)


@contextmanager
def python_sub(srv: Any, channel: str) -> Iterator[Any]:
    """A Python subscriber on protocol v2: ``websockets`` and nothing of the client. Its
    reader thread takes every frame as it comes (``max_queue=None``) while the test waits on
    the page, so the server never sees it as a slow consumer (4008)."""
    with ws_connect(srv.url, subprotocols=V2, open_timeout=5 * T,
                    max_size=4 * 1024 * 1024, max_queue=None) as ws:
        assert ws.subprotocol == "staywire.v2"
        welcome = _text(ws, "welcome")
        assert welcome["binary"]["max_data_size"] > 0
        ws.send(json.dumps({"type": "sub", "id": 1, "channel": channel}))
        assert _text(ws, "ack")["id"] == 1
        yield ws


class Background:
    """An asyncio loop in a thread: the Python client and the TCP proxy beside Playwright."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return self.spawn(coro).result(timeout * T)

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5 * T)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def background() -> Iterator[Background]:
    bg = Background()
    try:
        yield bg
    finally:
        bg.close()


async def read_transfer(url: str, channel: str, subscribed: threading.Event,
                        timeout: float = 40.0) -> tuple[Any, bytes]:
    """The Python client subscribes and reads the first transfer on ``channel`` whole."""
    async with Client(url, backoff_base=0.05, backoff_cap=0.5) as client:
        async with client.subscribe(channel) as sub:
            subscribed.set()
            async with asyncio.timeout(timeout * T):
                async for item in sub:
                    if isinstance(item, Transfer):
                        return item.meta, await item.read()
    raise AssertionError("the subscription ended without a transfer")


async def send_transfer(url: str, channel: str, data: bytes, meta: Any) -> str:
    async with Client(url, backoff_base=0.05, backoff_cap=0.5) as client:
        return await client.send_transfer(channel, data, meta=meta)


async def _reset(proxy: TcpProxy) -> int:
    return proxy.reset_all()  # on the proxy's loop: it aborts its transports


def _text(ws: Any, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5 * T
    while time.monotonic() < deadline:
        frame = ws.recv(timeout=5 * T)
        if isinstance(frame, str) and json.loads(frame)["type"] == kind:
            return json.loads(frame)
    raise AssertionError(f"no {kind}")


def binary_msgs(ws: Any, count: int | None = None, *, until_last: bool = False,
                timeout: float = 20.0) -> list[tuple[dict[str, Any], bytes]]:
    """Binary ``msg`` frames: ``count`` of them, or up to a transfer's last chunk."""
    got: list[tuple[dict[str, Any], bytes]] = []
    deadline = time.monotonic() + timeout * T
    while time.monotonic() < deadline:
        frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(frame, str):
            continue  # pings and the like
        n = frame[1] << 8 | frame[2]
        header = json.loads(frame[3:3 + n])
        assert header["type"] == "msg"
        got.append((header, frame[3 + n:]))
        if count is not None and len(got) == count:
            return got
        if until_last and header.get("chunk", {}).get("last"):
            return got
    raise AssertionError(f"timed out with {len(got)} binary msgs")


def test_bytes_from_a_page_reach_another_tab_another_context_and_python(
        browser, context, demo_server) -> None:
    srv = demo_server
    tab1 = open_demo(context, srv, "channel=room:bin")
    tab2 = open_demo(context, srv, "channel=room:bin")
    other = browser.new_context()
    try:
        far = open_demo(other, srv, "channel=room:bin")
        # tab2 holds no connection: its bytes go up to tab1 and come back down, cloned.
        wait_for(lambda: tab1.evaluate("demo.client.isLeader"), 5, "the first tab leads")
        assert tab2.evaluate("demo.client.isLeader") is False
        receivers = (tab1, tab2, far)
        for page in (tab1, tab2, far):
            page.evaluate(PAGE_HELPERS)
        for page in receivers:
            page.evaluate("""async () => {
              window.bin = [];
              await demo.client.subscribe('bin:1', (data, msg) => bin.push(
                { hex: data instanceof ArrayBuffer ? hex(data) : JSON.stringify(data),
                  buffer: data instanceof ArrayBuffer, binary: msg.binary === true, offset: msg.offset }));
            }""")
        with python_sub(srv, "bin:1") as py:
            every_byte = bytes(range(256)) + payload(3000, 7)
            acks = tab2.evaluate("""async () => {
              const bytes = new Uint8Array(256 + 3000);
              bytes.set(Uint8Array.from({length: 256}, (_, i) => i));
              bytes.set(payload(3000, 7), 256);
              const a = await demo.client.publish('bin:1', bytes);
              const b = await demo.client.publish('bin:1', {json: true});
              const c = await demo.client.publish('bin:1', new Blob([bytes.subarray(0, 5)]));
              return [a, b, c];
            }""")
            assert [a["duplicate"] for a in acks] == [False, False, False]
            for page in receivers:
                wait_for(lambda p=page: len(p.evaluate("bin")) == 3, 10, "three publications")
                got = page.evaluate("bin")
                assert [g["offset"] for g in got] == [a["offset"] for a in acks]
                assert got[0] == {"hex": every_byte.hex(), "buffer": True, "binary": True,
                                  "offset": acks[0]["offset"]}
                assert got[1]["hex"] == '{"json":true}' and got[1]["binary"] is False
                assert got[2]["hex"] == every_byte[:5].hex() and got[2]["buffer"] is True
            msgs = binary_msgs(py, 2)
            assert [m[1] for m in msgs] == [every_byte, every_byte[:5]]
            assert [m[0]["offset"] for m in msgs] == [acks[0]["offset"], acks[2]["offset"]]
        assert tab1.evaluate("demo.client.status.binary.max_data_size") > 0
        for page in (tab1, tab2, far):
            assert page.errors == []
    finally:
        other.close()


def test_blob_transfer_from_the_page_to_python_and_back(
        context, start_demo_server, background) -> None:
    srv = start_demo_server(**FAST)
    page = open_demo(context, srv, "channel=room:xfer")
    page.evaluate(PAGE_HELPERS)
    size = 3 * 1024 * 1024 + 12345
    with python_sub(srv, "files:1") as py:
        result = page.evaluate("""async (size) => {
          const bytes = payload(size, 42);
          const progress = [];
          const r = await demo.client.sendTransfer('files:1', new Blob([bytes], {type: 'application/x-test'}),
            { meta: { name: 'big.bin' }, onProgress: (p) => progress.push(p) });
          return { ...r, subtle: await digest(bytes), progress: progress.length, last: progress.at(-1) };
        }""", size)
        chunks = binary_msgs(py, until_last=True, timeout=30)
        data = b"".join(p for _, p in chunks)
        assert len(data) == size
        assert hashlib.sha256(data).hexdigest() == result["sha256"] == result["subtle"]
        heads = [h["chunk"] for h, _ in chunks]
        assert [c["seq"] for c in heads] == list(range(len(chunks))) == list(range(result["chunks"]))
        assert heads[0]["size"] == size and heads[0]["meta"] == {"name": "big.bin"}
        assert heads[-1]["sha256"] == result["sha256"]
        max_data = max(len(p) for _, p in chunks)
        assert max_data == page.evaluate("demo.client.status.binary.max_data_size")
        assert result["last"] == {"bytes": size, "total": size} and result["progress"] == len(chunks)

        # The reverse: a Python publisher's transfer, read in the page as a Blob.
        page.evaluate("""async () => {
          window.xfer = null;
          const sub = await demo.client.subscribe('files:2');
          sub.on('transfer', async (t) => {
            const progress = [];
            t.on('progress', (p) => progress.push(p.bytes));
            try {
              const blob = await t.blob();
              const buf = await blob.arrayBuffer();
              window.xfer = { size: buf.byteLength, subtle: await digest(buf), type: blob.type,
                meta: t.meta, state: t.state, sha256: t.sha256, progress: progress.length };
            } catch (err) { window.xfer = { error: err.code ?? String(err) }; }
          });
        }""")
        back = os.urandom(2 * 1024 * 1024 + 77)
        background.run(send_transfer(srv.url, "files:2", back, {"type": "image/png"}), 30)
        got = wait_for(lambda: page.evaluate("window.xfer"), 20, "the transfer in the page")
        digest = hashlib.sha256(back).hexdigest()
        assert got == {"size": len(back), "subtle": digest, "type": "image/png",
                       "meta": {"type": "image/png"}, "state": "complete", "sha256": digest,
                       "progress": got["progress"]}
        assert got["progress"] >= 2
    assert page.errors == []


def test_transfer_resumes_after_a_proxy_resets_the_connection_in_the_middle(
        context, start_demo_server, background) -> None:
    srv = start_demo_server()  # the default byte rate: a 3 MiB transfer takes seconds
    proxy = background.run(TcpProxy("127.0.0.1", srv.port).start())
    try:
        page = open_demo(context, srv, f"channel=room:resume&url={proxy.url}")
        page.evaluate(PAGE_HELPERS)
        size = 3 * 1024 * 1024
        subscribed = threading.Event()
        reading = background.spawn(read_transfer(srv.url, "files:cut", subscribed))
        assert subscribed.wait(10 * T), "the Python client subscribed"
        with python_sub(srv, "files:cut") as raw:
            page.evaluate("""(size) => {
              window.bytes = payload(size, 5);
              window.acked = 0;
              window.conns = new Set([demo.client.status.connId]);
              window.result = null;
              demo.client.sendTransfer('files:cut', new Blob([bytes]), { meta: { name: 'cut.bin' },
                  onProgress: (p) => { acked = p.bytes; conns.add(demo.client.status.connId); } })
                .then(async (r) => { result = { ...r, subtle: await digest(bytes) }; },
                      (err) => { result = { error: String(err) }; });
            }""", size)
            wait_for(lambda: page.evaluate("acked") > size // 3, 20, "a third acknowledged")
            assert page.evaluate("result") is None, "still under way"
            assert background.run(_reset(proxy)) >= 1, "the page's connection was reset"
            result = wait_for(lambda: page.evaluate("result"), 40, "the transfer's end")
            assert "error" not in result, result
            assert page.evaluate("conns.size") >= 2, "it went on over a new connection"
            chunks = binary_msgs(raw, until_last=True, timeout=20)
        seqs = [h["chunk"]["seq"] for h, _ in chunks]
        assert seqs == list(range(result["chunks"])), "every chunk once, in order"
        offsets = [h["offset"] for h, _ in chunks]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        data = b"".join(p for _, p in chunks)
        assert hashlib.sha256(data).hexdigest() == result["sha256"] == result["subtle"]
        meta, read = reading.result(20 * T)
        assert meta == {"name": "cut.bin"} and read == data
        states = [st["state"] for st in page.evaluate("demo.states")]
        assert states == ["OPEN", "RECONNECTING", "OPEN"], states
        assert page.errors == []
    finally:
        background.run(proxy.close())


def test_a_v1_server_delivers_bytes_as_base64_and_refuses_binary_publishes(
        context, start_demo_server) -> None:
    """A server with ``binary = false`` selects v1 for the page that offers v2 first: the
    bytes its backend publishes still reach the page as an ArrayBuffer (from the base64
    v1 connections get), and the page's own bytes are refused, not sent as JSON."""
    srv = start_demo_server(no_binary=True)  # --no-binary
    page = open_demo(context, srv, "channel=room:v1")
    page.evaluate(PAGE_HELPERS)
    assert page.evaluate("demo.client.status.binary") is None
    page.evaluate("""async () => {
      window.bin = [];
      await demo.client.subscribe('bin:v1', (data, msg) => bin.push(
        { hex: data instanceof ArrayBuffer ? hex(data) : null, binary: msg.binary === true }));
    }""")
    data = bytes(range(256))
    req = urllib.request.Request(
        f"{srv.api}/api/publish?channel=bin:v1", data=data, method="POST",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=5 * T) as resp:
        assert json.loads(resp.read())["duplicate"] is False
    wait_for(lambda: page.evaluate("bin"), 10, "the publication in the page")
    assert page.evaluate("bin") == [{"hex": data.hex(), "binary": True}]
    refused = page.evaluate("""() => demo.client.publish('bin:v1', new Uint8Array([1]))
      .then(() => 'sent', (err) => `${err.name} ${err.code}`)""")
    assert refused == "RequestError binary_unsupported"
    sent = page.evaluate("""() => demo.client.sendTransfer('bin:v1', new Blob(['x']))
      .then(() => 'sent', (err) => `${err.name} ${err.code}`)""")
    assert sent == "TransferError binary_unsupported"
    assert page.errors == []
