"""One media worker process's side of the pool (media.pool): a `MediaService` driven by the
records the server sends over the worker's socket (media.worker_wire), whose deliveries,
trace events and evidence go back over the same socket.

The worker keeps nothing the server lacks: its trace events are the server's to record and
its recordings are the server's to file (`Register`, answered with the evidence id), so a
worker killed mid-call loses at most the unwritten end of a recording, which the worker
restarted in its place files at start (media.capture.recover over its own directory).

It runs until the server says `Stop` or its socket ends (the server died: there is nobody to
deliver to).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Final

import structlog

from media import worker_wire as w
from media.fabric import FabricEndpoint
from media.forwarder import FORWARDED
from media.service import MediaService
from media.sink import SinkSpec
from sessions.evidence import EvidenceError
from sessions.recorder import TraceEvent
from signalling import protocol as p
from signalling.errors import ClientError

log = structlog.get_logger(__name__)

# How often the worker tells the server its load unasked (for placement, health, metrics).
LOAD_INTERVAL_S: Final = 1.0


class EvidenceRefused(EvidenceError):
    """The server did not file what this worker sent (its reason, as the server logged it)."""


class ParentLink:
    """The worker's end of the socket: records out, and the answers to `Register` back."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._ids = itertools.count(1)
        self._registering: dict[int, asyncio.Future[str]] = {}

    def send(self, record: w.ToParent) -> None:
        if not self.writer.is_closing():
            self.writer.write(w.frame(record))

    def deliver(self, user: str, message: p.ServerMessage) -> None:
        self.send(w.Deliver(user=user, message=message))

    # ---- SessionRecorder ----------------------------------------------------------------

    async def record(self, events: Sequence[TraceEvent]) -> None:
        """Sent to the server, which records them in its trace (the worker has none)."""
        records = [w.TraceRecord(e.kind, e.at, dict(e.data)) for e in events]
        self.send(w.Trace(events=records))
        await self.writer.drain()

    async def close(self) -> None:
        return None

    # ---- EvidenceSink -------------------------------------------------------------------

    async def register(
        self,
        *,
        call_id: str,
        case_number: str,
        court: str,
        officer: str,
        path_or_bytes: Path | bytes,
        media_type: str,
        file_name: str,
        captured_at_ms: float,
        ended_at_ms: float | None = None,
        sha256: str | None = None,
        requested_by: str | None = None,
    ) -> str:
        request_id = next(self._ids)
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._registering[request_id] = done
        path = str(path_or_bytes) if isinstance(path_or_bytes, Path) else None
        data = path_or_bytes if isinstance(path_or_bytes, bytes) else None
        try:
            self.send(
                w.Register(
                    id=request_id,
                    call_id=call_id,
                    case_number=case_number,
                    court=court,
                    officer=officer,
                    media_type=media_type,
                    file_name=file_name,
                    captured_at_ms=captured_at_ms,
                    path=path,
                    data=data,
                    ended_at_ms=ended_at_ms,
                    sha256=sha256,
                    requested_by=requested_by,
                )
            )
            return await done
        finally:
            self._registering.pop(request_id, None)

    def registered(self, answer: w.Registered) -> None:
        done = self._registering.get(answer.id)
        if done is None or done.done():
            return
        if answer.evidence_id is not None:
            done.set_result(answer.evidence_id)
        else:
            done.set_exception(EvidenceRefused(answer.error or "not filed"))

    def server_gone(self) -> None:
        for done in self._registering.values():
            if not done.done():
                done.set_exception(EvidenceRefused("the server is gone"))


def _load(service: MediaService) -> w.Load:
    times = os.times()
    return w.Load(
        rooms=len(service.rooms),
        peers=sum(len(room.peers) for room in service.rooms.values()),
        cpu_s=times.user + times.system,
        forwarded_packets=FORWARDED.packets,
        forwarded_bytes=FORWARDED.bytes,
        layer_dropped_packets=FORWARDED.layer_dropped,
        audio_sites_in=service.spans.audio_sites_in(),
    )


