"""Staywire: a real-time WebSocket server and clients that get the classic failures right."""

from staywire.protocol.codes import CloseCode, ErrorCode

__version__ = "0.1.0"

__all__ = ["CloseCode", "ErrorCode", "__version__"]
