"""RPC methods and what their handlers see of the caller.

``RpcRegistry`` holds the methods an application registers with ``@server.rpc``;
a method registered nowhere but matched by ``rpc_proxy_url`` is forwarded to the
application's backend, whose result or error is the answer (docs/proxy.md).
``call`` decodes the params into the handler's declared type (bad params are an
``invalid_params`` error reply, never an exception out of the connection) and
encodes the result. ``RpcContext`` is the caller as handlers and hooks see it.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from staywire.exceptions import ProxyUnavailable
from staywire.protocol.codes import ErrorCode
from staywire.proxy.routes import Routes
from staywire.proxy.schema import Failure, RpcResult
from staywire.server.auth import Identity

__all__ = ["BytesResult", "Caller", "RpcBackend", "RpcContext", "RpcRegistry"]

log = logging.getLogger("staywire.server")


class Caller(Protocol):
    """What an ``RpcContext`` reads of the connection it describes."""

    @property
    def id(self) -> str: ...
    @property
    def ip(self) -> str: ...
    @property
    def identity(self) -> Identity | None: ...
    @property
    def user_data(self) -> dict[str, Any]: ...
    @property
    def headers(self) -> dict[str, str] | None: ...


class RpcBackend(Protocol):
    """The application's backend as RPC uses it (``proxy.backend.Backend``)."""

    @property
    def rpc(self) -> Routes: ...

    async def call(self, url: str, caller: tuple[str, str, dict[str, str] | None], user: str,
                   method: str, data: bytes) -> RpcResult | Failure: ...


class RpcContext:
    """What an RPC handler or hook learns about the calling connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Caller) -> None:
        self._conn = conn

    @property
    def client(self) -> str:
        return self._conn.id

    @property
    def user(self) -> str:
        ident = self._conn.identity
        return ident.user if ident is not None else ""

    @property
    def identity(self) -> Identity | None:
        return self._conn.identity

    @property
    def ip(self) -> str:
        return self._conn.ip

    @property
    def data(self) -> dict[str, Any]:
        """Per-connection storage for the application."""
        return self._conn.user_data


class BytesResult:
    """A handler answered bytes: a binary ``result`` frame under protocol v2, base64 with
    ``"encoding": "base64"`` under v1 (docs/protocol.md, *Binary frames*). Not a tuple:
    a tuple is the answer of a failed call."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_BYTES = (bytes, bytearray, memoryview)


class _Method:
    __slots__ = ("handler", "param_type")

    def __init__(self, handler: Callable[..., Any], param_type: Any) -> None:
        self.handler = handler
        self.param_type = param_type


class RpcRegistry:
    __slots__ = ("_methods", "backend")

    def __init__(self, backend: RpcBackend | None = None) -> None:
        self._methods: dict[str, _Method] = {}
        self.backend = backend

    def register(self, name: str, handler: Callable[..., Any]) -> None:
        """``handler(ctx, params: T)``: ``T`` is read from its annotation (``Any`` if none)."""
        hints = typing.get_type_hints(handler)
        params = list(inspect.signature(handler).parameters)
        param_type = hints.get(params[1], Any) if len(params) > 1 else None
        self._methods[name] = _Method(handler, param_type)

    async def call(self, conn: Caller, method: str, data: bytes, *, binary: bool = False
                   ) -> bytes | BytesResult | tuple[ErrorCode, str]:
        """The encoded JSON result, the bytes the handler answered, or the error reply's
        code and reason. ``binary``: ``data`` is the bytes of a binary ``rpc``, handed to
        a handler whose params are ``bytes`` (or unannotated) as they are."""
        entry = self._methods.get(method)
        if entry is None:
            url = self.backend.rpc.url_for(method) if self.backend is not None else None
            if url is None:
                return ErrorCode.UNKNOWN_METHOD, f"unknown method {method!r}"
            if binary:  # the rpc proxy's contract is JSON (docs/proxy.md)
                return (ErrorCode.INVALID_PARAMS,
                        f"method {method!r} is answered by the backend and takes JSON params")
            return await self._forward(url, conn, method, data)
        args: list[Any] = [RpcContext(conn)]
        if binary:
            if entry.param_type not in (None, Any, bytes):
                return (ErrorCode.INVALID_PARAMS,
                        f"method {method!r} takes JSON params, not bytes")
            if entry.param_type is not None:
                args.append(data)
        elif entry.param_type is not None:
            try:
                args.append(msgspec.json.decode(data, type=entry.param_type))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return ErrorCode.INVALID_PARAMS, str(exc)
        try:
            result = entry.handler(*args)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, _BYTES):
                return BytesResult(bytes(result))
            return msgspec.json.encode(result)
        except Exception:
            log.exception("rpc %s failed conn=%s", method, conn.id)
            return ErrorCode.INTERNAL, "internal error"

    async def _forward(self, url: str, conn: Caller, method: str, data: bytes
                       ) -> bytes | tuple[ErrorCode, str]:
        assert self.backend is not None
        ident = conn.identity
        try:
            answer = await self.backend.call(url, (conn.id, conn.ip, conn.headers),
                                             ident.user if ident is not None else "", method,
                                             data)
        except ProxyUnavailable:
            return ErrorCode.UNAVAILABLE, "the application's backend is unavailable; try again"
        if isinstance(answer, Failure):
            return answer.code, answer.reason or "refused by the application"
        return bytes(answer.data)
