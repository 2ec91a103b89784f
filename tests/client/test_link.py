"""The client's connection layer against a raw server that sends exactly the bytes it wants."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable

from staywire.client.link import Link, open_link

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(request: bytes) -> bytes:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return base64.b64encode(hashlib.sha1(value.strip() + GUID).digest())
    raise AssertionError("no Sec-WebSocket-Key")


def unmask(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one small masked client frame."""
    n = frame[1] & 0x7F
    key, payload = frame[2:6], frame[6:6 + n]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def raw_server(after_handshake: bytes,
                     got: asyncio.Queue[bytes]) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Protocol: staywire.v1\r\n"
                     b"Sec-WebSocket-Accept: " + accept_key(request) + b"\r\n\r\n"
                     + after_handshake)  # one write: the client reads it all at once
        await writer.drain()
        while data := await reader.read(65536):
            await got.put(data)
        await got.put(b"")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"


async def connect(url: str, on_text: Callable[[Link, bytes], None] = lambda link, data: None
                  ) -> Link:
    return await open_link(url, on_text=on_text, on_writable=lambda: None, headers={},
                           timeout=5, write_buffer_limits=None)


async def received(got: asyncio.Queue[bytes], wait: Callable[[], Awaitable[object]]) -> bytes:
    await asyncio.wait_for(wait(), 5)
    data = b""
    while (chunk := await asyncio.wait_for(got.get(), 5)):
        data += chunk
    return data


async def test_two_close_frames_in_one_read_get_one_echo_with_the_first_code() -> None:
    """Autobahn 7.1.2: the first close is echoed with its code and the second ignored
    (picows alone answered 1002, "Received CLOSE for the second time")."""
    got: asyncio.Queue[bytes] = asyncio.Queue()
    texts: list[bytes] = []
    frames = b"\x81\x02hi" + b"\x88\x02\x03\xe8" + b"\x88\x02\x03\xe8"
    server, url = await raw_server(frames, got)
    async with server:
        link = await connect(url, lambda _link, data: texts.append(data))
        sent = await received(got, lambda: asyncio.shield(link.closed))
    info = link.closed.result()
    assert (info.code, texts) == (1000, [b"hi"])
    assert len(sent) == 8, "exactly one close frame back"
    assert unmask(sent) == (0x8, b"\x03\xe8")


async def test_frames_after_the_handshake_in_the_same_read_are_delivered() -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    texts: list[bytes] = []
    big = b"x" * 70_000
    frames = (b"\x81\x01a" + b"\x82\x7f" + len(big).to_bytes(8, "big") + big
              + b"\x01\x01b" + b"\x80\x01c" + b"\x88\x00")
    server, url = await raw_server(frames, got)
    async with server:
        link = await connect(url, lambda _link, data: texts.append(data))
        sent = await received(got, lambda: asyncio.shield(link.closed))
    assert texts == [b"a", b"bc"]
    assert link.closed.result().code == 1005  # a close without a code
    assert unmask(sent) == (0x8, b"")
