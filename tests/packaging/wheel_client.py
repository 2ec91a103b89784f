"""Run by the fresh venv's python (``-I``): one round trip through the installed wheel.

Usage: python -I wheel_client.py WS_URL CHANNEL

Subscribes, publishes, and prints one JSON line with what came back and where ``staywire``
was imported from, which the test checks is the venv and not the source tree. Uses only the
runtime package (no test helpers, no bench): that is what a user of the wheel has.
"""

from __future__ import annotations

import asyncio
import json
import sys

import staywire
from staywire.client import Client, Message


async def round_trip(url: str, channel: str) -> dict[str, object]:
    async with Client(url, connect_timeout=10) as client:
        async with client.subscribe(channel) as sub:
            offset = await client.publish(channel, {"text": "from the wheel"}, timeout=10)
            item = await asyncio.wait_for(anext(sub), timeout=10)
    if not isinstance(item, Message):
        raise SystemExit(f"expected a Message, got {item!r}")
    return {"published_offset": offset, "offset": item.offset, "data": item.data}


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    result = asyncio.run(round_trip(sys.argv[1], sys.argv[2]))
    result.update(module=staywire.__file__, prefix=sys.prefix, version=staywire.__version__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
