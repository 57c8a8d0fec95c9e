"""Configuration: `config.toml` read with tomllib into frozen dataclasses.

Defaults live in the classes, so the server runs with no file at all ("embedded defaults").
Unknown keys are an error naming the key, because a misspelt setting that is silently ignored
is how a deployment ends up running with a default nobody chose. Environment variables
`COMMANDCENTER_<SECTION>_<KEY>` override the file (e.g. `COMMANDCENTER_SERVER_PORT=9000`).
Nothing here is read by the pure cores: they receive the values they need.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from identity import Court
from media.settings import MediaConfig
from sessions.settings import EvidenceConfig, RecorderConfig
from signalling.settings import CallsConfig, LimitsConfig, PresenceConfig, RedisConfig

ENV_PREFIX = "COMMANDCENTER_"
MIN_SECRET_BYTES = 32
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_RECORDER_BACKENDS = ("sqlite", "postgres", "memory")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Empty: derived from the host name and process id at start.
    node_id: str = ""
    data_dir: str = "./var"


@dataclass(frozen=True)
class AuthConfig:
    # HS256 shared secret. Empty: a random secret is generated once and kept in
    # <data_dir>/jwt_secret (mode 0600), which `commandcenter token` reads too.
    jwt_secret: str = ""
    # Accepted algorithms: any of HS256, RS256, ES256.
    algorithms: tuple[str, ...] = ("HS256",)
    # PEM public key file for RS256/ES256 tokens; empty disables them.
    public_key_file: str = ""
    # Clock skew tolerated on exp/nbf, seconds.
    leeway_s: float = 5.0
    # Longest token lifetime `commandcenter token` will issue, seconds.
    max_ttl_s: int = 86400


# A court of the hierarchy, as config.toml lists them (`[[courts]]`).
CourtConfig = Court


def _default_courts() -> tuple[CourtConfig, ...]:
    return (
        CourtConfig("P", "Provincial High Court"),
        CourtConfig("P01", "First Intermediate Court", "P"),
        CourtConfig("P02", "Second Intermediate Court", "P"),
        CourtConfig("P0101", "First Basic Court of P01", "P01"),
        CourtConfig("P0102", "Second Basic Court of P01", "P01"),
        CourtConfig("P0201", "First Basic Court of P02", "P02"),
    )


@dataclass(frozen=True)
class LoggingConfig:
    # "json" for production, "console" for a terminal.
    format: str = "json"
    # debug, info, warning, error or critical (any case).
    level: str = "info"


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    courts: tuple[CourtConfig, ...] = field(default_factory=_default_courts)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    media: MediaConfig = field(default_factory=MediaConfig)

    def __post_init__(self) -> None:
        _validate(self)


def _validate(cfg: Config) -> None:
    if not 0 < cfg.server.port < 65536 and cfg.server.port != 0:
        raise ConfigError(f"server.port: {cfg.server.port} is not a TCP port")
    bad_algs = set(cfg.auth.algorithms) - {"HS256", "RS256", "ES256"}
    if bad_algs:
        raise ConfigError(f"auth.algorithms: unsupported {sorted(bad_algs)}")
    if not cfg.auth.algorithms:
        raise ConfigError("auth.algorithms: at least one algorithm is required")
    if cfg.logging.format not in ("json", "console"):
        raise ConfigError(f"logging.format: {cfg.logging.format!r} is not json or console")
    if cfg.logging.level.lower() not in _LOG_LEVELS:
        raise ConfigError(
            f"logging.level: {cfg.logging.level!r} is not one of {', '.join(_LOG_LEVELS)}"
        )
    # Shorter HMAC keys are brute-forceable and PyJWT warns on every decode (RFC 7518 3.2).
    if cfg.auth.jwt_secret and len(cfg.auth.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"auth.jwt_secret: must be at least {MIN_SECRET_BYTES} bytes (empty: generate one)"
        )
    if cfg.auth.leeway_s < 0:
        raise ConfigError("auth.leeway_s: must not be negative")
    if cfg.auth.max_ttl_s <= 0:
        raise ConfigError(f"auth.max_ttl_s: must be positive, got {cfg.auth.max_ttl_s}")
    _validate_courts(cfg.courts)
    positive = {
        "limits.max_frame_bytes": cfg.limits.max_frame_bytes,
        "limits.messages_per_s": cfg.limits.messages_per_s,
        "limits.message_burst": cfg.limits.message_burst,
        "limits.bad_frames_before_close": cfg.limits.bad_frames_before_close,
        "presence.heartbeat_interval_s": cfg.presence.heartbeat_interval_s,
        "calls.ring_timeout_s": cfg.calls.ring_timeout_s,
        "calls.queue_timeout_s": cfg.calls.queue_timeout_s,
        "calls.max_queue": cfg.calls.max_queue,
        "evidence.max_upload_bytes": cfg.evidence.max_upload_bytes,
        "evidence.clock_offset_threshold_ms": cfg.evidence.clock_offset_threshold_ms,
        "media.keyframe_interval_s": cfg.media.keyframe_interval_s,
        "media.max_subscriber_backlog_bytes": cfg.media.max_subscriber_backlog_bytes,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if cfg.presence.grace_s < 0:
        raise ConfigError("presence.grace_s: must not be negative")
    _validate_recorder(cfg.recorder)
    _validate_media(cfg.media)
    _validate_redis(cfg.redis)
    if cfg.redis.url and cfg.recorder.backend == "sqlite":
        # Each node would keep a trace of its own, and the authority moves between nodes:
        # no one file would hold the whole story.
        raise ConfigError(
            "recorder.backend: several nodes (redis.url set) need one shared trace; "
            "use postgres (or memory, for a demo)"
        )


def _validate_redis(redis: RedisConfig) -> None:
    if redis.url and not redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis.url: must start with redis://, rediss:// or unix://")
    for key in ("heartbeat_s", "node_timeout_s", "lease_ttl_s"):
        if getattr(redis, key) <= 0:
            raise ConfigError(f"redis.{key}: must be positive, got {getattr(redis, key)}")
    if redis.node_timeout_s <= redis.heartbeat_s:
        raise ConfigError("redis.node_timeout_s: must be longer than redis.heartbeat_s")


def _validate_media(media: MediaConfig) -> None:
    low, high = media.udp_port_min, media.udp_port_max
    if (low, high) != (0, 0) and not 1024 <= low <= high <= 65535:
        raise ConfigError(
            "media.udp_port_min/udp_port_max: need 1024 <= min <= max <= 65535 (or both 0)"
        )
    for address in media.ice_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"media.ice_addresses: {address!r} is not an IP address") from None
    for key, urls, schemes in (
        ("media.stun_urls", media.stun_urls, ("stun:",)),
        ("media.turn_urls", media.turn_urls, ("turn:", "turns:")),
    ):
        for url in urls:
            if not url.startswith(schemes):
                raise ConfigError(f"{key}: {url!r} does not start with {' or '.join(schemes)}")


def _validate_recorder(rec: RecorderConfig) -> None:
    if rec.backend not in _RECORDER_BACKENDS:
        choices = ", ".join(_RECORDER_BACKENDS)
        raise ConfigError(f"recorder.backend: {rec.backend!r} is not one of {choices}")
    if rec.backend == "postgres" and not rec.postgres_dsn:
        raise ConfigError("recorder.postgres_dsn: required when recorder.backend is postgres")
    # Interpolated into SQL as an identifier, so nothing but one.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", rec.postgres_schema):
        raise ConfigError(f"recorder.postgres_schema: {rec.postgres_schema!r} is not an identifier")
    if rec.max_batch <= 0:
        raise ConfigError(f"recorder.max_batch: must be positive, got {rec.max_batch}")
    if rec.time_zone != "UTC":
        try:
            zoneinfo.ZoneInfo(rec.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"recorder.time_zone: {rec.time_zone!r} is not a known time zone"
            ) from None


def _validate_courts(courts: tuple[CourtConfig, ...]) -> None:
    if not courts:
        raise ConfigError("courts: at least one court is required")
    parents: dict[str, str] = {}
    for c in courts:
        if not c.code:
            raise ConfigError("courts: a court has an empty code")
        if c.code in parents:
            raise ConfigError(f"courts.{c.code}: duplicate court code")
        parents[c.code] = c.parent
    roots = [code for code, parent in parents.items() if not parent]
    if len(roots) != 1:
        raise ConfigError("courts: exactly one court must have no parent (the province)")
    for code, parent in parents.items():
        if parent and parent not in parents:
            raise ConfigError(f"courts.{code}.parent: unknown court {parent!r}")
    # One root and known parents still admit a loop off to the side (A -> B -> A), which
    # would make every walk up the hierarchy spin forever.
    for code in parents:
        seen = {code}
        up = parents[code]
        while up:
            if up in seen:
                raise ConfigError(f"courts.{code}.parent: the hierarchy has a cycle")
            seen.add(up)
            up = parents[up]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check one TOML value against the field's declared type (an int widens to a float).

    Strict on purpose: `port = "8080"` in a file is a mistake worth reporting. Environment
    strings are converted by `_parse_env` before they get here.
    """
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if item_tp is CourtConfig:
            return tuple(_build(CourtConfig, v, f"{key}[{i}]") for i, v in enumerate(value))
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported setting type {tp!r}")  # pragma: no cover


