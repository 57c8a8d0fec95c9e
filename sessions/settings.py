"""The session recorder's settings: the `[recorder]` and `[evidence]` sections of config.toml,
with their defaults (`commandcenter.config` reads them). Frozen Structs forbidding unknown
fields, as every section is: a misspelt key is an error, not a setting silently left at its
default."""

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
    # Zone in which statistics dates (YYYY-MM-DD) begin and end: "UTC" or an IANA name.
    time_zone: str = "UTC"
