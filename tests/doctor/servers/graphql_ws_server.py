"""A small graphql-transport-ws server (the protocol of the graphql-ws library): it
answers ``connection_init`` with ``connection_ack``, sends ``{"type":"ping"}`` every
second and closes with 4000 a client that has not answered with ``{"type":"pong"}``
one second later. Protocol-level pings are off, so only the application's count.
Usage: graphql_ws_server.py PORT"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, serve

INTERVAL = 1.0
MAX_SIZE = 256 * 1024


async def handler(ws: ServerConnection) -> None:
    pong = asyncio.Event()
    pong.set()

    async def pinger() -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            if not pong.is_set():
                await ws.close(4000, "pong timeout")
                return
            pong.clear()
            await ws.send(json.dumps({"type": "ping"}))

    task = asyncio.create_task(pinger())
    try:
        async for message in ws:
            try:
                kind = json.loads(message).get("type")
            except (ValueError, AttributeError):
                await ws.close(4400, "invalid message")
                return
            if kind == "connection_init":
                await ws.send(json.dumps({"type": "connection_ack"}))
            elif kind == "pong":
                pong.set()
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
    finally:
        task.cancel()


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, subprotocols=["graphql-transport-ws"],
                     ping_interval=None, max_size=MAX_SIZE):
        print(f"listening {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
