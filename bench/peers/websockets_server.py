"""websockets peer for ``staywire bench``: echo plus a single broadcast room, on uvloop.

    {"type":"echo",...}      -> the same frame back
    {"type":"sub"}           -> join the room, answer {"type":"ack"}
    {"type":"pub","data":X}  -> {"type":"msg","data":X} to every room member (broadcast())

Usage: python bench/peers/websockets_server.py PORT
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

ACK = '{"type":"ack"}'
room: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            try:
                msg = json.loads(message)
                kind = msg["type"]
            except (ValueError, KeyError, TypeError):
                continue
            if kind == "echo":
                await ws.send(message)
            elif kind == "sub":
                room.add(ws)
                await ws.send(ACK)
            elif kind == "pub":
                broadcast(room, json.dumps({"type": "msg", "data": msg.get("data")},
                                             separators=(",", ":")))
    except ConnectionClosed:
        pass
    finally:
        room.discard(ws)


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # No compression and no keepalive pings: the same work as the other peers.
    async with serve(handler, "127.0.0.1", port, backlog=4096, compression=None,
                     ping_interval=None, max_queue=None, reuse_address=True):
        print(f"listening {port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
