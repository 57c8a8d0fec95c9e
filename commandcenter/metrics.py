"""`GET /metrics`: this node's figures in Prometheus's text format, for a scrape that presents
`[metrics] token` as its bearer token (no token configured: 404, so nothing is exposed by
default; a missing or wrong one: 401).

Only this module knows Prometheus. The layers below keep plain counts and `Timings`
(sessions/timings.py) about what they own, and `_Collector` reads them at each scrape:
nothing is added to a hot path but an integer increment. Each application has its own
`CollectorRegistry`, never prometheus_client's global one, so that several apps in one
process (the tests) do not collide. docs/operations.md lists every metric and its labels.

HTTP errors are counted where an answer is prepared (`_count_error`, an
`on_response_prepare` signal) by the code `http_edge` put on it, so no handler can answer
an error the count misses; the WebSocket's by `signalling.errors.error_reply` (the `error`
replies) and the hub (the closes for a fault). /metrics's own refusals are not counted: a
misconfigured scraper must not look like clients failing.

The media's forwarded packets and the WebSocket's `error` replies are counted per process
(one server per process, outside tests); everything else is read from this app's parts.
"""

from __future__ import annotations

import hmac
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Final

from aiohttp import hdrs, web
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from commandcenter.auth import bearer_token
from commandcenter.connection_gate import ConnectionGate
from commandcenter.http_edge import ERROR_CODE, error_response
from commandcenter.keys import CONFIG, HUB, REINDEXER, TRACE, WORKERS
from media.forwarder import FORWARDED
from sessions.durable import DurableRecorder
from sessions.timings import Histogram
from signalling.cluster import RedisCoreLink
from signalling.core.call import CallState
from signalling.errors import ERRORS_SENT

PATH: Final = "/metrics"
# A scrape waits at most this long for Redis to answer its PING, seconds.
REDIS_PING_TIMEOUT_S: Final = 1.0
# The server's own process (media worker processes are `media-<i>`).
WORKER: Final = "server"


class Metrics:
    """One application's registry and the figures only the HTTP edge sees."""

    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # HTTP answers with an error, by their `error` code (`http_<status>` for aiohttp's
        # own, such as an unknown path's 404).
        self.http_errors: Counter[str] = Counter()
        # The connection gate of `commandcenter serve` (absent under a test client).
        self.gate: ConnectionGate | None = None
        # The latest scrape's PING to Redis, seconds (None: alone, or Redis did not answer).
        self.redis_round_trip: float | None = None
        self.registry.register(_Collector(app, self))


METRICS: Final = web.AppKey("metrics", Metrics)


def install(app: web.Application) -> Metrics:
    """Serve /metrics for `app` and count its HTTP errors."""
    metrics = app[METRICS] = Metrics(app)
    app.router.add_get(PATH, serve_metrics)
    app.on_response_prepare.append(_count_error)
    return metrics


async def serve_metrics(request: web.Request) -> web.Response:
    token = request.app[CONFIG].metrics.token
    if not token:
        # As if there were no such path: a node that is not scraped says nothing.
        raise web.HTTPNotFound()
    given = bearer_token(request.headers.get(hdrs.AUTHORIZATION, ""))
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        return error_response(401, "unauthorized", "scrape token missing or wrong")
    metrics = request.app[METRICS]
    link = request.app[HUB].link
    if isinstance(link, RedisCoreLink):
        metrics.redis_round_trip = await link.round_trip(REDIS_PING_TIMEOUT_S)
    encode, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
    body = encode(metrics.registry)
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})


