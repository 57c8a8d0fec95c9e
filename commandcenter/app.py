"""The composition root: builds the application from a `Config`, choosing the
implementations behind each interface in this one place: the core link (this process, or
the Redis cluster), the trace store, the media server, the token verifier and the clock."""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from commandcenter import (
    account_api,
    admin_api,
    browser_policy,
    checkpoints,
    console_api,
    evidence_api,
    feed_api,
    http_api,
    http_edge,
    keys,
    listener,
    metrics,
    names_api,
    proxies,
    records_api,
    serving,
    stores,
    tls,
    track_api,
    witness_api,
)
from commandcenter.auth import Courts, build_verifier, load_secret
from commandcenter.config import Config, tile_origin
from commandcenter.config_errors import ConfigError
from commandcenter.connection_gate import ConnectionGate, total_cap
from commandcenter.in_flight import InFlight
from commandcenter.keys import (
    CONFIG,
    COURTS,
    HUB,
    IN_FLIGHT,
    MEDIA,
    RECORDER,
    REINDEXER,
    REVOCATIONS,
    TRACE,
)
from commandcenter.origins import allowed_origins
from commandcenter.revocations import RefusingDisabled, Revocations
from media.evidence_sink import StoreEvidenceSink
from media.pool import WorkerPool
from media.service import MediaService
from media.settings import worker_count
from sessions import restart
from sessions.durable import DurableRecorder
from sessions.evidence_store import EvidenceStore
from sessions.recorder import SessionRecorder, TraceEvent
from sessions.reindexer import Reindexer
from sessions.store import TraceStore
from signalling.clock import Clock, SystemClock
from signalling.cluster import RedisCoreLink
from signalling.core.switchboard import Switchboard
from signalling.core.watches import VideoCap, WatchLimits
from signalling.hub import WS_PATH, Hub
from signalling.link import CoreLink, LocalCoreLink

log = structlog.get_logger(__name__)

# Pending TCP connections the kernel queues for us; aiohttp's 128 drops attempts in a
# reconnect storm (every officer of a node coming back at once), each costing a 1-3 s retry.
LISTEN_BACKLOG = 1024
# Each connection holds about a hundred GC-tracked objects, so with 10,000 connections a
# full collection scans a million and stalls the loop for 0.5-2 s (measured by
# bench.signalling), which lands on ring latency. A larger young generation lets a message's
# short-lived objects die by reference count before they are promoted, which makes full
# collections rare; freezing moves what exists at start (modules, config) out of their scan.
GC_THRESHOLDS = (50_000, 20, 100)
STATIC_DIR = Path(__file__).parent / "static"
# How the media worker pool starts a worker (this interpreter, so the same virtualenv).
MEDIA_WORKER_COMMAND = (sys.executable, "-m", "commandcenter.media_worker")


def recordings_dir(config: Config) -> Path:
    return Path(config.media.recordings_dir or Path(config.server.data_dir) / "recordings")


def node_id_of(config: Config) -> str:
    return config.server.node_id or f"{socket.gethostname()}-{os.getpid()}"


