"""``redis+sentinel://`` and ``redis+cluster://`` URLs: what they name, and a clear error
for a malformed one."""

from __future__ import annotations

import pytest

from staywire.brokers.redis_pool import (
    ClusterURL,
    SentinelURL,
    parse_cluster_url,
    parse_sentinel_url,
)
from staywire.config import load_config
from staywire.exceptions import ConfigError


def test_hosts_service_database_and_passwords() -> None:
    assert parse_sentinel_url("redis+sentinel://a:26380,b,[::1]:26381/mymaster/2") == \
        SentinelURL((("a", 26380), ("b", 26379), ("::1", 26381)), "mymaster", 2)
    parts = parse_sentinel_url("redis+sentinel://:p%40ss@h:1/svc?sentinel_password=s3")
    assert (parts.db, parts.username, parts.password, parts.sentinel_password) == \
        (0, None, "p@ss", "s3")
    assert parse_sentinel_url("redis+sentinel://u:pw@h:1/svc/").username == "u"


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel:///mymaster/0", "no sentinel"),
    ("redis+sentinel://,/mymaster/0", "no sentinel"),
    ("redis+sentinel://h:1", "no service name"),
    ("redis+sentinel://h:1//0", "no service name"),
    ("redis+sentinel://h:0/m", "port must be 1-65535"),
    ("redis+sentinel://h:x/m", "port must be 1-65535"),
    ("redis+sentinel://:1/m", "no host"),
    ("redis+sentinel://h/m/zero", "database must be a number"),
    ("redis+sentinel://h/m/0/extra", "nothing after the database"),
    ("redis+sentinel://h/m?db=1", "unknown Sentinel URL parameter 'db'"),
])
def test_a_malformed_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sentinel_url(url)
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, overrides={"broker": url})


def test_the_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, overrides={"broker": "redis+sentinel://:hunter2@h:1"})
    assert "hunter2" not in str(caught.value)


def test_config_accepts_a_sentinel_url_and_checks_the_wait_options() -> None:
    url = "redis+sentinel://127.0.0.1:26379/mymaster/0"
    cfg = load_config(env={"STAYWIRE_REDIS_WAIT_REPLICAS": "1"}, overrides={"broker": url})
    assert (cfg.broker, cfg.redis_wait_replicas, cfg.redis_wait_timeout) == (url, 1, 0.5)
    with pytest.raises(ConfigError, match="needs a Redis broker"):
        load_config(env={}, overrides={"redis_wait_replicas": 1})
    with pytest.raises(ConfigError, match="redis_wait_timeout > 0"):
        load_config(env={}, overrides={"broker": url, "redis_wait_timeout": 0})


def test_a_cluster_url_names_its_nodes() -> None:
    parts = parse_cluster_url("redis+cluster://u:p%40ss@a:7000,b,[::1]:7002/")
    assert parts == ClusterURL((("a", 7000), ("b", 6379), ("::1", 7002)), "u", "p@ss")
    assert parse_cluster_url("redis+cluster://h:1").nodes == (("h", 1),)
    cfg = load_config(env={}, overrides={"broker": "redis+cluster://h:1,h:2/"})
    assert cfg.broker == "redis+cluster://h:1,h:2/"


@pytest.mark.parametrize(("url", "message"), [
    ("redis+cluster:///", "no cluster node"),
    ("redis+cluster://h:1/0", "no path: a cluster has database 0 only"),
    ("redis+cluster://h:1/?protocol=3", "takes no parameters"),
    ("redis+cluster://h:70000/", "port must be 1-65535"),
    ("redis+cluster://:hunter2@:1/", "no host"),
])
def test_a_malformed_cluster_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cluster_url(url)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(env={}, overrides={"broker": url})
    assert "hunter2" not in str(caught.value)
