"""The WebSocket port, bound before the server's modules load.

A restarted node spends most of its start-up importing (picows, prometheus-client, the
protocol modules). Clients that reconnect in that window are refused while the port is
closed, and each refusal costs them a backoff delay, which is what a reconnect storm's
"all back" time is made of. ``staywire serve`` therefore binds and listens first, with
nothing but the socket module, and hands the socket to the server: a client that comes
early completes its TCP handshake and waits in the kernel's backlog until the server
accepts, as under systemd socket activation.

Only a host that resolves to one address is bound early; for a name with several
(``localhost`` as both ::1 and 127.0.0.1) the server binds them all itself, as before.
"""

from __future__ import annotations

import socket

__all__ = ["BACKLOG", "bind_early"]

BACKLOG = 4096  # the server's listen backlog, early or not (a storm arrives at once)


def bind_early(host: str, port: int) -> socket.socket | None:
    """A listening, non-blocking socket on ``host``:``port``, or None where the server
    should bind itself (a name with several addresses, or one that does not resolve here,
    whose error the server then reports). ``OSError`` if the port cannot be bound."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError:
        return None
    if len({info[4] for info in infos}) != 1:
        return None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # as asyncio binds: v6 only, v4 has its own socket
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        # Worded as asyncio words it when the server binds the port itself.
        raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: "
                                 f"{(exc.strerror or str(exc)).lower()}") from None
    return sock
