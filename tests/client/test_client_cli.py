"""``staywire sub`` and ``staywire pub`` as a user runs them: separate processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.client.helpers import eventually
from tests.support.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def staywire(*args: str, **kwargs) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "staywire", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, **kwargs)


async def test_sub_prints_json_lines_and_reports_reconnects(anon_server, proxy_factory):
    proxy = await proxy_factory(anon_server.port)
    sub = await staywire("sub", proxy.url, "room:1", "--count", "3", "--backoff-base", "0.05")
    try:
        await eventually(lambda: proxy.connections == 1, 10, "sub to connect")
        await asyncio.sleep(0.2)  # its subscription is acked
        pub = await staywire("pub", anon_server.url, "room:1", '{"text": "one"}')
        out, _ = await asyncio.wait_for(pub.communicate(), 10)
        assert pub.returncode == 0 and json.loads(out) == {"channel": "room:1", "offset": 1}

        proxy.reset_all()  # sub reconnects and recovers what it missed
        for data in ("two", '"three"'):
            pub = await staywire("pub", anon_server.url, "room:1", data)
            assert await asyncio.wait_for(pub.wait(), 10) == 0
        out, err = await asyncio.wait_for(sub.communicate(), 10)
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
    assert sub.returncode == 0
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [(m["offset"], m["data"]) for m in lines] == [(1, {"text": "one"}), (2, "two"),
                                                         (3, "three")]
    assert "reconnecting in" in err.decode() and "reconnected" in err.decode()


async def test_pub_to_an_unreachable_server_gives_up_with_exit_code_1():
    pub = await staywire("pub", f"ws://127.0.0.1:{free_port()}/ws", "room:1", "x", "--max-retries", "2",
                         "--backoff-base", "0.01")
    _, err = await asyncio.wait_for(pub.communicate(), 10)
    assert pub.returncode == 1
    assert "gave up after 2 reconnect attempts" in err.decode()
