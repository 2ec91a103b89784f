"""Per-channel options: what a channel keeps, shows and allows, chosen by channel pattern.

In the TOML file, one table per pattern (docs/configuration.md)::

    [channels."room:*"]
    history_size = 50
    recovery = false

    [channels."room:vip:*"]
    publish = false

A channel takes the options of the most specific pattern that matches it
(``protocol.patterns``: more literal characters, then fewer wildcards); an option
that pattern leaves out comes from the top-level setting of the same name, or
the default below. Nothing is merged from less specific patterns: one table says
everything that differs for its channels. Unknown option names, wrong types,
invalid patterns and two equally specific patterns that can match the same
channel stop the server at start-up with the line they are on.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from staywire.exceptions import ConfigError
from staywire.protocol.patterns import Glob, overlap

__all__ = ["ChannelOptions", "ChannelRules", "parse_channel_rules"]

# Channel characters (protocol/envelope.py CHANNEL_PATTERN) plus the two wildcards.
_PATTERN = re.compile(r"[A-Za-z0-9_\-:.@/=*?]{1,128}")
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelOptions:
    """The options of one channel, all resolved."""

    history_size: int = 100  # publications kept; 0: no history
    history_ttl: float = 300.0  # seconds they are kept
    history_max_bytes: int | None = None  # bound on the data bytes kept; None: unbounded
    recovery: bool = True  # a `sub` with `since` replays missed publications
    presence: bool = False  # subscribers may ask who is subscribed (server/presence.py)
    join_leave: bool = False  # subscribers get `join` and `leave` events, per user
    presence_max_members: int = 1000  # over it, presence answers the counts only
    publish: bool = True  # clients may publish; false: only the backend (server API)
    anonymous_read: bool | None = None  # anonymous may subscribe; None: anonymous_channels
    anonymous_write: bool | None = None  # anonymous may publish; None: anonymous_channels
    max_subscribers: int | None = None  # subscribers per node; None: unbounded
    binary: bool = True  # clients may publish binary data; false: a binary pub is forbidden


# The options a top-level setting of the same name provides the default of.
INHERITED = ("history_size", "history_ttl", "history_max_bytes", "presence_max_members")
_FIELDS = {f.name: f for f in dataclasses.fields(ChannelOptions)}


def _check(name: str, value: Any) -> Any:
    """The value if it fits the option, else ``ValueError`` saying what fits."""
    kind = str(_FIELDS[name].type)
    optional = "None" in kind
    if value is None and optional:
        return None
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if kind.startswith("int"):
        if not isinstance(value, int):
            raise ValueError("must be a whole number")
        if value < 0 or (value == 0 and name != "history_size"):
            raise ValueError("must be > 0" if name != "history_size" else "must be >= 0")
        return value
    if value <= 0:
        raise ValueError("must be > 0")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Rule:
    glob: Glob
    values: tuple[tuple[str, Any], ...]
    line: int | None


class ChannelRules:
    """The patterns of the ``[channels]`` tables, and the options each channel resolves to."""

    __slots__ = ("rules", "defaults", "_cache")

    def __init__(self, rules: tuple[_Rule, ...] = (),
                 defaults: ChannelOptions | None = None) -> None:
        # Most specific first: the first match is the answer.
        self.rules = tuple(sorted(rules, key=lambda r: r.glob.specificity, reverse=True))
        self.defaults = defaults or ChannelOptions()
        self._cache: dict[str, ChannelOptions] = {}

    def bind(self, defaults: ChannelOptions) -> ChannelRules:
        """The same patterns over other defaults (the top-level settings)."""
        return ChannelRules(self.rules, defaults)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ChannelRules) and self.rules == other.rules
                and self.defaults == other.defaults)

    def __hash__(self) -> int:
        return hash((self.rules, self.defaults))

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(r.glob.pattern for r in self.rules)

    def for_channel(self, channel: str) -> ChannelOptions:
        cached = self._cache.get(channel)
        if cached is not None:
            return cached
        options = self.defaults
        for rule in self.rules:
            if rule.glob.matches(channel):
                options = dataclasses.replace(self.defaults, **dict(rule.values))
                break
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # channel names are unbounded; the rules are few
        self._cache[channel] = options
        return options

    def any(self, name: str) -> bool:
        """Does any channel have option ``name`` true (for parts that cost only when used)?"""
        return bool(getattr(self.defaults, name)) or any(
            bool(dict(r.values).get(name)) for r in self.rules)


def parse_channel_rules(tables: Any, source: str, text: str | None = None) -> ChannelRules:
    """The ``[channels."PATTERN"]`` tables of a config file; ``text`` gives line numbers."""
    lines = _lines(text) if text is not None else {}

    def where(pattern: str, key: str | None = None) -> str:
        line = lines.get((pattern, key)) or lines.get((pattern, None))
        return f"{source}:{line}" if line else source

    if not isinstance(tables, Mapping):
        raise ConfigError(f"{source}: channels must be tables: [channels.\"PATTERN\"]")
    rules: list[_Rule] = []
    for pattern, table in tables.items():
        if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
            raise ConfigError(f"{where(str(pattern))}: {pattern!r} is not a channel pattern "
                              "(channel characters, with * and ? as wildcards)")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where(pattern)}: channels.{pattern!r} must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(f"{where(pattern, key)}: channels.{pattern!r}: unknown "
                                  f"option {key!r} (known: {', '.join(_FIELDS)})")
            try:
                values[name] = _check(name, value)
            except ValueError as exc:
                raise ConfigError(f"{where(pattern, key)}: channels.{pattern!r}: "
                                  f"{key} {exc}") from None
        if values.get("join_leave") and not values.get("presence"):
            raise ConfigError(f"{where(pattern, 'join_leave')}: channels.{pattern!r}: "
                              "join_leave needs presence = true")
        rules.append(_Rule(Glob(pattern), tuple(values.items()), lines.get((pattern, None))))
    for i, a in enumerate(rules):
        for b in rules[i + 1:]:
            if (a.glob.specificity == b.glob.specificity
                    and overlap(a.glob.pattern, b.glob.pattern)):
                raise ConfigError(
                    f"{where(a.glob.pattern)} and {where(b.glob.pattern)}: channel patterns "
                    f"{a.glob.pattern!r} and {b.glob.pattern!r} are equally specific and can "
                    "match the same channel: make one more specific")
    return ChannelRules(tuple(rules))


# -- line numbers: tomllib gives none, so the file text is scanned for them ----------

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=")
_PART = re.compile(r"\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|$)")


def _dotted(text: str) -> list[str]:
    parts, pos = [], 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None or m.end() == pos:
            return []
        part = m.group(1)
        parts.append(part[1:-1] if part[0] in "\"'" else part)
        pos = m.end()
    return parts


def _lines(text: str) -> dict[tuple[str, str | None], int]:
    """(pattern, None) -> the line of its table header; (pattern, key) -> an option's line."""
    found: dict[tuple[str, str | None], int] = {}
    table: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header is not None:
            parts = _dotted(header.group(1))
            if parts[:1] == ["staywire"]:
                parts = parts[1:]
            table = parts[1] if len(parts) == 2 and parts[0] == "channels" else None
            if table is not None:
                found.setdefault((table, None), number)
            continue
        key = _KEY.match(line)
        if key is not None and table is not None:
            name = key.group(1)
            found.setdefault((table, name.strip("\"'")), number)
    return found
