"""Typed keys of the aiohttp application's state."""

from __future__ import annotations

from aiohttp import web

from commandcenter.config import Config
from commandcenter.in_flight import InFlight
from commandcenter.revocations import Revocations
from identity import Courts
from media.pool import WorkerPool
from media.service import MediaService
from sessions.evidence_store import EvidenceStore
from sessions.recorder import SessionRecorder
from sessions.reindexer import Reindexer
from sessions.store import TraceStore
from signalling.hub import Hub

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
RECORDER = web.AppKey("recorder", SessionRecorder)
# The trace as readers see it (statistics, evidence); absent when the recorder keeps none.
TRACE = web.AppKey("trace", TraceStore)
EVIDENCE = web.AppKey("evidence", EvidenceStore)
COURTS = web.AppKey("courts", Courts)
# This node's media server; absent with media.enabled = false.
MEDIA = web.AppKey("media", MediaService)
# This node's media worker processes instead, with media.workers above 0 (then MEDIA is absent).
WORKERS = web.AppKey("workers", WorkerPool)
# Evidence requests in progress, which a drain lets finish before it stops (serving.py).
IN_FLIGHT = web.AppKey("in_flight", InFlight)
# Disabled accounts as this node sees them; absent without accounts (revocations.py).
REVOCATIONS = web.AppKey("revocations", Revocations)
# The background reindex of a trace written before its subject index; absent without a trace.
REINDEXER = web.AppKey("reindexer", Reindexer)