def _parse_env(value: str, tp: Any, key: str) -> Any:
    """Turn an environment string into the value TOML would have given for this field."""
    if tp is bool:
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if typing.get_origin(tp) is tuple:
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _build(cls: type[Any], data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"{full}: unknown setting")
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        # A required field (e.g. a court's code) is missing.
        raise ConfigError(f"{prefix}: {exc}") from None


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        tp = hints.get(section)
        if tp is None or not (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            raise ConfigError(f"{name}: no such setting")
        if key not in {f.name for f in dataclasses.fields(tp)}:
            raise ConfigError(f"{name}: no such setting ({section}.{key})")
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a table, got {table!r}")
        table[key] = _parse_env(value, typing.get_type_hints(tp)[key], f"{section}.{key}")
    return data


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (None: embedded defaults only) and apply environment overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    data = _apply_env(data, os.environ if environ is None else environ)
    return typing.cast(Config, _build(Config, data, ""))


# Used by tests to build a config with a few settings changed.
def replace_section(cfg: Config, section: str, **changes: Any) -> Config:
    return dataclasses.replace(
        cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)}
    )


__all__ = [
    "MIN_SECRET_BYTES",
    "AuthConfig",
    "CallsConfig",
    "Config",
    "ConfigError",
    "CourtConfig",
    "EvidenceConfig",
    "LimitsConfig",
    "LoggingConfig",
    "PresenceConfig",
    "RecorderConfig",
    "RedisConfig",
    "ServerConfig",
    "load_config",
    "replace_section",
]
