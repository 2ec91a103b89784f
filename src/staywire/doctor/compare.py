"""--compare-direct: the same checks through the proxy and straight at the backend;
what differs is what the proxy does (strips the upgrade, cuts quiet connections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from staywire.doctor.fixes import NGINX_TIMEOUT, NGINX_UPGRADE
from staywire.doctor.model import Report, Status

__all__ = ["Difference", "differences"]

_RANK = {Status.PASS: 0, Status.SKIP: 0, Status.WARN: 1, Status.FAIL: 2}
_TIMEOUT_CHECKS = {"heartbeat.pings", "heartbeat.interval", "heartbeat.dead_client",
                   "idle.survival"}


@dataclass(frozen=True, slots=True)
class Difference:
    id: str
    proxied: str  # "STATUS: what it saw"
    direct: str
    note: str
    fix: str | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "proxied": self.proxied, "direct": self.direct,
                "note": self.note, "fix": self.fix}


def differences(proxied: Report, direct: Report) -> list[Difference]:
    if not direct.connected:
        assert direct.error is not None
        return [Difference("connect", "connected" if proxied.connected else "not connected",
                           f"not connected: {direct.error[1]}",
                           "the backend itself cannot be reached: compare needs both", None)]
    if not proxied.connected:
        assert proxied.error is not None
        return [Difference("handshake.upgrade", f"FAIL: {proxied.error[1]}",
                           "PASS: the backend upgrades", "the proxy does not pass the "
                           "WebSocket upgrade (Upgrade/Connection headers dropped, or "
                           "HTTP/1.0 to the upstream)", NGINX_UPGRADE)]
    out = []
    fix: str | None
    theirs = {c.id: c for c in direct.checks}
    for mine in proxied.checks:
        other = theirs.get(mine.id)
        if other is None or _RANK[mine.status] == _RANK[other.status]:
            continue
        worse = _RANK[mine.status] > _RANK[other.status]
        if worse and mine.id in _TIMEOUT_CHECKS:
            note, fix = ("the proxy cuts quiet connections sooner than the backend: its "
                         "idle timeout (nginx proxy_read_timeout) is shorter than the "
                         "heartbeat"), NGINX_TIMEOUT
        elif worse and mine.id == "handshake.upgrade":
            note, fix = "the proxy mangles the upgrade", NGINX_UPGRADE
        elif worse:
            note, fix = "worse through the proxy", mine.fix
        else:
            note, fix = "better through the proxy (it adds a protection)", None
        out.append(Difference(mine.id, f"{mine.status}: {mine.saw}",
                              f"{other.status}: {other.saw}", note, fix))
    return out
