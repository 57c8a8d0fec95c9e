"""Checkpoints in the running server and the CLI: the key from `[audit]`, the time-stamp
authority, and when to write them (sessions/checkpointer.py does the writing).

The server writes one at start, every `audit.checkpoint_interval_s` while the head moves, and
one when it stops: `write_shutdown_checkpoint` runs in the drain (commandcenter/serving.py),
after the last in-flight upload is recorded and before the trace is closed, and again from
the app's cleanup, ahead of the recorder's close, for apps run without that drain (tests);
the checkpointer writes it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from commandcenter.config import Config, audit_key_path
from commandcenter.tsa_client import load_tsa_trust, timestamper
from sessions.checkpoint_files import KeyFileError, load_or_make_key
from sessions.checkpointer import Checkpointer
from sessions.errors import TimestampError
from sessions.store import TraceStore

log = structlog.get_logger(__name__)

CHECKPOINTER = web.AppKey("checkpointer", Checkpointer)


async def open_checkpointer(
    config: Config, trace: TraceStore, *, node: str, clock: Callable[[], float]
) -> Checkpointer:
    """A checkpointer over `trace` with the configured key (made now if missing). Raises
    KeyFileError, or TimestampError for an unreadable TSA certificate."""
    path = audit_key_path(config)
    key, made = await asyncio.to_thread(load_or_make_key, path)
    if made:
        # Where, never what: the key itself stays in its file.
        log.warning("checkpoint key made", key_file=str(path), public_key=f"{path}.pub")
    audit = config.audit
    stamp = None
    if audit.tsa_url:
        trust = await asyncio.to_thread(
            load_tsa_trust, audit.tsa_certificate_file, audit.tsa_roots_file
        )
        stamp = timestamper(audit.tsa_url, audit.tsa_timeout_s, trust)
    return Checkpointer(
        trace,
        key,
        node=node,
        clock=clock,
        interval_s=audit.checkpoint_interval_s,
        alone=not config.redis.url,
        log_path=Path(audit.checkpoint_log) if audit.checkpoint_log else None,
        timestamper=stamp,
    )


def install(
    app: web.Application,
    config: Config,
    trace: TraceStore,
    *,
    node: str,
    clock: Callable[[], float],
) -> None:
    """Write checkpoints while `app` runs: call after the app's own startup and cleanup
    hooks are registered (the trace is open before the first, closed after the last)."""

    async def on_startup(app: web.Application) -> None:
        try:
            checkpointer = await open_checkpointer(config, trace, node=node, clock=clock)
        except (KeyFileError, TimestampError) as exc:
            # The server does not run without a way to sign its trace's head.
            log.error("checkpoints cannot be written", error=str(exc))
            raise
        app[CHECKPOINTER] = checkpointer
        checkpointer.start()

    async def on_cleanup(app: web.Application) -> None:
        await write_shutdown_checkpoint(app)

    app.on_startup.append(on_startup)
    # First of the cleanups: before the recorder closes the trace.
    app.on_cleanup.insert(0, on_cleanup)


async def write_shutdown_checkpoint(app: web.Application, *, drained: bool = True) -> None:
    """The stop checkpoint at the final head; idempotent, and nothing without a trace.
    `drained` False: uploads were still in progress when the drain timed out, and one may
    yet land in the trace, so the checkpoint promises no quiet after it (`node_stop`)."""
    checkpointer = app.get(CHECKPOINTER)
    if checkpointer is not None:
        await checkpointer.stop(quiet=drained)


__all__ = ["CHECKPOINTER", "install", "open_checkpointer", "write_shutdown_checkpoint"]
