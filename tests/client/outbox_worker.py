"""A client process for the persistent-outbox test; it is killed (SIGKILL) mid-way.

    python -m tests.client.outbox_worker URL DB SENT QUEUED

Reads a line on stdin before each step, and prints one when the step is done:
``open`` (connected), ``sent`` (SENT publishes written, none acked yet: the test
holds the acks at a proxy), ``queued`` (after the connection was reset, QUEUED
more publishes waiting in the outbox, never sent). Then it waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys

from staywire.client import Client, ConnectionState


async def wait(predicate, what: str) -> None:
    for _ in range(1000):  # 10 s at most
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise SystemExit(f"outbox_worker: timed out waiting for {what}")


async def main(url: str, db: str, sent: int, queued: int) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    # a long backoff: after the reset this process stays away until it is killed
    client = Client(url, outbox_path=db, backoff_base=30.0, ping_interval=None)
    await client.connect()
    print("open", flush=True)

    await stdin.readline()
    tasks = [loop.create_task(client.publish("room:1", {"n": n})) for n in range(sent)]
    await wait(lambda: client.outbox_size == sent and client.buffered_amount == 0, "sent")
    print("sent", flush=True)

    await wait(lambda: client.state is ConnectionState.RECONNECTING, "the reset")
    tasks += [loop.create_task(client.publish("room:1", {"n": n}))
              for n in range(sent, sent + queued)]
    await wait(lambda: client.outbox_size == sent + queued, "queued")
    print("queued", flush=True)
    await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
