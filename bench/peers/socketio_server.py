"""python-socketio peer on aiohttp for ``staywire bench`` (WebSocket transport), on uvloop.

Events: "echo" (emitted back to the sender), "sub" (join the room; acked),
"pub" (emitted as "msg" to the room).

Usage: python bench/peers/socketio_server.py PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import socketio
import uvloop
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"],
                           cors_allowed_origins="*", logger=False, engineio_logger=False)


@sio.on("echo")
async def echo(sid: str, data: Any) -> None:
    await sio.emit("echo", data, to=sid)


@sio.on("sub")
async def sub(sid: str, *args: Any) -> bool:
    await sio.enter_room(sid, "room")
    return True  # acked


@sio.on("pub")
async def pub(sid: str, data: Any) -> None:
    await sio.emit("msg", data, room="room")


async def main(port: int) -> None:
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {port}", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
