"""Staywire: a real-time WebSocket server and clients that get the classic failures right.

The names below are imported lazily, so ``import staywire`` stays cheap and a
client-only program does not load the server.
"""

from __future__ import annotations

import importlib
from typing import Any

from staywire.protocol.codes import CloseCode, ErrorCode

__version__ = "0.1.0"

_LAZY = {
    "Server": "staywire.server.app",
    "RpcContext": "staywire.server.app",
    "Config": "staywire.config",
    "Client": "staywire.client",
    "ConnectionState": "staywire.client",
}

__all__ = ["CloseCode", "ErrorCode", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'staywire' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
