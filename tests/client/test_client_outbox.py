"""The outbox: its bound, backpressure, and a persistent outbox across a process restart."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from staywire.client import ConnectionState
from staywire.exceptions import ConnectionClosed, QueueFull
from tests.client.helpers import Collector, eventually
from tests.support.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_outbox_bound_raises_queue_full_while_not_open(client_factory):
    dead = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens: the client keeps retrying
    by_count = client_factory(dead, max_queued_messages=3)
    by_bytes = client_factory(dead, max_queued_bytes=100)
    await by_count.start()
    await by_bytes.start()
    assert by_count.state is ConnectionState.CONNECTING  # publish works before OPEN
    queued = [asyncio.create_task(by_count.publish("room:1", n)) for n in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await by_count.publish("room:1", 3)
    assert by_count.outbox_size == 3 and not any(t.done() for t in queued)

    first = asyncio.create_task(by_bytes.publish("room:1", "x" * 60))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await by_bytes.publish("room:1", "y" * 60)  # 62 + 62 encoded bytes > 100
    assert by_bytes.buffered_amount == 62
    await by_count.close()
    await by_bytes.close()
    for task in [*queued, first]:
        with pytest.raises(ConnectionClosed) as info:
            await task  # closed with publishes pending: they fail, loudly
        assert info.value.code == 1000


async def test_publish_waits_over_the_high_water_mark_and_keeps_order(
    server_factory, proxy_factory, client_factory, monkeypatch
):
    # The server's per-connection rate limits would refuse this burst: lift them.
    for name in ("RATE_MESSAGES", "RATE_BURST", "RATE_BYTES", "RATE_BYTES_BURST"):
        monkeypatch.setenv(f"STAYWIRE_{name}", "1000000000")
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"])
    proxy = await proxy_factory(srv.port)
    # No client heartbeat: the proxy is paused on purpose, and a stall of the machine
    # (a CI run once lost 40 s here) must not turn into a heartbeat drop and retries.
    client = client_factory(proxy.url, high_water=64 * 1024, low_water=16 * 1024,
                            max_queued_bytes=None, ping_interval=None)
    await client.connect()
    proxy.pause()  # nothing is read: the kernel buffers fill, then the transport's
    tasks = []
    for n in range(2000):
        tasks.append(asyncio.create_task(client.publish("bulk", {"n": n, "pad": "x" * 8000})))
        await asyncio.sleep(0)
        if client.outbox_size < len(tasks):
            break  # a publish is held back: backpressure
    held_at = len(tasks)
    assert client.buffered_amount > 64 * 1024 and client.outbox_size < held_at
    tasks += [asyncio.create_task(client.publish("bulk", {"n": n, "pad": ""}))
              for n in range(held_at, held_at + 20)]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.drain(), 0.2)
    proxy.resume()
    offsets = await asyncio.wait_for(asyncio.gather(*tasks), 15)
    assert offsets == list(range(1, len(tasks) + 1))  # held publishes kept their call order
    await asyncio.wait_for(client.drain(), 5)
    assert client.buffered_amount <= 16 * 1024
    print(f"\nbackpressure: {held_at - 1} publishes of 8 KB written before publish() waited")


async def test_persistent_outbox_survives_a_client_process_restart(
    anon_server, proxy_factory, client_factory, tmp_path
):
    """A client process publishes 10 (they land, their acks are held at the proxy) and
    queues 5 more after its connection is reset; then it is SIGKILLed. A new process
    with the same outbox file sends all 15 again: each lands exactly once."""
    db = str(tmp_path / "outbox.sqlite")
    sent, queued = 10, 5
    proxy = await proxy_factory(anon_server.port)
    watcher = client_factory(anon_server.url)
    await watcher.connect()
    async with watcher.subscribe("room:1") as sub:
        collector = Collector(sub)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.client.outbox_worker", proxy.url, db, str(sent),
            str(queued), cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        try:
            async def step(expect: str) -> None:
                line = await asyncio.wait_for(proc.stdout.readline(), 10)
                assert line.decode().strip() == expect

            await step("open")
            proxy.pause(upstream=False)  # publishes reach the server, acks do not come back
            proc.stdin.write(b"go\n")
            await step("sent")
            await eventually(lambda: len(collector.messages) == sent, 5, "the first 10 to land")
            proxy.reset_all()
            await step("queued")
        finally:
            proc.kill()
            await proc.wait()

        reborn = client_factory(anon_server.url, outbox_path=db)
        assert reborn.outbox_size == sent + queued  # restored from the file
        await reborn.connect()
        await eventually(lambda: reborn.outbox_size == 0, 5, "the replay to be acked")
        await eventually(lambda: len(collector.messages) == sent + queued, 5)
        await asyncio.sleep(0.2)  # nothing more arrives
    assert collector.data() == [{"n": n} for n in range(sent + queued)]
    assert collector.offsets() == list(range(1, sent + queued + 1))
    await reborn.close()
    again = client_factory(anon_server.url, outbox_path=db)
    assert again.outbox_size == 0  # acked entries left the file
