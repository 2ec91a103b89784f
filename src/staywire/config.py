"""Server configuration: one typed, frozen object with documented defaults.

Sources, later ones winning: the defaults below, a TOML file (``--config``),
``STAYWIRE_*`` environment variables, command-line flags. Environment variables
are read here and nowhere else. docs/configuration.md lists every option; a
test checks that it does.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from staywire.brokers.redis_urls import (
    CLUSTER_SCHEME,
    SENTINEL_SCHEME,
    is_redis_url,
    parse_cluster_url,
    parse_sentinel_url,
)
from staywire.channel_options import INHERITED, ChannelOptions, ChannelRules, parse_channel_rules
from staywire.exceptions import ConfigError
from staywire.proxy.routes import Routes, check_url

__all__ = ["Config", "load_config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    # -- listening
    host: str = "127.0.0.1"
    port: int = 8765
    ws_path: str = "/ws"
    api_host: str = "127.0.0.1"
    api_port: int | None = None  # None: port + 1000; 0: off
    tls_cert: str | None = None
    tls_key: str | None = None

    # -- security
    allowed_origins: tuple[str, ...] = ()  # deny every browser origin by default
    allow_anonymous: bool = False
    anonymous_channels: tuple[str, ...] = ()
    jwt_secret: str | None = None  # HS256
    jwt_public_key: str | None = None  # RS256, PEM text or a path to a PEM file
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    cookie_name: str = "staywire_token"
    auth_timeout: float = 10.0
    api_key: str | None = None  # for the server API (docs/api.md); None: the API refuses
    api_node_timeout: float = 2.0  # how long a cluster-wide API method waits for other nodes
    trusted_proxy_header: str | None = None  # e.g. "X-Forwarded-For" behind nginx

    # -- heartbeats
    ping_interval: float = 25.0
    pong_timeout: float = 10.0

    # -- limits
    max_message_size: int = 64 * 1024
    max_data_size: int = 60 * 1024
    binary: bool = True  # protocol v2 (binary frames) may be selected; false: v1 only
    max_transfer_size: int = 256 * 1024 * 1024  # bytes of one transfer (docs/protocol.md)
    transfer_timeout: float = 30.0  # a transfer with no chunk this long is forgotten
    transfer_window: int = 8  # unacked chunks a publisher keeps in flight (welcome.binary)
    max_send_buffer: int = 1024 * 1024
    max_connections: int = 100_000
    max_connections_per_ip: int = 1_000
    max_subscriptions: int = 100
    handshake_rate: float = 200.0  # new connections per second per client IP
    handshake_burst: float = 1000.0
    max_invalid: int = 10  # invalid messages within invalid_window before 4500
    invalid_window: float = 60.0
    rate_messages: float = 100.0  # per second
    rate_burst: float = 200.0
    rate_bytes: float = 1024 * 1024.0  # per second
    rate_bytes_burst: float = 2 * 1024 * 1024.0
    rate_max_violations: int = 100  # rejected messages within rate_violation_window before 4029
    rate_violation_window: float = 10.0

    # -- streams
    broker: str = "memory"  # "memory", redis://host:port/db, redis+sentinel://, redis+cluster://
    redis_wait_replicas: int = 0  # > 0: ack a publish once WAIT saw it on that many replicas
    redis_wait_timeout: float = 0.5  # seconds WAIT may take before the publish is unavailable
    history_size: int = 100
    history_ttl: float = 300.0
    history_max_bytes: int | None = None  # data bytes kept per channel; None: unbounded
    dedupe_window: float = 120.0
    session_ttl: float = 300.0

    # -- channels: options by channel pattern (channel_options.py, docs/configuration.md)
    channels: ChannelRules = ChannelRules()

    # -- presence (on the channels whose options turn it on)
    presence_max_members: int = 1000  # default of the per-channel option
    presence_grace: float = 5.0  # a client gone this long is a leave; back sooner: nothing
    presence_ttl: float = 15.0  # a node's members expire this long after its last refresh

    # -- lifecycle
    drain_window: float = 10.0
    shutdown_timeout: float = 30.0
    close_timeout: float = 2.0  # wait for the peer's close frame before dropping TCP
    gc_policy: str = "tuned"  # "tuned": freeze start-up, rarer collections; "python": as is

    # -- proxies: the application's backend decides (docs/proxy.md); all off by default
    connect_proxy_url: str | None = None
    refresh_proxy_url: str | None = None
    subscribe_proxy_url: tuple[str, ...] = ()  # entries "URL" or "PATTERN URL"
    publish_proxy_url: tuple[str, ...] = ()
    rpc_proxy_url: tuple[str, ...] = ()  # patterns match method names
    proxy_timeout: float = 1.0  # the whole call, retries included
    proxy_max_concurrency: int = 64  # calls in flight per node; one more fails at once
    proxy_retries: int = 2  # connect, refresh, subscribe only: never publish or rpc
    proxy_forward_headers: tuple[str, ...] = ("Cookie", "Authorization")
    proxy_max_response_size: int = 64 * 1024
    proxy_breaker_failures: int = 5  # failures in a row that open the circuit
    proxy_breaker_reset: float = 5.0  # seconds open before one probe call
    proxy_subscribe_batch: int = 0  # subscribes per call at most; 0: one call each

    # -- extras
    demo: bool = False
    echo_path: str | None = None  # a raw echo endpoint for protocol conformance runs
    log_level: str = "info"

    def __post_init__(self) -> None:
        problems = []
        if self.ping_interval <= 0 or self.pong_timeout <= 0:
            problems.append("ping_interval and pong_timeout must be > 0")
        if self.max_message_size < 128:
            problems.append("max_message_size must be >= 128")
        if self.max_data_size > self.max_message_size:
            object.__setattr__(self, "max_data_size", self.max_message_size)
        if self.max_send_buffer < self.max_message_size:
            problems.append("max_send_buffer must be >= max_message_size")
        if self.jwt_secret and self.jwt_public_key:
            problems.append("set jwt_secret (HS256) or jwt_public_key (RS256), not both")
        problems += _broker_problems(self)
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("tls_cert and tls_key go together")
        if not self.ws_path.startswith("/"):
            problems.append("ws_path must start with '/'")
        problems += _proxy_problems(self)
        if self.history_size < 0 or self.history_ttl <= 0:
            problems.append("history_size must be >= 0 and history_ttl > 0")
        if self.history_max_bytes is not None and self.history_max_bytes < 1:
            problems.append("history_max_bytes must be >= 1 (or unset)")
        if not 1 <= self.transfer_window <= 256:
            problems.append("transfer_window must be in 1..256")
        if self.presence_max_members < 1:
            problems.append("presence_max_members must be >= 1")
        if self.max_transfer_size < 1 or self.transfer_timeout <= 0:
            problems.append("max_transfer_size must be >= 1 and transfer_timeout > 0")
        if self.presence_grace < 0 or self.presence_ttl < 1:
            problems.append("presence_grace must be >= 0 and presence_ttl >= 1")
        if self.gc_policy not in ("tuned", "python"):
            problems.append(f"gc_policy must be 'tuned' or 'python', got {self.gc_policy!r}")
        if problems:
            raise ConfigError("; ".join(problems))
        defaults = ChannelOptions(**{name: getattr(self, name) for name in INHERITED})
        if self.channels.defaults != defaults:
            object.__setattr__(self, "channels", self.channels.bind(defaults))

    def channel(self, name: str) -> ChannelOptions:
        """The options of channel ``name``: its most specific pattern's, else the defaults."""
        return self.channels.for_channel(name)

    @property
    def effective_api_port(self) -> int | None:
        if self.api_port == 0:
            return None
        return self.api_port if self.api_port is not None else self.port + 1000

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _broker_problems(cfg: Config) -> list[str]:
    problems = []
    if cfg.broker.startswith(SENTINEL_SCHEME):
        try:
            parse_sentinel_url(cfg.broker)
        except ValueError as exc:  # never echoes the URL: it may hold a password
            problems.append(f"broker: {exc}")
    elif cfg.broker.startswith(CLUSTER_SCHEME):
        try:
            parse_cluster_url(cfg.broker)
        except ValueError as exc:
            problems.append(f"broker: {exc}")
    elif not (cfg.broker == "memory" or is_redis_url(cfg.broker)):
        problems.append("broker must be 'memory', a redis://, redis+sentinel:// or "
                        "redis+cluster:// URL, "
                        f"got {cfg.broker!r}")
    if cfg.redis_wait_replicas < 0 or cfg.redis_wait_timeout <= 0:
        problems.append("redis_wait_replicas must be >= 0 and redis_wait_timeout > 0")
    elif cfg.redis_wait_replicas and cfg.broker == "memory":
        problems.append("redis_wait_replicas waits for Redis replicas: it needs a Redis broker")
    return problems