def create_app(
    config: Config,
    *,
    recorder: SessionRecorder | None = None,
    clock: Clock | None = None,
) -> web.Application:
    """The whole server for `config`: `recorder` (default: the configured trace store) and
    `clock` (default: the machine's) may be given by tests."""
    clock = clock if clock is not None else SystemClock()
    node_id = node_id_of(config)
    courts = Courts(config.courts)

    # The core paces sites into conferences' media for this node as one queue
    # (signalling.core.join_pace), while the pool spreads them round-robin over its media
    # workers: the per-worker pace times the workers is the node's.
    media_workers = (
        max(1, worker_count(config.media.workers, len(os.sched_getaffinity(0))))
        if config.media.enabled
        else 1
    )
    conferences = msgspec.structs.replace(
        config.conferences, joins_per_s=config.conferences.joins_per_s * media_workers
    )

    def new_switchboard() -> Switchboard:
        return Switchboard(
            courts=courts,
            calls=config.calls,
            presence=config.presence,
            node_id=node_id,
            new_call_id=lambda: "c-" + secrets.token_hex(8),
            media=config.media.enabled,
            # Recordings are evidence: kept only with the trace that evidence lives in.
            recording=(
                config.media.enabled
                and config.media.record
                and isinstance(recorder, DurableRecorder)
            ),
            conferences=conferences,
            emergency=config.emergency,
            new_conference_id=lambda: "m-" + secrets.token_hex(8),
            instructions=config.instructions,
            new_instruction_id=lambda: "i-" + secrets.token_hex(8),
            watches=WatchLimits(
                max_feeds=config.console.wall_max_feeds,
                starts_per_min=config.console.wall_starts_per_min,
                caps={tiles: VideoCap(*cap) for tiles, cap in config.wall.caps().items()},
            ),
            new_watch_id=lambda: "w-" + secrets.token_hex(8),
        )

    # Built now, opened at startup: the store named by config.recorder (SQLite by default).
    recorder = recorder if recorder is not None else stores.durable_recorder(config)
    evidence_store = (
        stores.evidence_store(config, trace=recorder, recorder=recorder, clock=clock.now)
        if isinstance(recorder, DurableRecorder)
        else None
    )
    media = (
        _media_service(config, evidence_store, node_id, clock, recorder)
        if config.media.enabled
        else None
    )
    link = _core_link(config, node_id, new_switchboard, recorder, media, clock)
    # With accounts, a disabled one's tokens are refused (revocations.py).
    authenticator = RefusingDisabled(build_verifier(config))
    hub = Hub(
        link=link,
        authenticator=authenticator,
        limits=config.limits,
        heartbeat_interval_s=config.presence.heartbeat_interval_s,
        token_leeway_s=config.auth.leeway_s,
        clock=clock,
        node_id=node_id,
    )
    app = web.Application(
        client_max_size=1024 * 1024,
        middlewares=[
            # First: every later step sees the client's address and scheme.
            proxies.forwarded(proxies.networks(config.server.trusted_proxies)),
            browser_policy.origin_check(WS_PATH, allowed_origins(config.server.allowed_origins)),
            browser_policy.app_not_found(STATIC_DIR),
        ],
    )
    app.on_response_prepare.append(http_edge.stamp_request_id)
    app.on_response_prepare.append(
        browser_policy.page_headers_for(tile_origin(config.console.tile_url))
    )
    app[CONFIG] = config
    app[HUB] = hub
    app[RECORDER] = recorder
    app[COURTS] = courts
    app[IN_FLIGHT] = InFlight()
    if isinstance(media, MediaService):
        app[MEDIA] = media
    elif media is not None:
        app[keys.WORKERS] = media
    if isinstance(recorder, DurableRecorder):
        app[TRACE] = recorder
        app[REINDEXER] = Reindexer(
            recorder,
            node=node_id,
            batch=config.recorder.reindex_batch,
            pause_s=config.recorder.reindex_pause_s,
        )
    if evidence_store is not None:
        # Evidence exists only as trace records, so it is served only with a trace.
        evidence_api.install(app, evidence_store, config.redis)
    accounts = _account_api(config)
    revocations: Revocations | None = None
    if accounts is not None:
        revocations = Revocations(hub=hub, poll_s=config.accounts.revocation_poll_s)
        authenticator.revocations = revocations
        app[REVOCATIONS] = revocations
        account_api.install(app, accounts)
        # The accounts admin page's API, over the same store (admin_api.py).
        admin_api.install(app)
        # Witness invitations to a conference, kept in the same store (witness_api.py).
        witness_api.install(app)
    # The feed answers 503 without a trace; its streams end on shutdown, before the hub's.
    feed_api.install(app)
    app.router.add_get(WS_PATH, hub.handle_ws)
    http_api.add_routes(app)
    console_api.add_routes(app)
    track_api.add_routes(app)
    # The records side of the console (evidence trail, chain check, calls' audit views).
    records_api.add_routes(app, evidence=evidence_store is not None)
    # Names for the ids the records views show (names_api.py).
    names_api.add_routes(app)
    metrics.install(app)
    # The web client: code only, no data, so it is served without a token (the WebSocket it
    # opens is authenticated like any other).
    app.router.add_static("/app/", STATIC_DIR)

    async def on_startup(app: web.Application) -> None:
        if isinstance(recorder, DurableRecorder):
            # A trace that cannot be opened stops the server here, not at the first sign-in.
            await recorder.start()
            if not config.redis.url:
                # Alone, this server owns everything in the trace; in a cluster the
                # authority closes what a dead node left (node_lost).
                await close_what_a_crash_left(recorder, clock.now(), node_id)
            # Records written before the subject index get it in the background, batch by
            # batch, while the server serves (sessions/reindexer.py).
            await app[REINDEXER].start()
        if accounts is not None:
            # A store that cannot be opened stops the server here, like the trace.
            await accounts.open(await stores.open_accounts(config))
            if revocations is not None:
                # Read before the first connection: a token of an account disabled while
                # this node was down is refused from the start.
                await revocations.refresh(accounts.store)
                revocations.start(accounts.store)
        await hub.start()
        log.info("started", node_id=node_id)

    async def on_shutdown(app: web.Application) -> None:
        if REINDEXER in app:
            # Between batches; the next start goes on from the last one committed.
            await app[REINDEXER].stop()
        if revocations is not None:
            await revocations.stop()
        await hub.stop()

    async def on_cleanup(app: web.Application) -> None:
        if accounts is not None:
            await accounts.close()
        await recorder.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    if isinstance(recorder, DurableRecorder):
        # Signed heads of the trace (issue 15): at start, periodically, and at the stop.
        checkpoints.install(app, config, recorder, node=node_id, clock=clock.now)
    return app


def _account_api(config: Config) -> account_api.AccountApi | None:
    """Sign-in with accounts mints HS256 tokens: without HS256 accepted there is none (an
    identity provider of the province's issues the tokens instead)."""
    if "HS256" not in config.auth.algorithms:
        return None
    secret = load_secret(config.auth, Path(config.server.data_dir))
    return account_api.AccountApi(config=config.accounts, secret=secret, sso=config.oidc)


