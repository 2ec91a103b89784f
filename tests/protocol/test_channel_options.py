"""Per-channel options: the shared glob matcher, most-specific-wins, and start-up errors
that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from staywire.config import load_config
from staywire.exceptions import ConfigError
from staywire.protocol.patterns import Glob, overlap
from staywire.proxy.routes import Routes
from staywire.server.auth import Identity, can_access


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("*", "anything", True), ("room:*", "room:", True), ("room:*", "room:1", True),
    ("room:*", "lobby", False), ("room:?", "room:1", True), ("room:?", "room:12", False),
    ("a.b", "a.b", True), ("a.b", "axb", False), ("*:lobby", "room:lobby", True),
    ("r*m", "room", True), ("r*m", "rooms", False),
])
def test_glob_matches_like_the_docs_say(pattern: str, name: str, expected: bool) -> None:
    assert Glob(pattern).matches(name) is expected


def test_grants_and_proxy_routes_share_the_matcher() -> None:
    ident = Identity(user="u", channels=("room:?",))
    assert can_access(ident, "room:1") and not can_access(ident, "room:12")
    routes = Routes(["room:? http://a.example/x", "http://b.example/y"])
    assert routes.url_for("room:1") == "http://a.example/x"
    assert routes.url_for("room:12") == "http://b.example/y"


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("room:*", "*:room", True), ("room:*", "lobby:*", False), ("a?c", "ab*", True),
    ("abc", "abd", False), ("*", "x", True), ("a*b", "a*c", False), ("??", "a", False),
])
def test_overlap(a: str, b: str, expected: bool) -> None:
    assert overlap(a, b) is expected and overlap(b, a) is expected


_alphabet = st.sampled_from("ab*?")


@given(st.text(_alphabet, min_size=1, max_size=5), st.text(_alphabet, min_size=1, max_size=5),
       st.text("ab", max_size=6))
def test_a_name_both_match_means_overlap(a: str, b: str, name: str) -> None:
    if Glob(a).matches(name) and Glob(b).matches(name):
        assert overlap(a, b)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "staywire.toml"
    path.write_text(text)
    return str(path)


def test_most_specific_pattern_wins_and_top_level_settings_are_defaults(tmp_path: Path) -> None:
    cfg = load_config(env={}, path=_write(tmp_path, """
history_size = 7
history_max_bytes = 4096

[channels."*"]
recovery = false

[channels."room:*"]
history_size = 50

[channels."room:vip:*"]
publish = false
max_subscribers = 2

[channels."room:vip:1"]
anonymous_read = false
"""))
    room = cfg.channel("room:1")
    assert room.history_size == 50 and room.recovery
    assert room.history_max_bytes == 4096
    vip = cfg.channel("room:vip:2")
    assert not vip.publish and vip.max_subscribers == 2
    assert vip.history_size == 7  # no merging: room:*'s history_size does not reach it
    assert cfg.channel("room:vip:1").anonymous_read is False
    assert cfg.channel("room:vip:1").publish is True
    assert cfg.channel("other").recovery is False and cfg.channel("other").history_size == 7


def test_presence_options_are_read_per_channel(tmp_path: Path) -> None:
    path = _write(tmp_path, 'presence_max_members = 50\n[channels."room:*"]\npresence = true\n'
                  'join_leave = true\n[channels."big:*"]\npresence = true\n'
                  'presence_max_members = 10000\n')
    cfg = load_config(env={}, path=path)
    room, big, other = cfg.channel("room:1"), cfg.channel("big:1"), cfg.channel("x")
    assert (room.presence, room.join_leave, room.presence_max_members) == (True, True, 50)
    assert (big.presence, big.join_leave, big.presence_max_members) == (True, False, 10000)
    assert not other.presence


def test_without_channel_tables_every_channel_has_the_top_level_settings() -> None:
    cfg = load_config(env={}, overrides={"history_size": 3, "presence_max_members": 9})
    opts = cfg.channel("x")
    assert opts.history_size == 3 and opts.presence_max_members == 9 and not opts.presence


@pytest.mark.parametrize(("text", "line", "words"), [
    ('port = 1\n\n[channels."room:*"]\npresense = true\n', 4, "unknown option 'presense'"),
    ('[channels."room:*"]\nrecovery = true\n\n[channels."*:room"]\nrecovery = true\n', 1,
     "equally specific"),
    ('[channels."room:*"]\nhistory_size = 5\njoin_leave = true\n', 3,
     "join_leave needs presence = true"),
    ('[channels."room:*"]\npresence = true\npresence_max_members = 0\n', 3,
     "presence_max_members must be > 0"),
    ('[channels."room:*"]\nhistory_size = "ten"\n', 2, "history_size must be a number"),
    ('[channels."room:*"]\nhistory_size = -1\n', 2, "history_size must be >= 0"),
    ('[channels."room:*"]\npresence = 1\n', 2, "presence must be true or false"),
    ('[channels."room:*"]\nmax_subscribers = 0\n', 2, "max_subscribers must be > 0"),
    ('port = 1\n[channels."room!1"]\nrecovery = true\n', 2, "is not a channel pattern"),
    ('\n\nporto = 1\n', 3, "unknown option 'porto'"),
    ('[staywire]\n[staywire.channels."x"]\nnope = 1\n', 3, "unknown option 'nope'"),
])
def test_bad_channel_options_stop_start_up_naming_the_line(tmp_path: Path, text: str,
                                                          line: int, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(env={}, path=path)
    assert f"{path}:{line}" in str(err.value) and words in str(err.value)


def test_conflict_names_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, '[channels."a:*"]\n[channels."b:*"]\n[channels."*:a"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(env={}, path=path)
    assert f"{path}:1 and {path}:3" in str(err.value)


def test_channels_only_come_from_the_file() -> None:
    with pytest.raises(ConfigError, match="tables in the config file"):
        load_config(env={"STAYWIRE_CHANNELS": "x"})
