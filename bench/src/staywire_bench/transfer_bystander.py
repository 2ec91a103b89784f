"""The bystander of the transfer figure, in a process of its own: one connection that
sends an application ping every 20 ms and times each answer.

    python -m staywire_bench.transfer_bystander URL KIND [SUBPROTOCOL]

``KIND`` is what the server answers: ``ping`` (Staywire, answered ``pong``) or ``echo``
(the bare peer). It prints ``ready`` once connected, pings until a line (or EOF) arrives
on stdin, then prints one JSON line: ``{"rtts_ms": [...]}``. Its own process, so that the
round trips measure the server, not the load generator's event loop, busy with the
transfer's sender and subscribers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvloop
from picows import WSListener, WSMsgType, WSTransport, ws_connect

PERIOD = 0.02
MAX_PINGS = 60_000  # 20 minutes of pings: the loop is bounded even if stdin never closes


class _Bystander(WSListener):
    def __init__(self) -> None:
        self.rtts: list[float] = []

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        msg = json.loads(frame.get_payload_as_bytes())
        if msg.get("type") in ("pong", "echo") and isinstance(msg.get("t"), float):
            self.rtts.append((time.perf_counter() - msg["t"]) * 1000)


async def main(url: str, kind: str, subprotocol: str | None) -> None:
    headers = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    transport, listener = await ws_connect(_Bystander, url, extra_headers=headers)
    assert isinstance(listener, _Bystander)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_stdin() -> None:
        if not stop.done():
            stop.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    print("ready", flush=True)
    for _ in range(MAX_PINGS):
        transport.send(WSMsgType.TEXT, json.dumps({"type": kind, "t": time.perf_counter()},
                                                  separators=(",", ":")).encode())
        try:
            await asyncio.wait_for(asyncio.shield(stop), PERIOD)
            break
        except asyncio.TimeoutError:
            pass
    await asyncio.sleep(PERIOD * 5)  # the answers of the last pings
    transport.disconnect()
    print(json.dumps({"rtts_ms": listener.rtts}), flush=True)


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
