"""The WebSocket port is bound before the server's imports (server/listen_socket.py): a
client that connects while a node is starting waits in the backlog instead of being
refused, and the node serves it once it is up."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from staywire.client import Client
from staywire.config import Config
from staywire.server.app import Server
from staywire.server.listen_socket import bind_early
from tests.support.servers import free_port


def test_bind_early_listens_on_the_address() -> None:
    sock = bind_early("127.0.0.1", 0)
    assert sock is not None
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert not sock.getblocking()
        with socket.create_connection((host, port), timeout=2):
            pass  # the kernel completes the handshake: nothing has accepted yet
    finally:
        sock.close()


def test_bind_early_reports_a_taken_port_as_asyncio_does() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError) as info:
            bind_early("127.0.0.1", taken.getsockname()[1])
        assert "error while attempting to bind on address" in str(info.value)
        assert "address already in use" in str(info.value)
    finally:
        taken.close()


def test_a_name_with_several_addresses_is_left_to_the_server(monkeypatch) -> None:
    two = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
           (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: two)
    assert bind_early("localhost", 0) is None


async def test_the_server_serves_the_socket_it_is_given() -> None:
    sock = bind_early("127.0.0.1", 0)
    assert sock is not None
    port = sock.getsockname()[1]
    server = Server(Config(port=0, api_port=None, allow_anonymous=True,
                           anonymous_channels=("*",)), listen_socket=sock)
    await server.start()
    try:
        assert server.port == port
        async with Client(f"ws://127.0.0.1:{port}/ws") as client:
            async with client.subscribe("room") as sub:
                await client.publish("room", {"n": 1})
                pub = await asyncio.wait_for(sub.__anext__(), 5)
                assert pub.data == {"n": 1}
    finally:
        await server.stop()


def test_serve_binds_the_port_before_the_server_exists(monkeypatch) -> None:
    """``staywire serve`` opens the port before it imports and builds the server, and
    hands the bound socket over; it closes it when the server cannot be built."""
    from staywire import cli
    from staywire.exceptions import ConfigError
    from staywire.server import app

    port = free_port()
    seen: dict[str, object] = {}

    class Probe:
        def __init__(self, config: Config, *, listen_socket: socket.socket | None) -> None:
            seen["socket"] = listen_socket
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                seen["accepting"] = True  # in the backlog, before any server exists
            raise ConfigError("probe: stop here")

    monkeypatch.setattr(app, "Server", Probe)
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", str(port),
                     "--allow-anonymous"]) == 2
    assert seen["accepting"] is True
    sock = seen["socket"]
    assert isinstance(sock, socket.socket) and sock.fileno() == -1  # closed again


_UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: staywire.v1\r\n\r\n")


def test_a_client_that_connects_during_start_up_is_served() -> None:
    """A real ``staywire serve``: the first TCP connection that the port takes, however
    early in the start-up, gets its WebSocket handshake answered once the node is up."""
    port, api_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "staywire", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--api-port", str(api_port), "--allow-anonymous", "--anonymous-channel", "*"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        early: socket.socket | None = None
        while early is None:  # bounded by the deadline
            assert proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the port never opened"
            try:
                early = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                time.sleep(0.002)
        with early:
            early.settimeout(max(1.0, deadline - time.monotonic()))
            early.sendall(_UPGRADE)
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = early.recv(4096)
                assert chunk, f"closed before the handshake's answer: {reply!r}"
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 101"), reply
    finally:
        proc.kill()
        proc.wait(timeout=10)
