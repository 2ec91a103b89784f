"""User-space instructions a server spends per request, counted by valgrind, not timed.

    .venv/bin/python scripts/request_cost.py --server staywire --mode ping
    .venv/bin/python scripts/request_cost.py --server staywire --mode pub
    .venv/bin/python scripts/request_cost.py --server picows --mode echo
    .venv/bin/python scripts/request_cost.py --mode pub --broker redis://127.0.0.1:6379/0

The server runs under ``valgrind --tool=callgrind`` with the bench's settings
(``staywire_bench.servers.staywire_settings``; bare picows is
``bench/peers/picows_server.py``). ``--conns`` picows clients open, then each makes
``--rounds`` round trips one at a time (``ping`` -> ``pong``, an acked ``pub`` with
100 bytes of padding on a channel of its own, history kept, or the bare peer's
``echo``). The server is run twice, for ``--base`` and for ``--rounds`` round trips,
and the difference of the two totals over the difference of the requests is the
figure: start-up, connecting and shutting down cancel out.

Instructions are repeatable where seconds are not: on a shared, loaded machine two runs
of the same code agree within a few percent, so a change of a few hundred instructions
per request shows. They count user space only: the kernel's share (the ``read`` and
``write`` system calls, the same for every server) is not in them, and a slow
instruction counts as much as a fast one. The load generator is not under valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from picows import WSListener, WSMsgType, WSTransport, ws_connect

from staywire_bench.ports import free_port
from staywire_bench.servers import staywire_settings

ROOT = Path(__file__).resolve().parents[1]
TEXT = WSMsgType.TEXT
REPLIES = (b'{"type":"pong"', b'{"type":"ack"', b'{"type":"echo"')


class Progress:
    """The connections still making round trips; ``done`` is set when none is left."""

    def __init__(self, conns: int) -> None:
        self.left = conns
        self.done = asyncio.Event()

    def finished(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()


class Client(WSListener):
    """One connection making round trips one at a time, until ``rounds`` are answered."""

    def __init__(self, idx: int, mode: str, rounds: int, progress: Progress) -> None:
        self.idx = idx
        self.mode = mode
        self.rounds = rounds
        self.progress = progress
        self.sent = 0
        self.pad = b"x" * 100

    def request(self) -> bytes:
        self.sent += 1
        if self.mode == "ping":
            return b'{"type":"ping","t":1}'
        if self.mode == "echo":
            return b'{"type":"echo","t":1}'
        return b'{"type":"pub","id":%d,"channel":"cost-%d","data":{"pad":"%s"}}' % (
            self.sent, self.idx, self.pad)

    def on_ws_connected(self, transport: WSTransport) -> None:
        if self.mode == "echo":  # the bare peer sends no welcome
            transport.send(TEXT, self.request())

    def on_ws_frame(self, transport: WSTransport, frame) -> None:  # type: ignore[no-untyped-def]
        payload = frame.get_payload_as_bytes()
        if payload.startswith(b'{"type":"welcome"'):
            transport.send(TEXT, self.request())
            return
        if not payload.startswith(REPLIES):
            return  # the server's heartbeat pings (valgrind is slow): not a reply
        if self.sent >= self.rounds:
            self.progress.finished()
            return
        transport.send(TEXT, self.request())


async def drive(port: int, path: str, mode: str, conns: int, rounds: int,
                timeout: float) -> None:
    progress = Progress(conns)
    transports = []
    for i in range(conns):
        tr, _ = await ws_connect(
            lambda i=i: Client(i, mode, rounds, progress),  # type: ignore[misc]
            f"ws://127.0.0.1:{port}{path}")
        transports.append(tr)
    try:
        await asyncio.wait_for(progress.done.wait(), timeout)
    finally:
        for tr in transports:
            tr.disconnect()
        await asyncio.sleep(0.2)


def wait_ready(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the server answers HTTP on its port. Not just TCP: ``staywire serve`` listens
    before its modules load (server/listen_socket.py), which under valgrind takes longer
    than a client's handshake timeout."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                probe.settimeout(2.0)
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                if probe.recv(64):
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("the server did not answer in time")


def instructions(server: str, mode: str, conns: int, rounds: int, timeout: float,
                 broker: str | None = None) -> int:
    """The instructions valgrind counted in one server run of ``rounds`` round trips."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        log = Path(tmp) / "valgrind.log"
        if server == "staywire":
            flags, env = staywire_settings()
            argv = [sys.executable, "-m", "staywire", "serve", "--host", "127.0.0.1",
                    "--port", str(port), "--api-port", "0", *flags]
            if broker:
                argv += ["--broker", broker]
            path = "/ws"
        else:
            argv, env = [sys.executable, str(ROOT / "bench" / "peers" / "picows_server.py"),
                         str(port)], {}
            path = "/"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             f"--log-file={log}", *argv],
            env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, proc, time.monotonic() + 120)
            asyncio.run(drive(port, path, mode, conns, rounds, timeout))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        found = re.search(r"Collected : (\d+)", log.read_text())
        if found is None:
            raise RuntimeError(f"no total in the valgrind log:\n{log.read_text()[-2000:]}")
        return int(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", choices=("staywire", "picows"), default="staywire")
    p.add_argument("--mode", choices=("ping", "pub", "echo"), default="ping",
                   help="ping and pub: Staywire; echo: bare picows")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--rounds", type=int, default=520)
    p.add_argument("--base", type=int, default=20)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    p.add_argument("--broker", help="Staywire's broker (a redis:// URL; default: memory). "
                   "Redis's own CPU is not counted, only the node's")
    args = p.parse_args()
    if (args.server == "picows") != (args.mode == "echo"):
        p.error("bare picows answers echo only; Staywire answers ping and pub")
    if args.broker and args.server != "staywire":
        p.error("--broker is a Staywire option")
    low = instructions(args.server, args.mode, args.conns, args.base, args.timeout, args.broker)
    high = instructions(args.server, args.mode, args.conns, args.rounds, args.timeout,
                        args.broker)
    per = (high - low) / (args.conns * (args.rounds - args.base))
    on = f", broker {args.broker}" if args.broker else ""
    print(f"{args.server} {args.mode}: {per:,.0f} instructions per round trip "
          f"({args.conns} connections, {args.rounds} - {args.base} round trips each{on})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
