"""What the server keeps of a call's media: its recording and the snapshots taken of it,
each registered as evidence of the call (media.evidence_sink).

Every published track is recorded to a file of its own (media.recording says why), from its
first keyframe, while the call runs; when the track goes away or the call ends the file is
finished, hashed and registered, and the server's working copy removed (the evidence store
keeps its own). Every video track also keeps its latest keyframe, so a snapshot is one decode.
A call without a case number is filed under its call id, so nothing goes unrecorded.

Crashes: next to its files a call's recording keeps `<call>.call.json`, the facts it is filed
under, removed once every file is registered (media.spool owns the files and their names). A
server killed mid-call leaves both; at start, `recover` registers whatever files a dead call
left (Matroska written so far decodes up to where it stopped) and removes them, so a crash
loses at most what was not yet written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media import spool
from media.bitstream import Kind
from media.evidence_sink import EvidenceSink, register_recording, register_snapshot
from media.forwarder import PacketSink, Publication
from media.recording import CallRecording, RecordingResult
from media.snapshot import KeyframeKeeper, snapshot_jpeg
from signalling.errors import Unavailable

log = structlog.get_logger(__name__)

# How long a snapshot waits for the fresh keyframe it asked for before using the latest one.
FRESH_KEYFRAME_S: Final = 1.5


@dataclass(frozen=True)
class CallFacts:
    call_id: str
    court: str
    officer: str
    case_number: str | None

    @property
    def filed_under(self) -> str:
        return self.case_number or self.call_id


def _write_facts(directory: Path, facts: CallFacts, started_at: float) -> None:
    data = {
        "call_id": facts.call_id,
        "court": facts.court,
        "officer": facts.officer,
        "case_number": facts.case_number,
        "started_at": started_at,
    }
    spool.write_sidecar(directory, facts.call_id, data)


@dataclass(frozen=True)
class Snapshot:
    evidence_id: str
    sha256: str
    taken_at: float


class CallCapture:
    def __init__(
        self,
        *,
        facts: CallFacts,
        sink: EvidenceSink,
        recordings_dir: Path | None,
        clock: Callable[[], float],
    ) -> None:
        self.facts = facts
        self.sink = sink
        self.clock = clock
        self.recordings_dir = recordings_dir
        self.recording = None
        if recordings_dir is not None:
            started = clock()
            _write_facts(recordings_dir, facts, started)
            self.recording = CallRecording(recordings_dir, facts.call_id, started)
        self.keepers: dict[str, tuple[Publication, KeyframeKeeper]] = {}
        # Publication track id -> (the publication, its file's track, its sink, its on_close).
        self._recorded: dict[str, tuple[Publication, str, PacketSink, Callable[[], None]]] = {}
        self._fresh: dict[str, asyncio.Event] = {}
        self._serial = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def published(self, pub: Publication) -> None:
        """Start recording `pub` and, for video, keeping its keyframes."""
        codec = pub.codec
        if codec is None or pub.kind not in ("audio", "video"):
            return
        self.record(pub)
        if pub.kind == "video":
            fresh = self._fresh.setdefault(pub.track_id, asyncio.Event())
            keeper = KeyframeKeeper(codec, on_keyframe=lambda _data, _at: fresh.set())
            self.keepers[pub.track_id] = (pub, keeper)
            pub.sinks.append(lambda packet, _codec, now: keeper.on_packet(packet, now))

    def record(self, pub: Publication) -> None:
        """Record `pub` to a file of its own until it closes or `stop` (a conference records
        only what it forwards, and only while a moderator has recording on)."""
        codec, recording = pub.codec, self.recording
        if codec is None or recording is None or pub.track_id in self._recorded:
            return
        kind: Kind = "audio" if pub.kind == "audio" else "video"
        track = f"{pub.track_id}#{next(self._serial)}"
        try:
            recording.add_track(track, kind, codec)
        except ValueError as exc:
            log.warning("track not recorded", call_id=self.facts.call_id, reason=str(exc))
            return

        def sink(packet: RtpPacket, _codec: RTCRtpCodecParameters, now: float) -> None:
            recording.on_packet(track, packet, now)
            if recording.needs_keyframe(track):
                # The recorder's own request, one per file: paced, never held back by a
                # conference's roll-in (which holds joiners' requests for its periodic
                # keyframe, seconds away: a short recording would have no video).
                pub.pace_keyframe()

        def closed() -> None:
            self.stop(pub)

        pub.sinks.append(sink)
        pub.on_close.append(closed)
        self._recorded[pub.track_id] = (pub, track, sink, closed)

    def recorded(self) -> list[Publication]:
        return [entry[0] for entry in self._recorded.values()]

    def stop(self, pub: Publication) -> None:
        """Stop recording `pub`: its file is finished and registered."""
        entry = self._recorded.get(pub.track_id)
        if entry is None or entry[0] is not pub:
            return
        del self._recorded[pub.track_id]
        _, track, sink, closed = entry
        if sink in pub.sinks:
            pub.sinks.remove(sink)
        if closed in pub.on_close:
            pub.on_close.remove(closed)
        self._finish_track(track)

    async def snapshot(self, of: str, requested_by: str) -> Snapshot:
        entry = self.keepers.get(f"{of}:video")
        if entry is None or entry[0].codec is None:
            raise Unavailable("no video from that member", field="of")
        pub, keeper = entry
        fresh = self._fresh[pub.track_id]
        asked = self.clock()
        fresh.clear()
        pub.pace_keyframe()
        # A keyframe from now shows the scene now; the latest one may be minutes old
        # (browsers send keyframes only when asked).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fresh.wait(), FRESH_KEYFRAME_S)
        frame = keeper.keyframe_since(asked) or keeper.latest()
        taken_at = keeper.latest_at
        if frame is None or taken_at is None:
            raise Unavailable("no picture from that member yet", field="of")
        assert pub.codec is not None
        jpeg = await asyncio.to_thread(snapshot_jpeg, pub.codec, frame)
        evidence_id = await register_snapshot(
            self.sink,
            jpeg,
            call_id=self.facts.call_id,
            case_number=self.facts.filed_under,
            court=self.facts.court,
            officer=self.facts.officer,
            captured_at=taken_at,
            requested_by=requested_by,
        )
        return Snapshot(evidence_id, hashlib.sha256(jpeg).hexdigest(), taken_at)

    def _finish_track(self, track: str) -> None:
        recording = self.recording
        if recording is None:
            return
        now = self.clock()

        async def finish() -> None:
            result = await asyncio.to_thread(recording.close_track, track, now)
            if result is not None:
                await self._register(result)

        task = asyncio.get_running_loop().create_task(finish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> list[str]:
        """Finish every recording and register it; returns the evidence ids."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.recording is None:
            return []
        results = await asyncio.to_thread(self.recording.close, self.clock())
        ids = []
        for result in results:
            evidence_id = await self._register(result)
            if evidence_id is not None:
                ids.append(evidence_id)
        if self.recordings_dir is not None and not spool.track_files(
            self.recordings_dir, self.facts.call_id
        ):
            spool.remove_sidecar(spool.sidecar_path(self.recordings_dir, self.facts.call_id))
        return ids

    async def _register(self, result: RecordingResult) -> str | None:
        try:
            evidence_id = await register_recording(
                self.sink,
                result,
                case_number=self.facts.filed_under,
                court=self.facts.court,
                officer=self.facts.officer,
            )
        except Exception:
            # Kept on disk, to be registered by hand; the log says where.
            log.exception(
                "recording not registered",
                call_id=self.facts.call_id,
                path=str(result.path),
                sha256=result.sha256,
            )
            return None
        log.info(
            "recording registered",
            call_id=self.facts.call_id,
            evidence_id=evidence_id,
            track=result.track_id,
            frames=result.frames,
        )
        with contextlib.suppress(OSError):
            result.path.unlink()
        return evidence_id


