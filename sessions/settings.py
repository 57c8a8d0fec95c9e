"""The session recorder's settings: the `[recorder]`, `[evidence]` and `[feed]` sections of
config.toml, with their defaults (`commandcenter.config` reads them). Frozen Structs
forbidding unknown fields, as every section is: a misspelt key is an error, not a setting
silently left at its default."""

from __future__ import annotations

import msgspec


class EvidenceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Directory of the evidence files (content-addressed, write-once). Empty: <data_dir>/evidence.
    dir: str = ""
    # Largest upload accepted, bytes; a longer body is refused with 413 and not read further.
    max_upload_bytes: int = 4 * 1024**3
    # A device clock further than this from the server's (from its latest heartbeat), in
    # milliseconds, marks the capture time of its uploads "time unverified".
    clock_offset_threshold_ms: float = 2000.0
    # An upload must keep up this average rate, bytes a second, counted from
    # `upload_grace_s` after it starts, and end within `upload_max_s`; otherwise it is
    # refused with 408 (a client that trickles or stalls would hold a connection and a
    # partial file for ever). 8 KiB/s is far below a phone on a poor mobile network.
    upload_min_bytes_per_s: int = 8192
    upload_grace_s: float = 10.0
    upload_max_s: float = 3600.0


class RecorderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Where the hash-chained trace is kept: "sqlite" (a file, the default), "postgres", or
    # "memory" (nothing survives the process; for tests and demos).
    backend: str = "sqlite"
    # The SQLite file. Empty: <data_dir>/trace.sqlite3.
    sqlite_path: str = ""
    # Connection string for backend "postgres", e.g. postgresql://user@host:5432/db.
    postgres_dsn: str = ""
    # Schema holding the trace table, created if missing.
    postgres_schema: str = "commandcenter"
    # Most records committed in one transaction; appends queued beyond it go in the next.
    max_batch: int = 5000
    # Longest a connect to PostgreSQL or a commit of the trace may take, seconds: past it
    # the append fails (the hub holds and retries, /readyz fails) and the connection is
    # dropped for a new one, so a server that stopped answering cannot stall the node.
    postgres_timeout_s: float = 5.0
    # Longest a read of the trace in PostgreSQL may take, seconds (statistics, verifying).
    postgres_query_timeout_s: float = 120.0
    # Records a trace written before its subject index gets filed per transaction by the
    # server's background reindex (sessions/reindexer.py), and the pause between two
    # batches, seconds (0 still lets requests run between batches).
    reindex_batch: int = 1000
    reindex_pause_s: float = 0.0
    # Zone in which statistics dates (YYYY-MM-DD) begin and end: "UTC" or an IANA name.
    time_zone: str = "UTC"


class FeedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # A stream reads the trace for new facts this often, seconds.
    poll_s: float = 1.0
    # A stream with nothing to send sends `{"heartbeat": seq}` this often, seconds, so that
    # proxies and load balancers keep it open and the client knows it is alive.
    heartbeat_s: float = 15.0
    # Records read from the trace at a time.
    page: int = 500
    # Streams open at once for one user, and in all on this node; beyond, 429.
    max_per_user: int = 2
    max_connections: int = 64
    # A client that takes no line for this long is cut off, seconds: a stream that stopped
    # reading must not hold its slot for ever.
    send_timeout_s: float = 30.0


class AuditConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # The Ed25519 private key (PEM) that signs checkpoints of the trace's head. Empty:
    # <data_dir>-audit/checkpoint_ed25519.pem, beside the data directory and never inside
    # it (whoever can rewrite the trace must not find the key with it). Made at first start.
    checkpoint_key_file: str = ""
    # A JSON-lines file every checkpoint is also appended to (empty: none). Keep it off the
    # data directory's disk, or ship it elsewhere: it outlives a trace cut short together
    # with its checkpoints table.
    checkpoint_log: str = ""
    # A checkpoint is written this often (seconds) when the head moved, and on every stop.
    checkpoint_interval_s: float = 60.0
    # An RFC 3161 time-stamp authority (http(s) URL) that stamps each checkpoint; empty:
    # none. A TSA that fails or is slow is logged and the checkpoint written without one.
    tsa_url: str = ""
    # The TSA's certificate (PEM or DER), which verifies its tokens; empty: tokens are kept
    # but only their message imprint is checked.
    tsa_certificate_file: str = ""
    # Roots (a PEM bundle) the TSA's certificate must chain to, checked at each token's time,
    # with RFC 3161's timeStamping key usage; empty: the pinned certificate alone is trusted.
    # Without tsa_certificate_file, the certificate a token carries is the one checked.
    tsa_roots_file: str = ""
    # How long to wait for the TSA, seconds.
    tsa_timeout_s: float = 5.0
