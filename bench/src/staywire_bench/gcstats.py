"""The garbage collections a Staywire node ran during one phase, read from its
``/metrics`` (``staywire_gc_*``, src/staywire/server/gcpolicy.py) before and after it."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

__all__ = ["delta", "scrape"]

_LINE = re.compile(r'^staywire_gc_(collections_total|pause_seconds_total|max_pause_seconds)'
                   r'\{generation="(\d)"\} (\S+)$', re.M)
_KEYS = {"collections_total": "collections", "pause_seconds_total": "pause_s",
         "max_pause_seconds": "max_pause_s"}


def scrape(api_port: int | None) -> dict[str, list[float]] | None:
    """Collections and pause seconds per generation; None without an API port or when the
    node has no such metrics (a version before them)."""
    if not api_port:
        return None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{api_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out = {key: [0.0, 0.0, 0.0] for key in _KEYS.values()}
    found = False
    for name, gen, value in _LINE.findall(text):
        out[_KEYS[name]][int(gen)] = float(value)
        found = True
    return out if found else None


def delta(before: dict[str, list[float]] | None, after: dict[str, list[float]] | None
          ) -> dict[str, Any] | None:
    """``{"gen2": 3, "gen2_pause_ms": 412.0, "gen0": ..., ...}`` for the phase between;
    ``max_pause_ms``: the node's longest collection so far, of any generation (a phase
    with none of its own shows an earlier one)."""
    if before is None or after is None:
        return None
    out: dict[str, Any] = {}
    for g in range(3):
        out[f"gen{g}"] = int(after["collections"][g] - before["collections"][g])
        out[f"gen{g}_pause_ms"] = round(1000 * (after["pause_s"][g] - before["pause_s"][g]), 2)
    out["max_pause_ms"] = round(1000 * max(after.get("max_pause_s", [0.0])), 2)
    return out