def _sinks(service: MediaService, request: w.Sinks) -> w.SinksState:
    """Carry out the pool's bench-only `Sinks` (media.sink)."""
    try:
        specs = [SinkSpec(s.name, s.host, s.port, s.key) for s in request.add]
        sent = service.sinks(request.conference_id, specs, request.remove)
    except (ClientError, ValueError, OSError) as exc:
        return w.SinksState(id=request.id, error=str(exc)[:1000])
    return w.SinksState(id=request.id, sent=sent)


async def run(sock: socket.socket, configure: Callable[[w.Start], None]) -> None:
    """Serve the server at the other end of `sock` until it says stop or goes away;
    `configure` sets the process up (logging) from the `Start` record."""
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=w.MAX_FRAME_BYTES + 64)
    body = await w.read_frame(reader)
    if body is None:
        return
    start = w.decode_to_worker(body)
    if not isinstance(start, w.Start):
        raise w.WireError(f"the first record is {type(start).__name__}, not start")
    configure(start)
    structlog.contextvars.bind_contextvars(worker=start.worker, node_id=start.node_id)
    recordings = Path(start.recordings_dir) if start.recordings_dir is not None else None
    link = ParentLink(writer)
    fabric = (
        FabricEndpoint(start.worker, start.fabric_path, start.fabric_siblings)
        if start.fabric_path is not None
        else None
    )
    service = MediaService(
        config=start.media,
        clock=time.time,
        evidence=link if start.evidence else None,
        recordings_dir=recordings,
        recorder=link,
        fabric=fabric,
    )
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def carry_out(signal: w.Signal) -> None:
        try:
            await service.signal(signal.user, signal.message)
        except ClientError as exc:
            link.send(w.Signalled(id=signal.id, code=exc.code, reason=exc.reason, field=exc.field))
        except Exception:
            log.exception("media message failed", user=signal.user)
            link.send(w.Signalled(id=signal.id, internal=True))
        else:
            link.send(w.Signalled(id=signal.id))
        # Peers come and go with negotiations: the server's figures follow at once.
        link.send(_load(service))

    async def serve() -> None:
        # Recover first: what a killed predecessor left is filed through the server (whose
        # answers the loop below is already reading); only then is the worker ready.
        await service.start(link.deliver)
        link.send(w.Ready(worker=start.worker, pid=os.getpid()))
        log.info("media worker ready", pid=os.getpid())
        while True:
            link.send(_load(service))
            await asyncio.sleep(LOAD_INTERVAL_S)

    async def read_records() -> bool:
        """Carry out the server's records until `stop` (True) or the socket's end (False)."""
        while True:
            body = await w.read_frame(reader)
            if body is None:
                return False
            try:
                record = w.decode_to_worker(body)
            except w.WireError as exc:
                # The server's bug, but the calls here go on: the frame is skipped, loudly.
                log.error("bad frame from the server refused", reason=str(exc))
                continue
            match record:
                case w.RoomChanged(room=room):
                    service.room_changed(room)
                    link.send(_load(service))
                case w.Signal():
                    spawn(carry_out(record))
                case w.ConferencePlacement(conference_id=conference, home=home, where=where):
                    service.conference_placement(
                        conference,
                        home,
                        where,
                        records=record.records,
                        feeds=record.feeds,
                        stage=record.stage,
                    )
                case w.Registered():
                    link.registered(record)
                case w.LoadQuery():
                    link.send(_load(service))
                case w.Sinks():
                    link.send(_sinks(service, record))
                case w.Stop():
                    return True
                case w.Start():
                    raise w.WireError("start sent twice")
            await writer.drain()

    spawn(serve())
    try:
        if await read_records():
            log.info("media worker stopping")
            # The calls' recordings are filed through the server as they close: its answers
            # are read while the service stops.
            answers = asyncio.get_running_loop().create_task(read_records())
            try:
                await service.stop()
            finally:
                answers.cancel()
        else:
            log.info("server gone: media worker stops")
    finally:
        link.server_gone()
        for task in list(tasks):
            task.cancel()
        await service.stop()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


__all__ = ["LOAD_INTERVAL_S", "ParentLink", "run"]
