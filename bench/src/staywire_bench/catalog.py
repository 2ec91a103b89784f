"""The names ``staywire bench`` knows, importable at no cost: ``staywire --help`` and every
``staywire serve`` build the command parser, which registers ``bench``."""

from __future__ import annotations

__all__ = ["BINARY_SERVERS", "EXTRA_SERVERS", "EXTRA_WORKLOADS", "SERVERS", "WORKLOADS"]

#: Servers, in report order (the Node ws peer is the reference of the ratios).
SERVERS = ("staywire", "staywire-redis", "picows", "websockets", "python-socketio", "node-ws",
           "node-socketio")

#: Servers run only when named (``--servers staywire,staywire-pygc``): Staywire with
#: ``--gc-policy python``, the interpreter's garbage collection, beside the default
#: ``tuned`` one (docs/benchmarks.md, *Garbage collection*).
EXTRA_SERVERS = ("staywire-pygc",)

#: Workloads, in the order they run.
WORKLOADS = ("echo1", "echo100", "publish", "fanout", "binfanout", "idle", "connrate", "storm")

#: The servers the binary fan-out (``binfanout``: 1 KiB in binary frames) runs against.
BINARY_SERVERS = ("staywire", "staywire-redis", "node-ws")

#: Staywire-only workloads, run only when named (``--workloads scaleout``, ``proxy``,
#: ``sizing``, ``transfer``): not part of the default run (``transfer`` runs the bare
#: picows relay beside Staywire, its own baseline).
EXTRA_WORKLOADS = ("scaleout", "proxy", "sizing", "transfer")