async def recover(directory: Path, sink: EvidenceSink, clock: Callable[[], float]) -> list[str]:
    """Register the recordings that calls of a server that died left in `directory`.
    Call only at start, before any call runs. Returns the evidence ids registered."""
    ids: list[str] = []
    for facts_file, facts, files in await asyncio.to_thread(_leftovers, directory):
        capture = CallCapture(facts=facts, sink=sink, recordings_dir=None, clock=clock)
        left = 0
        for result in files:
            evidence_id = await capture._register(result)
            if evidence_id is None:
                left += 1
            else:
                ids.append(evidence_id)
        if not left:
            await asyncio.to_thread(spool.remove_sidecar, facts_file)
        log.info("recordings recovered", call_id=facts.call_id, files=len(files), left=left)
    return ids


def _leftovers(directory: Path) -> list[tuple[Path, CallFacts, list[RecordingResult]]]:
    """Each dead call's facts file, facts and unregistered files (blocking I/O)."""
    found = []
    for facts_file in spool.sidecars(directory):
        try:
            data = spool.read_sidecar(facts_file)
            case = data["case_number"]
            facts = CallFacts(
                str(data["call_id"]),
                str(data["court"]),
                str(data["officer"]),
                None if case is None else str(case),
            )
            started_at = float(data["started_at"])
        except (OSError, ValueError, KeyError, TypeError):
            log.error("unreadable recording facts left alone", path=str(facts_file))
            continue
        files = [
            result
            for path in spool.track_files(directory, facts.call_id)
            if (result := _recovered(path, facts, started_at)) is not None
        ]
        found.append((facts_file, facts, files))
    return found


def _recovered(path: Path, facts: CallFacts, started_at: float) -> RecordingResult | None:
    """A file a killed server was writing, as a result to register (blocking I/O)."""
    kind: Kind = spool.track_kind(path)
    try:
        sha256 = spool.file_sha256(path)
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size == 0:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return RecordingResult(
        path=path,
        sha256=sha256,
        size=stat.st_size,
        started_at=started_at,
        stopped_at=stat.st_mtime,
        call_id=facts.call_id,
        track_id=path.stem,
        kind=kind,
        codec="",
        frames=0,
        error="recovered after the server stopped without finishing it",
    )
