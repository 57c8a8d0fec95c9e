"""Configuration: `config.toml` read with tomllib and decoded by `msgspec.convert` into frozen
Structs, each section's class in the package that uses it.

Defaults live in the classes, so the server runs with no file at all ("embedded defaults").
Unknown keys are an error naming the key, because a misspelt setting that is silently ignored
is how a deployment ends up running with a default nobody chose; hence Structs with
`forbid_unknown_fields`, since msgspec ignores unknown keys for a dataclass. The file is
decoded strictly: `port = "8080"` is an error naming the key, the value and the type expected
(`config_errors`), though an integer widens to a float. Environment variables
`COMMANDCENTER_<SECTION>_<KEY>` override the file (e.g. `COMMANDCENTER_SERVER_PORT=9000`);
msgspec's lax mode converts their text to each setting's type. The checks across settings
(`_validate`) run whenever a Config is built, loaded or replaced.
Nothing here is read by the pure cores: they receive the values they need.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from commandcenter.config_errors import ConfigError, config_error
from commandcenter.origins import allowed_origins
from commandcenter.proxies import networks as proxy_networks
from identity import Court
from identity.case_numbers import BadCaseNumber, parse_court_code
from media.settings import MediaConfig, layer_policy, worker_count
from sessions.settings import AuditConfig, EvidenceConfig, FeedConfig, RecorderConfig
from signalling.settings import (
    CallsConfig,
    ConferencesConfig,
    EmergencyConfig,
    InstructionsConfig,
    LimitsConfig,
    PresenceConfig,
    RedisConfig,
    WallConfig,
)

ENV_PREFIX = "COMMANDCENTER_"
MIN_SECRET_BYTES = 32
# A scrape token shorter than this could be guessed by trying.
MIN_METRICS_TOKEN_BYTES = 16
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_RECORDER_BACKENDS = ("sqlite", "postgres", "memory")


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    # Empty: derived from the host name and process id at start.
    node_id: str = ""
    data_dir: str = "./var"
    # Origins (scheme://host[:port]) of pages, besides this server's own, that may open the
    # WebSocket; a browser page of any other origin is refused 403. Clients that send no
    # Origin (the field app, devices) are not browsers and are not affected.
    allowed_origins: tuple[str, ...] = ()
    # A connection that has not sent a whole request within this many seconds (or is idle
    # that long between requests) is closed: silent connections must not hold descriptors.
    header_timeout_s: float = 5.0
    # Most client connections open at once; 0: as many as the open-file limit allows once
    # fd_reserve descriptors are kept back. Never more than that in any case.
    max_connections: int = 0
    # Most connections open at once from one client address; 0: no such cap (load tests,
    # or every client behind one NAT address).
    max_connections_per_address: int = 1000
    # File descriptors kept free for everything that is not a client connection: the trace,
    # evidence files, media sockets, Redis and database connections.
    fd_reserve: int = 256
    # On SIGTERM, requests in progress (an evidence upload) get this long to finish, seconds.
    drain_timeout_s: float = 30.0
    # HTTPS (commandcenter/tls.py): a certificate chain and its key (PEM), both or neither.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Development: with no certificate configured, make a self-signed one on first start
    # (<data_dir>/tls/), so that a phone on the same network can try the pages.
    tls_self_signed: bool = False
    # Reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are
    # believed; from anyone else those headers are ignored (commandcenter/proxies.py).
    trusted_proxies: tuple[str, ...] = ()


class AuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
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
        CourtConfig("P", "省高级人民法院", case_code="粤"),
        CourtConfig("P01", "第一中级人民法院", "P", case_code="粤01"),
        CourtConfig("P02", "第二中级人民法院", "P", case_code="粤02"),
        CourtConfig("P0101", "一中院辖区第一基层人民法院", "P01", case_code="粤0101"),
        CourtConfig("P0102", "一中院辖区第二基层人民法院", "P01", case_code="粤0102"),
        CourtConfig("P0201", "二中院辖区第一基层人民法院", "P02", case_code="粤0201"),
    )


class AccountsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Consecutive failed sign-ins of one account that lock it, and for how long.
    lockout_failures: int = 5
    lockout_s: float = 900.0
    # Sign-in attempts one address may make per minute (any accounts), before 429.
    attempts_per_minute: int = 30
    # How long a browser's sign-in lasts (one shift), and the WebSocket tokens it hands out.
    session_ttl_s: float = 43200.0
    token_ttl_s: float = 3600.0
    # The name an authenticator app shows next to the code.
    totp_issuer: str = "commandcenter"
    # How often each node reads which accounts are disabled: their tokens are refused and
    # their open WebSockets closed within this time on every node (at once on the node
    # where the admin disabled them).
    revocation_poll_s: float = 5.0


class OidcConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # The province's OpenID Connect provider (its issuer URL); empty: no single sign-on.
    issuer: str = ""
    # This server as the provider's client.
    client_id: str = ""
    client_secret: str = ""
    scopes: str = "openid profile"
    # The ID token claim that holds our user id (an account must exist with that id).
    user_claim: str = "preferred_username"
    # Where the provider sends the browser back; empty: this server's own
    # /api/session/oidc/callback, as the browser reached it.
    redirect_url: str = ""
    # How long to wait for the provider, seconds.
    timeout_s: float = 10.0


class LoggingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # "json" for production, "console" for a terminal.
    format: str = "json"
    # debug, info, warning, error or critical (any case).
    level: str = "info"


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # The bearer token a Prometheus scrape of GET /metrics presents. Empty: /metrics is
    # not served (404). A secret: never logged.
    token: str = ""


class ConsoleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # The map's tile server, a Leaflet URL template with {z}, {x} and {y} ({s} too if it has
    # subdomains), e.g. "https://tiles.court.example/{z}/{x}/{y}.png". Its origin is added to
    # the pages' img-src. Empty: no tiles; the console draws its offline map (a grid, the
    # courts and the officers) instead.
    tile_url: str = ""
    # The attribution the tile server's licence asks to be shown under the map.
    tile_attribution: str = ""
    # A waiting call's time turns amber, then red, after this many seconds.
    queue_amber_s: float = 30.0
    queue_red_s: float = 90.0
    # Where courts sit on the map, each "CODE LAT LON" (e.g. "P0101 32.0603 118.7969"): a
    # marker per court, and the offline map's frame. Courts left out have no marker.
    court_positions: tuple[str, ...] = ()
    # The video wall: most feeds one console watches at once (its largest layout), how
    # often a tile moves on to the next online officer of the court, seconds, and most
    # watches one console starts in any minute.
    wall_max_feeds: int = 16
    wall_rotate_s: float = 20.0
    wall_starts_per_min: int = 120
    # The map and the roster: a position whose device time is older than this many seconds
    # is shown as stale (旧位, a grey marker and age; a bubble counts its stale officers).
    position_stale_s: float = 300.0

    def court_places(self) -> dict[str, tuple[float, float]]:
        """court_positions as {code: (lat, lon)}; ValueError naming a malformed entry."""
        places: dict[str, tuple[float, float]] = {}
        for entry in self.court_positions:
            parts = entry.split()
            try:
                code, lat, lon = parts[0], float(parts[1]), float(parts[2])
            except (IndexError, ValueError):
                raise ValueError(f"{entry!r} is not 'CODE LAT LON'") from None
            if len(parts) != 3 or not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"{entry!r} is not 'CODE LAT LON'")
            places[code] = (lat, lon)
        return places


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    courts: tuple[CourtConfig, ...] = msgspec.field(default_factory=_default_courts)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    presence: PresenceConfig = msgspec.field(default_factory=PresenceConfig)
    calls: CallsConfig = msgspec.field(default_factory=CallsConfig)
    conferences: ConferencesConfig = msgspec.field(default_factory=ConferencesConfig)
    emergency: EmergencyConfig = msgspec.field(default_factory=EmergencyConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    evidence: EvidenceConfig = msgspec.field(default_factory=EvidenceConfig)
    recorder: RecorderConfig = msgspec.field(default_factory=RecorderConfig)
    media: MediaConfig = msgspec.field(default_factory=MediaConfig)
    accounts: AccountsConfig = msgspec.field(default_factory=AccountsConfig)
    oidc: OidcConfig = msgspec.field(default_factory=OidcConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    feed: FeedConfig = msgspec.field(default_factory=FeedConfig)
    audit: AuditConfig = msgspec.field(default_factory=AuditConfig)
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)
    instructions: InstructionsConfig = msgspec.field(default_factory=InstructionsConfig)
    wall: WallConfig = msgspec.field(default_factory=WallConfig)

    def __post_init__(self) -> None:
        _validate(self)


# The bounds stay here rather than as msgspec.Meta(gt=0) annotations: msgspec checks those only
# when decoding, and configs are also built in code (`--port`, replace_section, tests), which
# __post_init__ covers. One place checks both, with messages naming the key.
MIN_BACKLOG_BYTES = 65536
# The wire's own ceiling on an instruction's text (signalling.protocol.InstructionText).
MAX_INSTRUCTION_CHARS = 2000


def _validate(cfg: Config) -> None:
    _validate_finite(cfg, "")
    if not 0 < cfg.server.port < 65536 and cfg.server.port != 0:
        raise ConfigError(f"server.port: {cfg.server.port} is not a TCP port")
    try:
        allowed_origins(cfg.server.allowed_origins)
    except ValueError as exc:
        raise ConfigError(f"server.allowed_origins: {exc}") from None
    if bool(cfg.server.tls_cert_file) != bool(cfg.server.tls_key_file):
        raise ConfigError("server.tls_cert_file and server.tls_key_file: set both, or neither")
    try:
        proxy_networks(cfg.server.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"server.trusted_proxies: {exc}") from None
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
    if cfg.metrics.token and len(cfg.metrics.token.encode()) < MIN_METRICS_TOKEN_BYTES:
        raise ConfigError(
            f"metrics.token: must be at least {MIN_METRICS_TOKEN_BYTES} bytes (empty: no /metrics)"
        )
    if cfg.auth.leeway_s < 0:
        raise ConfigError("auth.leeway_s: must not be negative")
    if cfg.auth.max_ttl_s <= 0:
        raise ConfigError(f"auth.max_ttl_s: must be positive, got {cfg.auth.max_ttl_s}")
    _validate_courts(cfg.courts)
    if cfg.limits.max_backlog_bytes < MIN_BACKLOG_BYTES:
        # Below this one roster or conference state could close the client it is sent to.
        raise ConfigError(
            f"limits.max_backlog_bytes: at least {MIN_BACKLOG_BYTES}, "
            f"got {cfg.limits.max_backlog_bytes}"
        )
    positive = {
        "limits.max_frame_bytes": cfg.limits.max_frame_bytes,
        "limits.messages_per_s": cfg.limits.messages_per_s,
        "limits.message_burst": cfg.limits.message_burst,
        "limits.bad_frames_before_close": cfg.limits.bad_frames_before_close,
        "presence.heartbeat_interval_s": cfg.presence.heartbeat_interval_s,
        "calls.ring_timeout_s": cfg.calls.ring_timeout_s,
        "calls.queue_timeout_s": cfg.calls.queue_timeout_s,
        "calls.max_queue": cfg.calls.max_queue,
        "calls.transfer_timeout_s": cfg.calls.transfer_timeout_s,
        "calls.send_back_hold_s": cfg.calls.send_back_hold_s,
        "emergency.repeat_after_s": cfg.emergency.repeat_after_s,
        "emergency.escalate_after_s": cfg.emergency.escalate_after_s,
        "evidence.upload_min_bytes_per_s": cfg.evidence.upload_min_bytes_per_s,
        "evidence.upload_max_s": cfg.evidence.upload_max_s,
        "conferences.max_sites": cfg.conferences.max_sites,
        "conferences.max_open": cfg.conferences.max_open,
        "conferences.max_schedule_ahead_s": cfg.conferences.max_schedule_ahead_s,
        "conferences.ring_s": cfg.conferences.ring_s,
        "conferences.chairless_grace_s": cfg.conferences.chairless_grace_s,
        "conferences.max_queue": cfg.conferences.max_queue,
        "evidence.max_upload_bytes": cfg.evidence.max_upload_bytes,
        "evidence.clock_offset_threshold_ms": cfg.evidence.clock_offset_threshold_ms,
        "media.keyframe_interval_s": cfg.media.keyframe_interval_s,
        "media.max_subscriber_backlog_bytes": cfg.media.max_subscriber_backlog_bytes,
        "accounts.lockout_failures": cfg.accounts.lockout_failures,
        "accounts.lockout_s": cfg.accounts.lockout_s,
        "accounts.attempts_per_minute": cfg.accounts.attempts_per_minute,
        "accounts.session_ttl_s": cfg.accounts.session_ttl_s,
        "accounts.token_ttl_s": cfg.accounts.token_ttl_s,
        "accounts.revocation_poll_s": cfg.accounts.revocation_poll_s,
    }
    positive.update(
        {
            "instructions.ttl_s": cfg.instructions.ttl_s,
            "instructions.max_chars": cfg.instructions.max_chars,
            "instructions.max_pending": cfg.instructions.max_pending,
        }
    )
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    _validate_wall(cfg.wall)
    if cfg.instructions.max_chars > MAX_INSTRUCTION_CHARS:
        raise ConfigError(f"instructions.max_chars: at most {MAX_INSTRUCTION_CHARS}")
    if cfg.conferences.revoke_grace_s < 0:
        raise ConfigError("conferences.revoke_grace_s: must not be negative")
    if cfg.conferences.moderator_delta_s < 0:
        raise ConfigError("conferences.moderator_delta_s: must not be negative")
    if cfg.conferences.joins_per_s <= 0:
        raise ConfigError(
            f"conferences.joins_per_s: must be positive, got {cfg.conferences.joins_per_s}"
        )
    if not 1 <= cfg.conferences.max_invitations <= 10_000:
        raise ConfigError(
            "conferences.max_invitations: must be 1 to 10000, "
            f"got {cfg.conferences.max_invitations}"
        )
    if cfg.presence.grace_s < 0:
        raise ConfigError("presence.grace_s: must not be negative")
    if not 0 < cfg.server.header_timeout_s <= 3600:
        raise ConfigError("server.header_timeout_s: must be above 0 and at most 3600")
    if not 0 < cfg.server.drain_timeout_s <= 3600:
        raise ConfigError("server.drain_timeout_s: must be above 0 and at most 3600")
    for key in ("max_connections", "max_connections_per_address", "fd_reserve"):
        if getattr(cfg.server, key) < 0:
            raise ConfigError(f"server.{key}: must be 0 or more, got {getattr(cfg.server, key)}")
    if cfg.evidence.upload_grace_s < 0:
        raise ConfigError("evidence.upload_grace_s: must not be negative")
    _validate_oidc(cfg.oidc)
    if not 0 < cfg.accounts.revocation_poll_s <= 3600:
        raise ConfigError("accounts.revocation_poll_s: must be above 0 and at most 3600")
    if cfg.accounts.token_ttl_s > cfg.auth.max_ttl_s:
        raise ConfigError("accounts.token_ttl_s: must not exceed auth.max_ttl_s")
    if not 1 <= len(cfg.accounts.totp_issuer) <= 64 or ":" in cfg.accounts.totp_issuer:
        raise ConfigError("accounts.totp_issuer: 1 to 64 characters, no colon")
    _validate_recorder(cfg.recorder)
    _validate_feed(cfg.feed)
    _validate_audit(cfg.audit, cfg.server.data_dir)
    _validate_console(cfg.console, {c.code for c in cfg.courts})
    _validate_media(cfg.media)
    _validate_redis(cfg.redis)
    if cfg.redis.url and cfg.recorder.backend == "sqlite":
        # Each node would keep a trace of its own, and the authority moves between nodes:
        # no one file would hold the whole story.
        raise ConfigError(
            "recorder.backend: several nodes (redis.url set) need one shared trace; "
            "use postgres (or memory, for a demo)"
        )


def _validate_oidc(oidc: OidcConfig) -> None:
    if not oidc.issuer:
        return
    parsed = urllib.parse.urlsplit(oidc.issuer)
    loopback = parsed.hostname in ("localhost", "127.0.0.1", "::1")
    # Over plain HTTP anyone on the way could forge who signed in; loopback is for tests.
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
        raise ConfigError("oidc.issuer: must be an https:// URL")
    if not oidc.client_id or not oidc.client_secret:
        raise ConfigError("oidc.client_id and oidc.client_secret: required with oidc.issuer")
    if "openid" not in oidc.scopes.split():
        raise ConfigError("oidc.scopes: must include openid")
    if not 0 < oidc.timeout_s <= 120:
        raise ConfigError("oidc.timeout_s: must be above 0 and at most 120")


def _validate_finite(section: msgspec.Struct, prefix: str) -> None:
    """No setting is NaN or infinite: every bound below compares false with NaN, so `nan`
    would pass "must be positive" and then stall or spin a timer."""
    for f in msgspec.structs.fields(section):
        value = getattr(section, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if isinstance(value, msgspec.Struct) and not isinstance(value, CourtConfig):
            _validate_finite(value, key)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value}")


def _validate_feed(feed: FeedConfig) -> None:
    for key in ("poll_s", "heartbeat_s", "send_timeout_s"):
        if not 0 < getattr(feed, key) <= 3600:
            raise ConfigError(f"feed.{key}: must be above 0 and at most 3600")
    if not 1 <= feed.page <= 10000:
        raise ConfigError(f"feed.page: must be 1 to 10000, got {feed.page}")
    for key in ("max_per_user", "max_connections"):
        if getattr(feed, key) < 1:
            raise ConfigError(f"feed.{key}: must be positive, got {getattr(feed, key)}")


# A wall cap's bounds: (least, most) lines, frames a second, kbit/s.
WALL_CAP_BOUNDS = ((90, 2160), (1, 60), (50, 20000))
WALL_CAP_NAMES = ("height", "fps", "kbit/s")


def _validate_wall(wall: WallConfig) -> None:
    for tiles, cap in wall.caps().items():
        for value, (low, high), what in zip(cap, WALL_CAP_BOUNDS, WALL_CAP_NAMES, strict=True):
            if not low <= value <= high:
                raise ConfigError(
                    f"wall.tiles_{tiles}: {what} must be {low} to {high}, got {value}"
                )


def _validate_console(console: ConsoleConfig, courts: set[str]) -> None:
    if console.tile_url and (
        tile_origin(console.tile_url) is None
        or not all(part in console.tile_url for part in ("{z}", "{x}", "{y}"))
    ):
        raise ConfigError(
            "console.tile_url: an http(s) URL template with {z}, {x} and {y} (or empty)"
        )
    if not 0 < console.queue_amber_s < console.queue_red_s:
        raise ConfigError("console.queue_amber_s: must be positive and below queue_red_s")
    if not 1 <= console.wall_max_feeds <= 16:
        raise ConfigError(f"console.wall_max_feeds: must be 1 to 16, got {console.wall_max_feeds}")
    if not 1.0 <= console.wall_rotate_s <= 3600.0:
        raise ConfigError(f"console.wall_rotate_s: must be 1 to 3600, got {console.wall_rotate_s}")
    if not 1 <= console.wall_starts_per_min <= 10000:
        raise ConfigError(
            f"console.wall_starts_per_min: must be 1 to 10000, got {console.wall_starts_per_min}"
        )
    if not 10.0 <= console.position_stale_s <= 86400.0:
        raise ConfigError(
            f"console.position_stale_s: must be 10 to 86400, got {console.position_stale_s}"
        )
    try:
        places = console.court_places()
    except ValueError as exc:
        raise ConfigError(f"console.court_positions: {exc}") from None
    for code in places:
        if code not in courts:
            raise ConfigError(f"console.court_positions: unknown court {code!r}")


def tile_origin(tile_url: str) -> str | None:
    """The origin (scheme://host[:port]) of a tile URL template, or None if it has none."""
    found = re.fullmatch(r"(https?://[A-Za-z0-9.\-{}]+(?::[0-9]{1,5})?)/[^\s]*", tile_url)
    return found.group(1) if found else None


def _validate_redis(redis: RedisConfig) -> None:
    if redis.url and not redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis.url: must start with redis://, rediss:// or unix://")
    for key in (
        "heartbeat_s",
        "node_timeout_s",
        "lease_ttl_s",
        "reply_timeout_s",
        "journal_conference_s",
    ):
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
    if not 1 <= media.conference_audio_slots <= 8:
        raise ConfigError(
            f"media.conference_audio_slots: must be 1 to 8, got {media.conference_audio_slots}"
        )
    if not 0 <= media.conference_grid_slots <= 25:
        raise ConfigError(
            f"media.conference_grid_slots: must be 0 to 25, got {media.conference_grid_slots}"
        )
    if media.conference_video_codec.lower() not in ("video/vp8", "video/h264"):
        raise ConfigError(
            "media.conference_video_codec: must be video/VP8 or video/H264, "
            f"got {media.conference_video_codec!r}"
        )
    for key, urls, schemes in (
        ("media.stun_urls", media.stun_urls, ("stun:",)),
        ("media.turn_urls", media.turn_urls, ("turn:", "turns:")),
    ):
        for url in urls:
            if not url.startswith(schemes):
                raise ConfigError(f"{key}: {url!r} does not start with {' or '.join(schemes)}")
    if media.conference_rollin_s < 0:
        raise ConfigError(
            f"media.conference_rollin_s: must be 0 or more, got {media.conference_rollin_s}"
        )
    if media.conference_rollin_keyframe_s < 1:
        # At most one keyframe a second: more would make keyframes most of the bitrate.
        raise ConfigError(
            "media.conference_rollin_keyframe_s: must be 1 or more, "
            f"got {media.conference_rollin_keyframe_s}"
        )
    try:
        layer_policy(media)
    except ValueError:
        raise ConfigError(
            "media.temporal_down_loss/temporal_up_loss/temporal_down_reports/"
            "temporal_up_after_s/temporal_max_layer: need 0 <= up_loss < down_loss <= 1, "
            "down_reports >= 1, up_after_s >= 0 and max_layer 0 to 2"
        ) from None
    try:
        worker_count(media.workers, 1)
    except ValueError as exc:
        raise ConfigError(f"media.workers: {exc}") from None


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
    if rec.reindex_batch <= 0:
        raise ConfigError(f"recorder.reindex_batch: must be positive, got {rec.reindex_batch}")
    if not rec.reindex_pause_s >= 0:
        raise ConfigError(f"recorder.reindex_pause_s: must be 0 or more, got {rec.reindex_pause_s}")
    for key in ("postgres_timeout_s", "postgres_query_timeout_s"):
        if not getattr(rec, key) > 0:
            raise ConfigError(f"recorder.{key}: must be positive, got {getattr(rec, key)}")
    if rec.time_zone != "UTC":
        try:
            zoneinfo.ZoneInfo(rec.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"recorder.time_zone: {rec.time_zone!r} is not a known time zone"
            ) from None


# --- [audit] ---------------------------------------------------------------------------------

AUDIT_KEY_NAME = "checkpoint_ed25519.pem"


def audit_key_path(cfg: Config) -> Path:
    """The checkpoint key file: audit.checkpoint_key_file, or <data_dir>-audit/<name>."""
    if cfg.audit.checkpoint_key_file:
        return Path(cfg.audit.checkpoint_key_file)
    return _audit_default_dir(cfg.server.data_dir) / AUDIT_KEY_NAME


def _audit_default_dir(data_dir: str) -> Path:
    absolute = Path(os.path.abspath(data_dir))
    return absolute.with_name(absolute.name + "-audit")


def _inside(path: str, directory: str) -> bool:
    # Lexically, without touching the disk: configs are built and checked in tests too.
    inner, outer = os.path.abspath(path), os.path.abspath(directory)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _validate_audit(audit: AuditConfig, data_dir: str) -> None:
    # The key signs the trace's head so that whoever can rewrite the data directory cannot
    # also sign what they wrote: a key inside it would protect nothing.
    for key in ("checkpoint_key_file", "checkpoint_log"):
        value = getattr(audit, key)
        if value and _inside(value, data_dir):
            raise ConfigError(
                f"audit.{key}: {value!r} is inside server.data_dir ({data_dir!r}); "
                "keep it outside the data directory"
            )
    if not 0 < audit.checkpoint_interval_s <= 86400:
        raise ConfigError("audit.checkpoint_interval_s: must be above 0 and at most 86400")
    if not 0 < audit.tsa_timeout_s <= 300:
        raise ConfigError("audit.tsa_timeout_s: must be above 0 and at most 300")
    if audit.tsa_url and not audit.tsa_url.startswith(("http://", "https://")):
        raise ConfigError("audit.tsa_url: must start with http:// or https://")


def _validate_courts(courts: tuple[CourtConfig, ...]) -> None:
    if not courts:
        raise ConfigError("courts: at least one court is required")
    parents: dict[str, str] = {}
    case_codes: dict[str, str] = {}
    for c in courts:
        if not c.code:
            raise ConfigError("courts: a court has an empty code")
        if c.code in parents:
            raise ConfigError(f"courts.{c.code}: duplicate court code")
        parents[c.code] = c.parent
        if c.case_code:
            try:
                case_code = parse_court_code(c.case_code)
            except BadCaseNumber:
                raise ConfigError(
                    f"courts.{c.code}.case_code: {c.case_code!r} is not a court code of case "
                    "numbers (a province abbreviation and 0, 2, 4 or 6 digits, e.g. 粤0101)"
                ) from None
            if case_code in case_codes:
                raise ConfigError(
                    f"courts.{c.code}.case_code: {case_code!r} is court {case_codes[case_code]}'s"
                )
            case_codes[case_code] = c.code
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


# Booleans the environment may spell that msgspec's lax mode does not take (it takes
# true/false in any case, and 1/0).
_ENV_BOOLEANS = {"yes": True, "on": True, "no": False, "off": False}


def _env_settings() -> dict[str, dict[str, Any]]:
    """The settings the environment may set: each table section's keys and their types."""
    return {
        section.name: {f.name: f.type for f in msgspec.structs.fields(section.type)}
        for section in msgspec.structs.fields(Config)
        if isinstance(msgspec.inspect.type_info(section.type), msgspec.inspect.StructType)
    }


def _env_value(raw: str, tp: Any, key: str, name: str) -> Any:
    """An environment string as a value of the setting's type.

    msgspec's lax mode reads numbers and booleans from text, as the file's strict mode must
    not ("9000" is a port here, a mistake there); what is ours is splitting lists on commas
    and the yes/no/on/off spellings of booleans.
    """
    info = msgspec.inspect.type_info(tp)
    value: Any = raw
    if not isinstance(info, msgspec.inspect.StrType):
        value = raw.strip()
    if isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.TupleType):
        value = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(info, msgspec.inspect.BoolType):
        value = _ENV_BOOLEANS.get(value.lower(), value)
    try:
        return msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise config_error(exc, value, key, name) from None


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    settings = _env_settings()
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in settings:
            # `courts` is a list of tables: a variable per key could not say which court.
            where = " (set in the file only)" if section in Config.__struct_fields__ else ""
            raise ConfigError(f"{name}: no such setting{where}")
        if key not in settings[section]:
            raise ConfigError(f"{name}: no such setting ({section}.{key})")
        value = _env_value(raw, settings[section][key], f"{section}.{key}", name)
        table = data.setdefault(section, {})
        # A file's `server = 1` is left for the conversion to report as not a table.
        if isinstance(table, dict):
            table[key] = value
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
    # Strict: `port = "8080"` in a file is a mistake worth reporting (an integer still widens
    # to a float). Environment values arrive already converted, so strictness costs them
    # nothing. Config's __post_init__ then runs the domain checks, raising ConfigError.
    try:
        return msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise config_error(exc, data) from None


# Used by tests to build a config with a few settings changed; replace() runs
# __post_init__, so the result is validated like a loaded one.
def replace_section(cfg: Config, section: str, **changes: Any) -> Config:
    return msgspec.structs.replace(
        cfg, **{section: msgspec.structs.replace(getattr(cfg, section), **changes)}
    )


__all__ = [
    "MIN_SECRET_BYTES",
    "AccountsConfig",
    "AuditConfig",
    "AuthConfig",
    "CallsConfig",
    "ConferencesConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "CourtConfig",
    "EmergencyConfig",
    "EvidenceConfig",
    "FeedConfig",
    "InstructionsConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "OidcConfig",
    "PresenceConfig",
    "RecorderConfig",
    "RedisConfig",
    "ServerConfig",
    "audit_key_path",
    "load_config",
    "replace_section",
]
