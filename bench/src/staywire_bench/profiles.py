"""py-spy's raw output (collapsed stacks) summarised: self and total share per function."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["summarize_profile"]


def summarize_profile(raw: str, top: int = 25) -> dict[str, Any]:
    """Self and total shares per function from py-spy's raw (collapsed stack) output."""
    self_counts: dict[str, int] = defaultdict(int)
    total_counts: dict[str, int] = defaultdict(int)
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            total_counts[name] += count
    if not samples:
        return {"samples": 0, "top_self": [], "top_total": []}

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        items = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(name, 100.0 * c / samples) for name, c in items]

    return {"samples": samples, "top_self": ranked(self_counts),
            "top_total": ranked(total_counts)}


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: lines are merged."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:]) if path else ""
    return f"{name} ({short})" if short else name
