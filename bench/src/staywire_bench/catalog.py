"""The names ``staywire bench`` knows, importable at no cost: ``staywire --help`` and every
``staywire serve`` build the command parser, which registers ``bench``."""

from __future__ import annotations

__all__ = ["EXTRA_WORKLOADS", "SERVERS", "WORKLOADS"]

#: Servers, in report order (the Node ws peer is the reference of the ratios).
SERVERS = ("staywire", "staywire-redis", "picows", "websockets", "python-socketio", "node-ws",
           "node-socketio")

#: Workloads, in the order they run.
WORKLOADS = ("echo1", "echo100", "publish", "fanout", "idle", "connrate", "storm")

#: Staywire-only workloads, run only when named (``--workloads scaleout``, ``proxy``,
#: ``sizing``): not part of the default run and not run against the peers.
EXTRA_WORKLOADS = ("scaleout", "proxy", "sizing")
