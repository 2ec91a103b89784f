"""The bare picows peer's binary relay (the baseline of the transfer workload): every
frame reaches every other room member whole, whatever the sizes that follow each other,
while the members read slowly.

picows 2.3.1's ``transport.send`` of a server payload over 8 KiB hands uvloop a view of
its per-connection header buffer, which libuv reads later when the socket is full; a
following frame rewrote that buffer, and a subscriber read payload bytes as frame
headers ("masked frame from server", invalid opcodes).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import uvloop
import websockets

from staywire_bench.ports import free_port
from staywire_bench.servers import ProcessRegistry, wait_port

PEER = Path(__file__).resolve().parents[2] / "bench" / "peers" / "picows_server.py"
# 60 KiB chunks with a small tail now and then (the last chunk of a transfer): ~12 MiB,
# more than loopback's socket buffers hold while the members are not reading.
SIZES = ([60 * 1024] * 20 + [4096, 100, 70_000, 8192, 8193]) * 8


async def _relay(url: str) -> None:
    payloads = [os.urandom(n) for n in SIZES]
    # websockets (an independent implementation) stops reading from the socket once
    # max_queue messages wait: the peer's writes to these members back up.
    members = [await websockets.connect(url, max_queue=2, max_size=2**20, open_timeout=10,
                                        ping_interval=None) for _ in range(2)]
    try:
        for ws in members:
            await ws.send('{"type":"sub"}')
            assert await asyncio.wait_for(ws.recv(), 10) == '{"type":"ack"}'
        async with websockets.connect(url, ping_interval=None, open_timeout=10) as sender:
            for payload in payloads:
                await sender.send(payload)
            await asyncio.sleep(0.5)  # the peer relays while nobody reads
            for ws in members:
                for i, payload in enumerate(payloads):
                    got = await asyncio.wait_for(ws.recv(), 10)
                    assert got == payload, f"frame {i}: {len(got)} bytes, not {len(payload)}"
    finally:
        for ws in members:
            await ws.close()


def test_binary_frames_of_every_size_reach_slow_members_whole() -> None:
    registry = ProcessRegistry()
    try:
        port = free_port()
        peer = registry.start("picows", [sys.executable, str(PEER), str(port)])
        if not wait_port(port, 20, peer.alive):
            pytest.fail(f"the peer did not start: {peer.log_tail()}")
        uvloop.run(_relay(f"ws://127.0.0.1:{port}/"))
    finally:
        registry.stop_all()
