"""Small statistics helpers shared by the load generator and the reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["median", "peak_rate", "percentile"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation, None when empty."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return percentile(present, 50.0)


def peak_rate(times: Sequence[float], window: float = 0.2) -> float:
    """The highest event rate (per second) over any ``window``-second interval."""
    if not times:
        return 0.0
    data = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(data):
        while t - data[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best / window