def _proxy_problems(cfg: Config) -> list[str]:
    problems = []
    for name in ("connect_proxy_url", "refresh_proxy_url"):
        url = getattr(cfg, name)
        if url is not None:
            try:
                check_url(url)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    for name in ("subscribe_proxy_url", "publish_proxy_url", "rpc_proxy_url"):
        try:
            Routes(getattr(cfg, name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if cfg.refresh_proxy_url and not cfg.connect_proxy_url:
        problems.append("refresh_proxy_url refreshes what connect_proxy_url granted: set both")
    if cfg.proxy_timeout <= 0:
        problems.append("proxy_timeout must be > 0")
    if cfg.api_node_timeout <= 0:
        problems.append("api_node_timeout must be > 0")
    if cfg.proxy_max_concurrency < 1:
        problems.append("proxy_max_concurrency must be >= 1")
    if cfg.proxy_retries < 0:
        problems.append("proxy_retries must be >= 0")
    if cfg.proxy_max_response_size < 1024:
        problems.append("proxy_max_response_size must be >= 1024")
    if not 0 <= cfg.proxy_subscribe_batch <= 1000:
        problems.append("proxy_subscribe_batch must be 0 (off) to 1000")
    if cfg.proxy_breaker_failures < 1 or cfg.proxy_breaker_reset <= 0:
        problems.append("proxy_breaker_failures must be >= 1 and proxy_breaker_reset > 0")
    for header in cfg.proxy_forward_headers:
        if not _HEADER_NAME.fullmatch(header):
            problems.append(f"proxy_forward_headers: {header!r} is not a header name")
    return problems


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # RFC 9110 5.1 token

_FIELDS = {f.name: f for f in fields(Config) if not f.name.startswith("_")}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML, environment or flag value into the option's type, or say why not."""
    kind = str(_FIELDS[name].type)
    if kind == "ChannelRules":
        if isinstance(value, ChannelRules):
            return value
        raise ConfigError("option channels: set it as [channels.\"PATTERN\"] tables in the "
                          "config file")
    try:
        if kind.startswith("tuple"):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if value is None:
            return None
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {name}: cannot use {value!r} as {kind}") from None


def _from_mapping(data: Mapping[str, Any], source: str, text: str | None = None
                  ) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            line = _line_of(text, key) if text is not None else None
            raise ConfigError(f"{source}{f':{line}' if line else ''}: unknown option {key!r}")
        if name == "channels" and text is not None:
            value = parse_channel_rules(value, source, text)
        out[name] = _coerce(name, value)
    return out


def _line_of(text: str, key: str) -> int | None:
    """The first line that sets ``key`` (tomllib reports no lines of its own)."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def load_config(
    *,
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the TOML file, then ``STAYWIRE_*`` variables, then ``overrides``."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
            data = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        values.update(_from_mapping(data.get("staywire", data), path, text))
    env = os.environ if env is None else env
    prefixed = {
        k[len("STAYWIRE_") :].lower(): v for k, v in env.items() if k.startswith("STAYWIRE_")
    }
    values.update(_from_mapping(prefixed, "environment"))
    if overrides:
        values.update(_from_mapping({k: v for k, v in overrides.items() if v is not None}, "flags"))
    return Config(**values)
