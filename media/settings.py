"""The media relay's settings: the `[media]` section of config.toml, with its defaults
(`commandcenter.config` reads it). A frozen Struct forbidding unknown fields, as every section
is: a misspelt key is an error, not a setting silently left at its default."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from media.temporal import LayerPolicy

# The most media worker processes a server starts (a typo such as 1000 must not fork a storm).
MAX_WORKERS: Final = 64


class MediaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Off: calls are signalling only and media messages are answered `media_unavailable`.
    enabled: bool = True
    # IP addresses offered as host ICE candidates. Empty: every address of the machine's
    # interfaces except loopback (aioice's scan). Set it to pin media to one interface, or to
    # 127.0.0.1 for tests on loopback.
    ice_addresses: tuple[str, ...] = ()
    # UDP ports the host candidates bind, inclusive; both 0: any ephemeral port.
    udp_port_min: int = 0
    udp_port_max: int = 0
    # STUN / TURN servers for deployments behind NAT, as "stun:host:port" / "turn:host:port".
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_username: str = ""
    turn_password: str = ""
    # Each answered call is recorded (Matroska, no transcoding) and registered as evidence.
    record: bool = True
    # Directory of recordings being written. Empty: <data_dir>/recordings.
    recordings_dir: str = ""
    # Fewest seconds between two keyframe requests sent to one publisher; a request held back
    # by this limit is sent when it expires, not dropped.
    keyframe_interval_s: float = 0.5
    # Bytes waiting in one subscriber's socket buffer beyond which its packets are dropped
    # until the next keyframe (a slow subscriber must not hold memory or delay others).
    max_subscriber_backlog_bytes: int = 256 * 1024
    # A conference member's audio slots: whose audio they hear at once (the chair, the other
    # moderators, the floor holders, in that order; after unmute all, the sites speaking).
    conference_audio_slots: int = 3
    # A moderator's grid: how many sites' video they see besides the spotlight.
    conference_grid_slots: int = 16
    # The one video codec of a conference's slots (a publisher in another codec is not shown).
    conference_video_codec: str = "video/VP8"
    # A conference's roll-in: its first seconds, when most sites join. Meanwhile its router
    # asks the spotlight publisher for a keyframe every `conference_rollin_keyframe_s` and
    # holds joiners' requests back for it, so many joiners cost a few keyframes (0: off).
    conference_rollin_s: float = 60.0
    conference_rollin_keyframe_s: float = 2.5
    # An open conference over several workers: each worker sends home the audio of only its
    # `conference_audio_slots` loudest sites (media.loudest), and names them in a VOICES frame.
    # Off: every site's audio goes home (the benchmark's `--no-preselect`).
    open_audio_preselect: bool = True
    # VP8 temporal layers (docs/media.md, *Temporal layers*): a subscriber of a publisher
    # sending L1T3 whose receiver reports more than `temporal_down_loss` (a fraction) in
    # `temporal_down_reports` RTCP reports in a row is sent one layer less (down to TID 0
    # alone), and one layer more after `temporal_up_after_s` seconds of reports all below
    # `temporal_up_loss`, up to `temporal_max_layer` (below 2: no subscriber ever gets more,
    # for links that cannot carry the full frame rate; such subscribers are forwarded in
    # Python, not by the C fan-out). Off: every subscriber gets every layer.
    temporal_layers: bool = True
    temporal_down_loss: float = 0.10
    temporal_down_reports: int = 2
    temporal_up_loss: float = 0.02
    temporal_up_after_s: float = 5.0
    temporal_max_layer: int = 2
    # Who sends a publication's packets to its steady subscribers: "c", one call of the C
    # fan-out per packet (media/fanout.c, built by `make venv`); "python", the forwarder
    # itself. "c" without the built extension falls back to "python" with one warning at
    # start.
    fanout: Literal["c", "python"] = "c"
    # Media worker processes (docs/media.md, *Worker processes*): "auto", one per core this
    # process may run on; an integer: that many; 0: media runs in the server's own process.
    workers: int | str = "auto"
    # Bench-only, off (""): a Unix socket path at which the server (with media workers)
    # lets the benchmark on this machine add pre-keyed SRTP sinks to a conference
    # (media.sink, media.sink_control; docs/media.md). Never set it in production.
    bench_sink_socket: str = ""
    # The cascade between nodes (docs/cluster.md, *One conference over every node*): the
    # address this node's UDP socket binds and advertises in its registry status, so that a
    # conference may spread its sites over every node. Empty: no cascade (a conference stays
    # on one node). Needs media workers (`workers` above 0).
    cascade_address: str = ""
    # Its UDP port; 0: any free port (advertised as bound).
    cascade_port: int = 0


def layer_policy(config: MediaConfig) -> LayerPolicy | None:
    """The temporal layer thresholds `config` sets, or None when layers are never dropped.
    Raises ValueError on thresholds out of order (the config check names the keys)."""
    if not config.temporal_layers:
        return None
    return LayerPolicy(
        down_loss=config.temporal_down_loss,
        down_reports=config.temporal_down_reports,
        up_loss=config.temporal_up_loss,
        up_after_s=config.temporal_up_after_s,
        top=config.temporal_max_layer,
    )


def worker_count(setting: int | str, cores: int) -> int:
    """How many media worker processes `setting` asks for on a machine with `cores` usable
    cores; raises ValueError naming what is accepted. Text of digits is the number (the
    environment's `COMMANDCENTER_MEDIA_WORKERS=2`)."""
    if setting == "auto":
        return max(1, cores)
    if isinstance(setting, str) and setting.isascii() and setting.isdigit():
        setting = int(setting)
    if isinstance(setting, bool) or not isinstance(setting, int) or not 0 <= setting <= MAX_WORKERS:
        raise ValueError(f'must be "auto" or an integer from 0 to {MAX_WORKERS}, got {setting!r}')
    return setting
