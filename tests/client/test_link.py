"""The client's connection layer against a raw server that sends exactly the bytes it wants."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Awaitable, Callable

import pytest

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


async def raw_server(after_handshake: bytes, got: asyncio.Queue[bytes], *,
                     then: bytes = b"") -> tuple[asyncio.Server, str]:
    """A server that answers the upgrade, writes ``after_handshake`` in the same write and,
    0.1 s later, ``then``; everything the client sends goes into ``got``."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Protocol: staywire.v1\r\n"
                     b"Sec-WebSocket-Accept: " + accept_key(request) + b"\r\n\r\n"
                     + after_handshake)  # one write: the client reads it all at once
        await writer.drain()
        if then:
            await asyncio.sleep(0.1)
            writer.write(then)
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


async def test_nothing_is_sent_after_the_empty_close_that_answers_a_codeless_close() -> None:
    """RFC 6455 5.5.1: one close frame per side. The empty answer goes out through
    picows' plain send, which does not mark the close as sent: Link keeps track."""
    got: asyncio.Queue[bytes] = asyncio.Queue()
    server, url = await raw_server(b"", got, then=b"\x88\x00")
    async with server:
        link = await connect(url)
        # The application closes between the answer and the end of the connection: run
        # link.close() in the loop's next step after the close frame arrived, which comes
        # before the transport's connection_lost.
        received_close = link._received_close

        def close_soon(code: int, reason: str) -> None:
            received_close(code, reason)
            asyncio.get_running_loop().call_soon(link.close, 1000, "bye")

        link._received_close = close_soon  # type: ignore[method-assign]
        sent = await received(got, lambda: asyncio.shield(link.closed))
    assert unmask(sent) == (0x8, b"") and len(sent) == 6


async def test_a_server_that_hangs_up_before_the_upgrade_response_fails_the_connect_at_once(
        ) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):
            await connect(f"ws://127.0.0.1:{port}/ws")
        assert time.monotonic() - started < 2  # not the handshake timeout (5 s here)
