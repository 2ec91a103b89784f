"""Channel patterns: the one glob matcher of Staywire.

A pattern is a channel name in which ``*`` stands for any run of characters (the
empty one too) and ``?`` for exactly one. Token grants (``channels``), proxy routes
and per-channel options all match with ``Glob``, so a pattern means the same thing
wherever it is written. Channel names cannot contain ``[`` or ``]``, so patterns
have no character classes either: everything else is a literal.

Per-channel options pick the *most specific* matching pattern: ``specificity``
orders patterns by their literal characters, then by fewer wildcards. Two patterns
of equal specificity that some channel matches both (``overlap``) would leave the
choice to their order in the file, so the options refuse them.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["Glob", "overlap"]

_WILDCARDS = frozenset("*?")


class Glob:
    __slots__ = ("pattern", "_match", "literal", "wildcards")

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise ValueError("a channel pattern cannot be empty")
        self.pattern = pattern
        self.wildcards = sum(1 for c in pattern if c in _WILDCARDS)
        self.literal = len(pattern) - self.wildcards
        if pattern == "*":
            self._match = None  # the common grant: every channel, without a regex
        else:
            parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c)
                     for c in pattern)
            self._match = re.compile("".join(parts), re.DOTALL).fullmatch

    def matches(self, name: str) -> bool:
        return self._match is None or self._match(name) is not None

    @property
    def specificity(self) -> tuple[int, int]:
        """Larger is more specific: more literal characters, then fewer wildcards."""
        return self.literal, -self.wildcards

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> Glob:
    return Glob(pattern)


def matches(pattern: str, name: str) -> bool:
    """``Glob(pattern).matches(name)``, with compiled patterns cached."""
    return _glob(pattern).matches(name)


def overlap(a: str, b: str) -> bool:
    """Is there a name that both patterns match?"""
    n, m = len(a), len(b)
    # reach[i][j]: a[:i] and b[:j] can match one common string. Both patterns are
    # short (channel names are at most 128 characters), so the table is small.
    reach = [[False] * (m + 1) for _ in range(n + 1)]
    reach[0][0] = True
    for i in range(n + 1):
        for j in range(m + 1):
            if not reach[i][j]:
                continue
            ca = a[i] if i < n else None
            cb = b[j] if j < m else None
            if ca == "*":
                reach[i + 1][j] = True  # the star matches nothing more
            if cb == "*":
                reach[i][j + 1] = True
            if ca is not None and cb is not None:
                if ca == "*" and cb == "*":
                    reach[i + 1][j + 1] = True
                elif ca == "*":
                    reach[i][j + 1] = True  # the star takes b's next character
                elif cb == "*":
                    reach[i + 1][j] = True
                elif ca == "?" or cb == "?" or ca == cb:
                    reach[i + 1][j + 1] = True
    return reach[n][m]
