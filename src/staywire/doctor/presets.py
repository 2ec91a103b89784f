"""Application-level heartbeats: what a server's ping message looks like and what to
answer, per protocol.

Browsers cannot send or see WebSocket ping frames, so many protocols ping in their own
messages (checklist, Heartbeats: "use application-level ping"). A preset tells the
doctor how to recognise the server's ping, how to answer it, how to read the interval
the server announces, what to send first, and a harmless message of an exact size
for the size probes (JSON padded with whitespace, so the server parses it as valid).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PRESETS", "Announcement", "Preset", "custom", "detect", "generic"]


@dataclass(frozen=True, slots=True)
class Announcement:
    interval: float  # seconds between the server's pings
    timeout: float | None  # seconds it waits for the answer, when it says
    source: str  # where it was read, for the report


def _obj(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _padded(prefix: str, suffix: str, size: int) -> bytes:
    pad = max(0, size - len(prefix) - len(suffix))
    return (prefix + " " * pad + suffix).encode()


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    is_ping: Callable[[str], bool]
    pong_for: Callable[[str], str | None]
    announced: Callable[[str], Announcement | None]
    probe_message: Callable[[int], bytes]
    subprotocol: str | None = None
    hello: tuple[str, ...] = ()  # sent right after the upgrade
    # The answer to the hello that must come before anything else is sent (socket.io
    # closes a client that emits before its namespace connect is acknowledged).
    ready: Callable[[str], bool] | None = None


def _never(_: str) -> bool:
    return False


def _none(_: str) -> None:
    return None


# -- Staywire (docs/protocol.md): {"type":"ping","t":...} -> {"type":"pong","t":...};
# the welcome announces ping_interval and pong_timeout in seconds.
def _sw_ping(text: str) -> bool:
    obj = _obj(text)
    return obj is not None and obj.get("type") == "ping"


def _sw_pong(text: str) -> str | None:
    obj = _obj(text) or {}
    return json.dumps({"type": "pong", "t": obj["t"]} if "t" in obj else {"type": "pong"})


def _sw_announced(text: str) -> Announcement | None:
    obj = _obj(text)
    if obj is None or obj.get("type") != "welcome":
        return None
    interval, timeout = obj.get("ping_interval"), obj.get("pong_timeout")
    if not isinstance(interval, int | float) or interval <= 0:
        return None
    return Announcement(float(interval), float(timeout) if isinstance(timeout, int | float)
                        else None, "welcome.ping_interval / pong_timeout")


# -- Engine.IO 4 under socket.io: the open packet 0{...pingInterval,pingTimeout} (ms);
# the server pings with "2", the client answers "3"; "40" connects the main namespace.
def _sio_announced(text: str) -> Announcement | None:
    if not text.startswith("0{"):
        return None
    obj = _obj(text[1:]) or {}
    interval, timeout = obj.get("pingInterval"), obj.get("pingTimeout")
    if not isinstance(interval, int | float) or interval <= 0:
        return None
    return Announcement(interval / 1000, timeout / 1000 if isinstance(timeout, int | float)
                        else None, "Engine.IO open packet pingInterval / pingTimeout")


# -- graphql-transport-ws: {"type":"ping"} -> {"type":"pong"} after connection_init.
def _gql_ping(text: str) -> bool:
    obj = _obj(text)
    return obj is not None and obj.get("type") == "ping"


PRESETS: dict[str, Preset] = {
    "staywire": Preset(
        "staywire", _sw_ping, _sw_pong, _sw_announced,
        lambda n: _padded('{"type":"ping","t":1', "}", n), subprotocol="staywire.v1"),
    "socketio": Preset(
        "socketio", lambda t: t == "2", lambda t: "3", _sio_announced,
        lambda n: _padded('42["doctor"', "]", n), hello=("40",),
        ready=lambda t: t.startswith("40")),
    # Phoenix servers do not ping: the client sends heartbeats to the "phoenix" topic
    # and the server drops it after its timeout. The size probe is such a heartbeat.
    "phoenix": Preset(
        "phoenix", _never, _none, _none,
        lambda n: _padded('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"',
                          "}", n)),
    "graphql-ws": Preset(
        "graphql-ws", _gql_ping, lambda t: '{"type":"pong"}', _none,
        lambda n: _padded('{"type":"pong"', "}", n), subprotocol="graphql-transport-ws",
        hello=('{"type":"connection_init"}',),
        ready=lambda t: (_obj(t) or {}).get("type") == "connection_ack"),
}


def generic() -> Preset:
    """No application protocol known: only protocol-level pings count."""
    return Preset("none", _never, _none, _none, lambda n: _padded('{"type":"echo"', "}", n))


def custom(ping: str, pong: str | None, base: Preset | None = None) -> Preset:
    """``--app-ping``/``--app-pong``: a JSON object matches messages holding the same
    fields and values (``{"type":"ping"}``); anything else matches the exact text."""
    want = _obj(ping)

    def is_ping(text: str) -> bool:
        if want is None:
            return text == ping
        obj = _obj(text)
        return obj is not None and all(obj.get(k) == v for k, v in want.items())

    b = base or generic()
    return Preset(f"custom ({b.name})" if base else "custom", is_ping,
                  lambda _: pong, b.announced, b.probe_message, b.subprotocol, b.hello, b.ready)


def detect(first: str | None, subprotocol: str | None) -> Preset | None:
    """The preset a server's first message (or selected subprotocol) gives away."""
    for preset in PRESETS.values():
        if subprotocol is not None and subprotocol == preset.subprotocol:
            return preset
    if first is not None:
        if _sw_announced(first) is not None:
            return PRESETS["staywire"]
        if _sio_announced(first) is not None:
            return PRESETS["socketio"]
    return None
