"""A small server that speaks the Phoenix channels heartbeat: the client sends
``{"topic":"phoenix","event":"heartbeat",...}`` and gets a ``phx_reply``; the server
never pings, and closes (1000) a client silent for TIMEOUT seconds, as Phoenix's
socket timeout does. Usage: phoenix_server.py PORT"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, serve

TIMEOUT = 2.0
MAX_SIZE = 64 * 1024


async def handler(ws: ServerConnection) -> None:
    while True:
        try:
            message = await asyncio.wait_for(ws.recv(), TIMEOUT)
        except TimeoutError:
            await ws.close(1000, "heartbeat timeout")
            return
        try:
            msg = json.loads(message)
        except ValueError:
            await ws.close(1003, "not JSON")
            return
        if msg.get("topic") == "phoenix" and msg.get("event") == "heartbeat":
            await ws.send(json.dumps({"topic": "phoenix", "event": "phx_reply",
                                      "payload": {"status": "ok", "response": {}},
                                      "ref": msg.get("ref")}))


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None, max_size=MAX_SIZE):
        print(f"listening {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
