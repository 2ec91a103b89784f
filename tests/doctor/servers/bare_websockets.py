"""A bare ``websockets`` echo server with the library's defaults (ping_interval 20 s,
ping_timeout 20 s, max_size 1 MiB, no Origin check). Usage: bare_websockets.py PORT"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port):
        print(f"listening {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