async def _count_error(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == PATH:
        return
    code = response.get(ERROR_CODE)
    if code is None:
        if response.status < 400:
            return
        code = f"http_{response.status}"
    request.app[METRICS].http_errors[code] += 1


class _Collector(Collector):
    """Reads the figures of the app's parts at each scrape."""

    def __init__(self, app: web.Application, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        yield from self._connections()
        yield from self._core()
        yield from self._media()
        yield from self._process()
        yield from self._stores()
        yield self._errors()

    def _connections(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "commandcenter_connections",
            "Open client connections: websocket (connected users), tcp (every HTTP and "
            "WebSocket connection the server holds; with `commandcenter serve` only).",
            labels=["kind"],
        )
        gauge.add_metric(["websocket"], self._app[HUB].live_connections())
        gate = self._metrics.gate
        if gate is not None:
            gauge.add_metric(["tcp"], gate.open)
        yield gauge

    def _core(self) -> Iterator[Metric]:
        link = self._app[HUB].link
        sign_ins = CounterMetricFamily(
            "commandcenter_sign_ins",
            "Sign-ins recorded by this node's switchboard (a resume is not one).",
        )
        sign_ins.add_metric([], link.outbox.recorded_kinds["sign_in"])
        yield sign_ins
        core = link.running_core()
        calls = GaugeMetricFamily(
            "commandcenter_calls",
            "Calls now, by state (on the node running the switchboard only).",
            labels=["state"],
        )
        # A gateway has no figures, rather than zeros that a max() across nodes would show.
        if core is not None:
            counts = core.calls.count_by_state()
            for state in CallState:
                if state is not CallState.ENDED:
                    calls.add_metric([state.value], counts[state])
        yield calls
        if core is not None:
            yield _histogram(
                "commandcenter_ring_latency_seconds",
                "From a call placed to its answer, queue included.",
                core.calls.ring_times.snapshot(),
            )

    def _media(self) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "commandcenter_media_forwarded_packets",
            "RTP packets sent on to subscribers, without transcoding.",
        )
        octets = CounterMetricFamily(
            "commandcenter_media_forwarded_bytes",
            "Bytes of the RTP packets sent on to subscribers, before SRTP.",
        )
        pool = self._app.get(WORKERS)
        # With worker processes, theirs as they last reported (each counts from its start).
        in_workers = pool.forwarded() if pool is not None else (0, 0)
        packets.add_metric([], FORWARDED.packets + in_workers[0])
        octets.add_metric([], FORWARDED.bytes + in_workers[1])
        thinned = CounterMetricFamily(
            "commandcenter_media_layer_dropped_packets",
            "VP8 packets of temporal layers above what a subscriber reporting loss is sent "
            "(not forwarded to it: docs/media.md, Temporal layers).",
        )
        in_workers_dropped = pool.layer_dropped() if pool is not None else 0
        thinned.add_metric([], FORWARDED.layer_dropped + in_workers_dropped)
        yield packets
        yield octets
        yield thinned

    def _process(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "commandcenter_worker_cpu_seconds",
            "CPU time (user and system) of each process: the server's (`server`) and each "
            "media worker's (`media-<i>`, from its latest start; with media.workers above 0).",
            labels=["worker"],
        )
        times = os.times()
        cpu.add_metric([WORKER], times.user + times.system)
        pool = self._app.get(WORKERS)
        if pool is not None:
            for index, seconds in sorted(pool.cpu_seconds().items()):
                cpu.add_metric([f"media-{index}"], seconds)
        yield cpu

    def _stores(self) -> Iterator[Metric]:
        trace = self._app.get(TRACE)
        if isinstance(trace, DurableRecorder):
            yield _histogram(
                "commandcenter_trace_append_seconds",
                "Time to commit one group of trace events (what clients wait for a fact).",
                trace.append_times.snapshot(),
            )
        reindexer = self._app.get(REINDEXER)
        if reindexer is not None and reindexer.remaining is not None:
            gauge = GaugeMetricFamily(
                "commandcenter_trace_reindex_remaining",
                "Records written before the trace's subject index that it does not cover yet "
                "(the audits may miss them until 0; the server files them in the background).",
            )
            gauge.add_metric([], reindexer.remaining)
            yield gauge
        rtt = self._metrics.redis_round_trip
        if rtt is not None:
            gauge = GaugeMetricFamily(
                "commandcenter_redis_round_trip_seconds",
                "A PING to Redis at this scrape (with Redis only; absent if it did not answer).",
            )
            gauge.add_metric([], rtt)
            yield gauge

    def _errors(self) -> Metric:
        errors = CounterMetricFamily(
            "commandcenter_errors",
            "Errors answered to clients, by edge (http, websocket: `error` replies, "
            "websocket_close: connections closed for a fault) and wire code.",
            labels=["edge", "code"],
        )
        http = Counter(self._metrics.http_errors)
        gate = self._metrics.gate
        if gate is not None:
            http.update(gate.refusals)
        for code, n in sorted(http.items()):
            errors.add_metric(["http", code], n)
        for code, n in sorted(ERRORS_SENT.items()):
            errors.add_metric(["websocket", code], n)
        for close, n in sorted(self._app[HUB].closed_for_fault.items()):
            errors.add_metric(["websocket_close", str(close)], n)
        return errors


def _histogram(name: str, documentation: str, timings: Histogram) -> HistogramMetricFamily:
    buckets = [("+Inf" if b == float("inf") else repr(b), n) for b, n in timings.buckets]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=timings.sum)


__all__ = ["METRICS", "PATH", "Metrics", "install", "serve_metrics"]