def _media_service(
    config: Config,
    evidence_store: EvidenceStore | None,
    node_id: str,
    clock: Clock,
    recorder: SessionRecorder,
) -> MediaService | WorkerPool:
    # Recordings and snapshots are evidence: without the evidence store (an in-memory
    # recorder) the media server relays but keeps nothing.
    sink = (
        StoreEvidenceSink(evidence_store, device=f"server:{node_id}")
        if evidence_store is not None
        else None
    )
    workers = worker_count(config.media.workers, len(os.sched_getaffinity(0)))
    if config.media.cascade_address and not workers:
        # The cascade is the worker pool's (media/cascade.py): not silently off.
        raise ConfigError("media.cascade_address needs media workers (media.workers above 0)")
    if not 0 <= config.media.cascade_port <= 65535:
        raise ConfigError(f"media.cascade_port: {config.media.cascade_port} is not a UDP port")
    if workers:
        try:
            return WorkerPool(
                config=config.media,
                count=workers,
                command=MEDIA_WORKER_COMMAND,
                clock=clock.now,
                evidence=sink,
                recordings_dir=recordings_dir(config) if config.media.record else None,
                recorder=recorder,
                log_format=config.logging.format,
                log_level=config.logging.level,
                node_id=node_id,
            )
        except ValueError as exc:
            raise ConfigError(f"media.workers: {exc}") from None
    if config.media.bench_sink_socket:
        raise ConfigError("media.bench_sink_socket: the benchmark's sinks need media workers")
    return MediaService(
        config=config.media,
        clock=clock.now,
        evidence=sink,
        recordings_dir=recordings_dir(config) if config.media.record else None,
        recorder=recorder,
    )


def _core_link(
    config: Config,
    node_id: str,
    new_core: Callable[[], Switchboard],
    recorder: SessionRecorder,
    media: MediaService | WorkerPool | None,
    clock: Clock,
) -> CoreLink:
    """Where the core runs: in this process, or (with `[redis] url`) on whichever node of
    the cluster holds the authority lease."""
    if not config.redis.url:
        return LocalCoreLink(core=new_core(), recorder=recorder, media=media, clock=clock)
    return RedisCoreLink(
        node_id=node_id,
        redis=config.redis,
        media_address=",".join(config.media.ice_addresses) or "auto",
        new_core=new_core,
        local_media=media,
        http_address=config.redis.advertise_address or f"{config.server.host}:{config.server.port}",
        recorder=recorder,
        clock=clock,
    )


async def close_what_a_crash_left(trace: TraceStore, now: float, node_id: str) -> None:
    """Before serving: close, as of `now`, the sessions, calls and conferences the previous
    run left open (it was killed rather than stopped), then mark this start
    (sessions/restart.py)."""
    starts = await trace.find(kinds=[restart.SERVER_STARTED])
    since = starts[-1].at if starts else None
    left = restart.left_open(await trace.find(kinds=restart.KINDS, since=since))
    events = restart.closing_events(left, now, node_id)
    counts = {
        "sessions": len(left.sessions),
        "calls": len(left.calls),
        "conferences": len(left.conferences),
    }
    events.append(TraceEvent(restart.SERVER_STARTED, now, {"node": node_id, "closed": counts}))
    await trace.append(events)
    if left:
        log.warning("closed what the previous run left open", node_id=node_id, **counts)


class AccessLogger(AbstractAccessLogger):
    """Logs requests without their query string: the WebSocket URL carries the token. A
    WebSocket session (101) is not logged when it ends: the hub's "connected" line is its one
    line, so a sign-in costs one info line, not three."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if response.status == 101:
            return
        structlog.get_logger("access").info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round(time * 1000, 1),
        )

    @property
    def enabled(self) -> bool:
        return True


def serve(config: Config) -> None:
    # Every log line of this process names its node (media, evidence and HTTP lines too):
    # tasks copy the context they are created in, and all are created after this.
    structlog.contextvars.bind_contextvars(node_id=node_id_of(config))
    app = create_app(config)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    nofile = listener.raise_nofile_limit()

    async def quiet_accept_errors(app: web.Application) -> None:
        asyncio.get_running_loop().set_exception_handler(listener.AcceptErrorLog())
        log.info("file descriptors", limit=nofile)

    app.on_startup.insert(0, quiet_accept_errors)
    server = config.server
    gate = ConnectionGate(
        total=total_cap(server.max_connections, nofile, server.fd_reserve),
        per_address=server.max_connections_per_address,
    )
    app[metrics.METRICS].gate = gate
    context = tls.ssl_context(config)
    log.info(
        "listening",
        url=f"{'https' if context else 'http'}://{server.host}:{server.port}/app/",
    )
    asyncio.run(
        serving.run_until_stopped(
            app,
            host=server.host,
            port=server.port,
            gate=gate,
            backlog=LISTEN_BACKLOG,
            drain_timeout_s=server.drain_timeout_s,
            ssl_context=context,
            handler_args={
                "access_log_class": AccessLogger,
                # Also the deadline for a connection's first whole request
                # (commandcenter/listener.py).
                "keepalive_timeout": server.header_timeout_s,
            },
        )
    )
