"""A deliberately bad WebSocket server: it accepts every Origin, hands out a session
cookie (so that open Origin is cross-site WebSocket hijacking), never pings, and drops
a message over 8 KiB by cutting TCP, with no close frame. It decides 10 ms after the
message arrived (as a server that validates off the receive path does), so the ping the
doctor sends behind the message is answered first: the doctor must not take that pong
for acceptance. Usage: bad_server.py PORT"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

LIMIT = 8 * 1024
DECIDE_AFTER = 0.01


def with_cookie(conn: ServerConnection, request: Request, response: Response) -> Response:
    response.headers["Set-Cookie"] = "sid=bad-session; Path=/"
    return response


async def handler(ws: ServerConnection) -> None:
    async for message in ws:
        if len(message) > LIMIT:
            await asyncio.sleep(DECIDE_AFTER)
            ws.transport.abort()  # the bad part: no close frame, no code
            return
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None, max_size=None,
                     process_response=with_cookie):
        print(f"listening {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
