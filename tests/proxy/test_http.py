"""The proxies' HTTP/1.1 pool against raw loopback servers that answer byte for byte.

Each server reads one request at a time and writes what the test scripted, so the
framings a backend may use (length, chunked, read to the close), the ways it may end a
connection, and the ways it may be wrong are each seen exactly once.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from staywire.proxy.http import HttpError, HttpPool

pytestmark = pytest.mark.asyncio

T = float(os.environ.get("STAYWIRE_TEST_TIMEOUT_FACTOR", "1"))

Script = Callable[[int, bytes], bytes | None]  # (request number, request) -> bytes to send


class RawServer:
    def __init__(self, script: Script, close_after: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.close_after = close_after
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{port}/staywire/connect"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.script(len(self.requests), request)
                if answer is None:  # hold the answer back: the client times out
                    await asyncio.sleep(30 * T)
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[RawServer]]]:
    servers: list[RawServer] = []

    async def start(script: Script, **kw: Any) -> RawServer:
        server = await RawServer(script, **kw).start()
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        await server.stop()


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), b"".join(h + b"\r\n" for h in extra), body)


async def test_a_post_with_its_headers_and_one_connection_for_many(serve) -> None:
    server = await serve(lambda n, _: ok(b'{"n":%d}' % n))
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        for n in range(1, 4):
            assert await pool.post(server.url, b'{"a":1}') == (200, b'{"n":%d}' % n)
    finally:
        await pool.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /staywire/connect HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in first
    assert b"\r\nAccept-Encoding: identity\r\n" in first
    assert b"\r\nContent-Length: 7\r\n\r\n{\"a\":1}" in first
    assert b"cookie" not in first.lower()


async def test_chunked_and_read_to_close_answers(serve) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n")
    server = await serve(lambda n, _: chunked)
    to_close = await serve(lambda n, _: b'HTTP/1.1 200 OK\r\n\r\n{"b":2}', close_after=True)
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        assert await pool.post(server.url, b"{}") == (200, b'{"a":1}')
        assert await pool.post(to_close.url, b"{}") == (200, b'{"b":2}')
        assert await pool.post(to_close.url, b"{}") == (200, b'{"b":2}')
    finally:
        await pool.close()
    assert to_close.connections == 2  # the end of the body was the end of the connection


async def test_connection_close_and_http_1_0_are_not_reused(serve) -> None:
    # The servers keep their side open: only the answer says not to reuse it.
    server = await serve(lambda n, _: ok(b"{}", b"Connection: close"))
    old = await serve(lambda n, _: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        for _ in range(3):
            assert await pool.post(server.url, b"{}") == (200, b"{}")
            assert await pool.post(old.url, b"{}") == (200, b"{}")
    finally:
        await pool.close()
    assert (server.connections, old.connections) == (3, 3)


async def test_any_status_is_an_answer_and_the_connection_stays(serve) -> None:
    server = await serve(lambda n, _: b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"
                         if n == 1 else ok(b"{}"))
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        assert await pool.post(server.url, b"{}") == (503, b"busy")
        assert await pool.post(server.url, b"{}") == (200, b"{}")
    finally:
        await pool.close()
    assert server.connections == 1


async def test_oversized_declared_or_streamed_closes_the_connection(serve) -> None:
    big = b"x" * 2000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n%s\r\n0\r\n\r\n" % big
    server = await serve(lambda n, _: ok(big) if n == 1 else chunked if n == 2 else ok(b"{}"))
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        for _ in range(2):
            with pytest.raises(HttpError) as exc:
                await pool.post(server.url, b"{}")
            assert exc.value.kind == "oversized"
        assert await pool.post(server.url, b"{}") == (200, b"{}")
    finally:
        await pool.close()
    assert server.connections == 3


async def test_not_http_and_closed_before_the_answer(serve) -> None:
    garbage = await serve(lambda n, _: b"SSH-2.0-OpenSSH\r\n\r\n")
    silent = await serve(lambda n, _: b"", close_after=True)
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        with pytest.raises(HttpError) as exc:
            await pool.post(garbage.url, b"{}")
        assert exc.value.kind == "protocol"
        with pytest.raises(HttpError) as exc:
            await pool.post(silent.url, b"{}")
        assert exc.value.kind == "unreachable"
    finally:
        await pool.close()


async def test_refused_is_unreachable(serve) -> None:
    server = await serve(lambda n, _: ok(b"{}"))
    await server.stop()
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        with pytest.raises(HttpError) as exc:
            await pool.post(server.url, b"{}")
        assert exc.value.kind == "unreachable"
    finally:
        await pool.close()


async def test_a_timed_out_call_never_hands_its_late_answer_to_the_next(serve) -> None:
    # The first answer is held back; its connection must be dropped, not reused, or the
    # second call would read the first one's answer.
    server = await serve(lambda n, _: None if n == 1 else ok(b'{"n":%d}' % n))
    pool = HttpPool(max_connections=4, max_body=1024)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2 * T):
                await pool.post(server.url, b"{}")
        assert await pool.post(server.url, b"{}") == (200, b'{"n":2}')
    finally:
        await pool.close()
    assert server.connections == 2


async def test_idle_connections_expire(serve) -> None:
    server = await serve(lambda n, _: ok(b"{}"))
    pool = HttpPool(max_connections=4, max_body=1024, keepalive=0.05)
    try:
        await pool.post(server.url, b"{}")
        await asyncio.sleep(0.1)  # past the keep-alive: the waiting is the point here
        await pool.post(server.url, b"{}")
    finally:
        await pool.close()
    assert server.connections == 2


async def test_concurrent_calls_take_separate_connections(serve) -> None:
    server = await serve(lambda n, _: ok(b"{}"))
    pool = HttpPool(max_connections=8, max_body=1024)
    try:
        answers = await asyncio.gather(*(pool.post(server.url, b"{}") for _ in range(5)))
        assert answers == [(200, b"{}")] * 5
        await asyncio.gather(*(pool.post(server.url, b"{}") for _ in range(5)))
    finally:
        await pool.close()
    assert server.connections == 5  # the second round reused all five


async def test_a_url_that_is_not_http_is_refused() -> None:
    pool = HttpPool(max_connections=1, max_body=1024)
    with pytest.raises(HttpError, match="not an http"):
        await pool.post("ftp://127.0.0.1/x", b"{}")


def test_the_same_on_uvloop_the_servers_loop() -> None:
    # The node runs on uvloop, whose TCP transport is no asyncio.Transport subclass.
    import uvloop

    async def scenario() -> tuple[list[tuple[int, bytes]], int]:
        server = await RawServer(lambda n, _: ok(b'{"n":%d}' % n)).start()
        pool = HttpPool(max_connections=4, max_body=1024)
        try:
            async with asyncio.timeout(5 * T):
                answers = [await pool.post(server.url, b"{}") for _ in range(3)]
        finally:
            await pool.close()
            await server.stop()
        return answers, server.connections

    answers, connections = uvloop.run(scenario())
    assert answers == [(200, b'{"n":%d}' % n) for n in (1, 2, 3)]
    assert connections == 1


async def test_https_verifies_the_backends_certificate(serve, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.doctor.test_tls import make_cert

    cert, key = make_cert(tmp_path, days=10)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = await serve(lambda n, _: ok(b'{"tls":true}'), tls=tls)
    pool = HttpPool(max_connections=2, max_body=1024)
    try:
        with pytest.raises(HttpError) as exc:  # a private CA the system does not trust
            await pool.post(server.url, b"{}")
        assert exc.value.kind == "unreachable" and "certificate verify failed" in str(exc.value)
    finally:
        await pool.close()
    # The system's way to trust a private CA (OpenSSL's SSL_CERT_FILE) is honoured.
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    pool = HttpPool(max_connections=2, max_body=1024)
    try:
        assert await pool.post(server.url, b"{}") == (200, b'{"tls":true}')
        assert await pool.post(server.url, b"{}") == (200, b'{"tls":true}')
    finally:
        await pool.close()
    assert server.connections == 1  # both calls on one kept-alive TLS connection


async def test_a_deadline_fails_the_call_and_drops_its_connection(serve) -> None:
    # The deadline is checked by the pool's sweep (one timer for the pool): the call
    # fails within SWEEP of it, with TimeoutError, and its connection is not reused.
    from staywire.proxy.http import SWEEP

    server = await serve(lambda n, _: None if n == 1 else ok(b'{"n":%d}' % n))
    pool = HttpPool(max_connections=4, max_body=1024)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(TimeoutError):
            await pool.post(server.url, b"{}", deadline=started + 0.1)
        took = loop.time() - started
        assert 0.1 <= took < 0.1 + SWEEP + 0.5 * T
        assert await pool.post(server.url, b"{}", deadline=loop.time() + 5) == (200, b'{"n":2}')
    finally:
        await pool.close()
    assert server.connections == 2
