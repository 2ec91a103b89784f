"""A server process with one RPC method, for the client's RPC tests.

    python -m tests.client.rpc_server PORT

The ``staywire serve`` CLI registers no RPC methods (they belong to
applications), so this is the smallest real application: the same ``Server``
the CLI runs, plus ``add``, in its own process.
"""

from __future__ import annotations

import sys

import uvloop

from staywire.config import Config
from staywire.server.app import RpcContext, Server


def main(port: int) -> None:
    server = Server(Config(host="127.0.0.1", port=port, api_port=0, allow_anonymous=True,
                           anonymous_channels=("*",)))

    @server.rpc("add")
    async def add(ctx: RpcContext, params: dict[str, int]) -> dict[str, int]:
        return {"sum": params["a"] + params["b"]}

    uvloop.run(server.serve())


if __name__ == "__main__":
    main(int(sys.argv[1]))
