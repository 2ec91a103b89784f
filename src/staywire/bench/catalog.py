"""The names ``staywire bench`` knows, importable at no cost: ``staywire --help`` and every
``staywire serve`` build the command parser, which registers ``bench``."""

from __future__ import annotations

__all__ = ["SERVERS", "WORKLOADS"]

#: Servers, in report order (the Node ws peer is the reference of the ratios).
SERVERS = ("staywire", "staywire-redis", "picows", "websockets", "python-socketio", "node-ws",
           "node-socketio")

#: Workloads, in the order they run.
WORKLOADS = ("echo1", "echo100", "fanout", "idle", "connrate", "storm")
