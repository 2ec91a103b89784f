"""Transfers through the Python client over real sockets (docs/client-python.md,
*Transfers*): ten subscribers get identical bytes, a transfer resumed after the TCP
proxy resets the publisher's connection mid-transfer lands with no duplicate or
missing byte, refusals surface as errors, on the memory broker and on Redis."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from pathlib import Path
from typing import Any

import pytest

from staywire.client import Transfer, TransferFailed
from staywire.exceptions import RequestError
from tests.conftest import ANON
from tests.support.redis_server import redis_server

__all__ = ["redis_server"]

CONFIG = """
max_data_size = 4096
max_transfer_size = 1048576
transfer_timeout = 1.0
rate_bytes = 67108864.0
rate_bytes_burst = 67108864.0
"""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def server(request, server_factory, tmp_path: Path):
    path = tmp_path / "staywire.toml"
    path.write_text(CONFIG)
    options: dict[str, Any] = {"config": str(path), **ANON}
    if request.param == "redis":
        options["broker"] = request.getfixturevalue("redis_server").url
    return server_factory(**options)


async def _first_transfer(sub: Any, timeout: float = 10.0) -> Transfer:
    async with asyncio.timeout(timeout):
        async for item in sub:
            if isinstance(item, Transfer):
                return item
    raise AssertionError("the subscription ended without a transfer")


async def test_ten_subscribers_get_identical_bytes(server, client_factory) -> None:
    payload = random.Random(11).randbytes(300_000)  # 74 chunks of 4 KiB
    publisher = client_factory(server.url)
    readers = [client_factory(server.url) for _ in range(10)]
    await asyncio.gather(publisher.connect(), *(r.connect() for r in readers))
    subs = [r.subscribe("files") for r in readers]
    for sub in subs:
        await sub.__aenter__()
    progress: list[tuple[int, int | None]] = []

    async def read(sub: Any) -> tuple[bytes, Any, tuple[int, int | None]]:
        transfer = await _first_transfer(sub)
        data = await asyncio.wait_for(transfer.read(), 30)
        return data, transfer.meta, transfer.progress

    readers_done = asyncio.gather(*(read(s) for s in subs))
    tid = await asyncio.wait_for(publisher.send_transfer(
        "files", payload, meta={"name": "a.bin"},
        on_progress=lambda done, total: progress.append((done, total))), 30)
    got = await readers_done
    digest = hashlib.sha256(payload).hexdigest()
    assert {hashlib.sha256(data).hexdigest() for data, _, _ in got} == {digest}
    assert all(meta == {"name": "a.bin"} for _, meta, _ in got)
    assert all(p == (len(payload), len(payload)) for _, _, p in got)
    assert progress[-1] == (len(payload), len(payload))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert len(tid) == 16


async def test_a_transfer_resumes_after_the_proxy_resets_the_connection(
        server, proxy_factory, client_factory) -> None:
    payload = random.Random(12).randbytes(600_000)
    proxy = await proxy_factory(server.port)
    publisher = client_factory(proxy.url)
    readers = [client_factory(server.url) for _ in range(3)]
    await asyncio.gather(publisher.connect(), *(r.connect() for r in readers))
    subs = [r.subscribe("files") for r in readers]
    for sub in subs:
        await sub.__aenter__()
    resets = 0

    def on_progress(done: int, total: int | None) -> None:
        nonlocal resets
        # Cut the publisher's link twice, mid-transfer, with chunks in flight.
        if resets == 0 and done >= 150_000 or resets == 1 and done >= 400_000:
            resets += proxy.reset_all() and 1

    async def read(sub: Any) -> bytes:
        return await asyncio.wait_for((await _first_transfer(sub, 30)).read(), 30)

    readers_done = asyncio.gather(*(read(s) for s in subs))
    source = io.BytesIO(payload)  # a file object: read as the window allows
    await asyncio.wait_for(publisher.send_transfer("files", source, on_progress=on_progress),
                           30)
    got = await readers_done
    assert resets == 2
    assert publisher.stats["connects"] >= 3
    assert all(data == payload for data in got)  # no duplicate, no missing byte


async def test_an_async_iterator_source_of_unknown_size(server, client_factory) -> None:
    publisher, reader = client_factory(server.url), client_factory(server.url)
    await asyncio.gather(publisher.connect(), reader.connect())
    parts = [bytes([i]) * (1000 + 37 * i) for i in range(40)]

    async def source():
        for part in parts:
            yield part

    async with reader.subscribe("files") as sub:
        sent = asyncio.ensure_future(publisher.send_transfer("files", source()))
        transfer = await _first_transfer(sub)
        assert transfer.size is None
        chunks = [c async for c in transfer]
        await sent
    assert all(len(c) <= 4096 for c in chunks)
    assert b"".join(chunks) == b"".join(parts)


async def test_over_max_transfer_size_is_refused(server, client_factory) -> None:
    publisher = client_factory(server.url)
    await publisher.connect()
    with pytest.raises(ValueError, match="max_transfer_size"):
        await publisher.send_transfer("files", b"x" * 1048577)

    async def endless():
        for _ in range(400):
            yield b"y" * 4096

    with pytest.raises(RequestError) as exc:  # a size not known in advance: the server says
        await asyncio.wait_for(publisher.send_transfer("files", endless()), 30)
    assert exc.value.code == "transfer_too_large"
    assert publisher._publisher.size == 0  # nothing of it is left to send


async def test_a_publisher_that_goes_silent_ends_the_transfer_with_transfer_timeout(
        server, client_factory) -> None:
    publisher, reader = client_factory(server.url), client_factory(server.url)
    await asyncio.gather(publisher.connect(), reader.connect())
    stall = asyncio.Event()

    async def source():
        yield b"a" * 5000
        await stall.wait()  # never set: the publisher stops mid-transfer
        yield b"b"

    async with reader.subscribe("files") as sub:
        sending = asyncio.ensure_future(publisher.send_transfer("files", source()))
        transfer = await _first_transfer(sub)
        with pytest.raises(TransferFailed) as exc:
            await asyncio.wait_for(transfer.read(), 10)
        assert exc.value.code == "transfer_timeout"
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
    assert publisher._publisher.size == 0  # a cancelled transfer leaves nothing to send


@pytest.mark.redis
async def test_a_transfer_resumes_on_another_node(server_factory, redis_server, tmp_path,
                                                  proxy_factory, client_factory) -> None:
    """The publisher's link is cut mid-transfer and comes back on another node, which never
    saw the transfer start: it recognises it by the previous chunk's key in Redis."""
    path = tmp_path / "staywire.toml"
    path.write_text(CONFIG)
    nodes = [server_factory(config=str(path), broker=redis_server.url, **ANON)
             for _ in range(2)]
    payload = random.Random(13).randbytes(400_000)
    proxy = await proxy_factory(nodes[0].port)
    publisher = client_factory(proxy.url)
    readers = [client_factory(node.url) for node in nodes]
    await asyncio.gather(publisher.connect(), *(r.connect() for r in readers))
    subs = [r.subscribe("files") for r in readers]
    for sub in subs:
        await sub.__aenter__()
    moved = False

    def on_progress(done: int, total: int | None) -> None:
        nonlocal moved
        if not moved and done >= 100_000:
            proxy.upstream_port = nodes[1].port  # the next connection lands on node 2
            moved = proxy.reset_all() > 0

    async def read(sub: Any) -> bytes:
        return await asyncio.wait_for((await _first_transfer(sub, 30)).read(), 30)

    readers_done = asyncio.gather(*(read(s) for s in subs))
    await asyncio.wait_for(publisher.send_transfer("files", payload, on_progress=on_progress),
                           30)
    assert moved
    assert all(data == payload for data in await readers_done)
