"""Configuration: sources and their order, validation, and docs that list every option."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from staywire.config import Config, load_config
from staywire.exceptions import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_option_is_documented_with_its_default() -> None:
    text = DOCS.read_text()
    for f in fields(Config):
        assert f"`{f.name}`" in text, f"docs/configuration.md does not list {f.name}"


def test_every_channel_option_is_documented_in_the_channels_table() -> None:
    from staywire.channel_options import ChannelOptions

    text = DOCS.read_text()
    section = text.split("## Channels: options by pattern", 1)[1].split("\n## ", 1)[0]
    for f in fields(ChannelOptions):
        assert f"| `{f.name}` |" in section, f"docs/configuration.md: no row for {f.name}"


def test_sources_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('port = 9000\nping_interval = 5.0\nallowed_origins = ["https://a.example"]\n')
    env = {"STAYWIRE_PING_INTERVAL": "7", "STAYWIRE_ALLOW_ANONYMOUS": "yes",
           "STAYWIRE_ANONYMOUS_CHANNELS": "room:*, lobby"}
    cfg = load_config(path=str(toml), env=env, overrides={"port": 9100})
    assert cfg.port == 9100 and cfg.ping_interval == 7.0 and cfg.allow_anonymous is True
    assert cfg.allowed_origins == ("https://a.example",)
    assert cfg.anonymous_channels == ("room:*", "lobby")


def test_defaults_are_safe() -> None:
    cfg = load_config(env={})
    assert cfg.allowed_origins == () and cfg.allow_anonymous is False
    assert cfg.ping_interval < 60  # below common proxies' idle timeout
    assert cfg.effective_api_port == cfg.port + 1000 and cfg.api_host == "127.0.0.1"


@pytest.mark.parametrize("bad", [
    {"porto": 1}, {"port": "eighty"}, {"ping_interval": 0}, {"broker": "kafka://x"},
    {"allow_anonymous": "perhaps"}, {"jwt_secret": "a", "jwt_public_key": "b"},
    {"max_send_buffer": 10},
])
def test_bad_options_name_themselves(bad: dict) -> None:
    with pytest.raises(ConfigError):
        load_config(env={}, overrides=bad)


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().port = 1  # type: ignore[misc]
