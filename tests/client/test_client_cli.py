"""``staywire sub`` and ``staywire pub`` as a user runs them: separate processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys

from staywire.api import ApiClient
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


async def test_pub_binary_from_a_file_and_sub_binary_write_the_bytes(server_factory, tmp_path):
    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], api_key="k")
    blob = bytes(range(256)) * 4
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    raw = await staywire("sub", srv.url, "files", "--binary", "--count", "2")
    lines = await staywire("sub", srv.url, "files", "--count", "2")
    try:
        with ApiClient(srv.api, "k") as api:
            def subscribed() -> int:
                counts = api.channels("files").channels
                return counts[0].subscribers if counts else 0

            await eventually(lambda: subscribed() == 2, 10, "both subs to be subscribed")
        for data in (f"@{path}", "\x01text"):
            pub = await staywire("pub", srv.url, "files", data, "--binary")
            out, err = await asyncio.wait_for(pub.communicate(), 10)
            assert pub.returncode == 0, err
        raw_out, _ = await asyncio.wait_for(raw.communicate(), 10)
        lines_out, _ = await asyncio.wait_for(lines.communicate(), 10)
    finally:
        for proc in (raw, lines):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert raw_out == blob + b"\x01text"
    got = [json.loads(line) for line in lines_out.decode().splitlines()]
    assert [(m["encoding"], m["data"]) for m in got] == [
        ("base64", base64.b64encode(blob).decode()), ("base64", "AXRleHQ=")]
    missing = await staywire("pub", srv.url, "files", f"@{tmp_path}/nope", "--binary")
    _, err = await asyncio.wait_for(missing.communicate(), 10)
    assert missing.returncode == 1 and "No such file" in err.decode()


async def test_sub_writes_a_transfer_as_its_bytes_or_one_line_with_its_digest(server_factory,
                                                                             client_factory):
    import hashlib

    srv = server_factory(allow_anonymous=True, anonymous_channels=["*"], api_key="k")
    blob = os.urandom(150_000)  # three chunks of max_data_size
    raw = await staywire("sub", srv.url, "files", "--binary", "--count", "1")
    lines = await staywire("sub", srv.url, "files", "--count", "1")
    try:
        with ApiClient(srv.api, "k") as api:
            def subscribed() -> int:
                counts = api.channels("files").channels
                return counts[0].subscribers if counts else 0

            await eventually(lambda: subscribed() == 2, 10, "both subs to be subscribed")
        client = client_factory(srv.url)
        await client.connect()
        await client.send_transfer("files", blob, meta={"name": "r.bin"})
        raw_out, _ = await asyncio.wait_for(raw.communicate(), 20)
        lines_out, _ = await asyncio.wait_for(lines.communicate(), 20)
    finally:
        for proc in (raw, lines):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert raw_out == blob
    (line,) = [json.loads(text) for text in lines_out.decode().splitlines()]
    assert line["size"] == len(blob) and line["meta"] == {"name": "r.bin"}
    assert line["sha256"] == hashlib.sha256(blob).hexdigest()
