"""Running the application until SIGTERM, then draining it.

aiohttp's `run_app` would do the running, but not the stopping we need: a second SIGTERM
raised GracefulExit inside its cleanup and cut uploads off mid-body, and it has no place to
cap connections before they are read. So this module owns the loop's life:

1. listen through a `GatedSite` (commandcenter/connection_gate.py caps connections in total
   and per address, leaving `server.fd_reserve` descriptors free);
2. on SIGTERM or SIGINT (any number of them), drain: log `draining`, stop listening (new
   connections are refused by the kernel, and `/readyz` already fails for a load balancer
   that asks on a kept-alive connection), run the app's shutdown (the hub closes every
   WebSocket with 1001, "reconnect", and ends what it owned), let requests in progress (an
   evidence upload) finish within `server.drain_timeout_s`, write the stop checkpoint of the
   trace's final head (commandcenter/checkpoints.py), run the app's cleanup (the trace is
   flushed and closed), and log `drained`.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from commandcenter.checkpoints import write_shutdown_checkpoint
from commandcenter.connection_gate import ConnectionGate, GatedHandler
from commandcenter.keys import IN_FLIGHT

log = structlog.get_logger(__name__)

REFUSAL_LOG_INTERVAL_S = 10.0


class RefusalLog:
    """Logs refused connections at most once per interval, with how many since the last
    line: a flood must not become a flood of log lines."""

    def __init__(
        self,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval_s = interval_s
        self.clock = clock
        self.swallowed = 0
        self._last: float | None = None

    def __call__(self, address: str, reason: str) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            self.swallowed += 1
            return
        log.warning("connection refused", reason=reason, address=address, repeated=self.swallowed)
        self._last = now
        self.swallowed = 0


class GatedSite(web.TCPSite):
    """A TCP site whose connections pass a `ConnectionGate` before aiohttp reads them."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        gate: ConnectionGate,
        handler_args: dict[str, Any],
        backlog: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog, ssl_context=ssl_context)
        self.gate = gate
        self._handler_args = handler_args
        self._refusals = RefusalLog()

    async def start(self) -> None:
        # BaseSite.start registers the site with its runner; TCPSite.start would then listen
        # with aiohttp's own handler factory, which is what this replaces.
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None

        def handler() -> GatedHandler:
            return GatedHandler(
                manager,
                loop=loop,
                gate=self.gate,
                on_refused=self._refusals,
                **self._handler_args,
            )

        self._server = await loop.create_server(
            handler,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            ssl=self._ssl_context,
        )
        sock: socket.socket = self._server.sockets[0]
        self._bound_port = sock.getsockname()[1]


async def run_until_stopped(
    app: web.Application,
    *,
    host: str,
    port: int,
    gate: ConnectionGate,
    backlog: int,
    drain_timeout_s: float,
    handler_args: dict[str, Any],
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain it (module docstring); over TLS with
    `ssl_context`."""
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=drain_timeout_s, **handler_args
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Repeated signals only set what is set: an impatient second SIGTERM must not cut
        # an upload off mid-body.
        loop.add_signal_handler(signum, stop.set)
    try:
        site = GatedSite(
            runner,
            host,
            port,
            gate=gate,
            handler_args=handler_args,
            backlog=backlog,
            ssl_context=ssl_context,
        )
        await site.start()
        log.info(
            "listening",
            host=host,
            port=site.port,
            max_connections=gate.total,
            max_connections_per_address=gate.per_address,
        )
        await stop.wait()
        log.info("draining", open_connections=gate.open, timeout_s=drain_timeout_s)
        started = time.monotonic()
        for running in list(runner.sites):
            await running.stop()
        in_flight = app[IN_FLIGHT]
        in_flight.draining = True
        # WebSocket clients are told first (1001: reconnect), so they find another node
        # while uploads finish; the app's shutdown runs again, harmlessly, in cleanup.
        await runner.shutdown()
        drained = await in_flight.drained(drain_timeout_s)
        if not drained:
            log.warning("drain timed out", in_progress=in_flight.count)
        # Everything the drain recorded is in the trace now: sign its final head before
        # the cleanup closes it.
        await write_shutdown_checkpoint(app, drained=drained)
        await runner.cleanup()
        log.info("drained", seconds=round(time.monotonic() - started, 3))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


__all__ = ["GatedSite", "RefusalLog", "run_until_stopped"]
