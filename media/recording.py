"""Recording a call without transcoding: RTP packets of each track in, one Matroska file per
track out, finished, fsynced and hashed. This module composes the parts and owns the locking:
media.reassembly makes whole frames of packets, media.matroska muxes them, media.spool names
the files and makes them durable.

One file per track (`<call>-<n>-<kind>.mkv`). A Matroska header lists every track and is
written before the first frame; PyAV cannot add a stream after it, and participants join and
leave during a call. Buffering until every track is known cannot be bounded (a supervisor may
join an hour in), and restarting the file for each join would need a keyframe from every video
track at once. Separate files need no coordination: each starts at its own first frame
(video: its first keyframe), and each gets its own `RecordingResult` (server start and stop
times, SHA-256) so that they can be registered and aligned on the server's clock.

Threads: `add_track`, `on_packet` and `needs_keyframe` are for the event loop; muxing a
frame is cheap enough for it. `close` and `close_track` finish files, fsync and hash them:
blocking file I/O, meant to be called through `asyncio.to_thread`. Packets that arrive for a
track while it is being closed are dropped, never waited for, so the event loop does not
block on the closing thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import av
import structlog
from aiortc import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media import spool
from media.bitstream import KIND_OF, Kind, codec_key
from media.matroska import MEDIA_TYPE_OF, MatroskaTrack
from media.reassembly import EncodedFrame, FrameAssembler

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RecordingResult:
    """One finished file: a track of a call. Times are the server's, Unix seconds:
    `started_at` when its first frame arrived, `stopped_at` when it was closed."""

    path: Path
    sha256: str
    size: int
    started_at: float
    stopped_at: float
    call_id: str
    track_id: str
    kind: Kind
    # The RTP codec's MIME type, e.g. "video/VP8", "audio/opus".
    codec: str
    frames: int
    # None: the file was finished cleanly. Otherwise why writing stopped early; the file
    # holds what was written until then.
    error: str | None = None

    @property
    def media_type(self) -> str:
        return MEDIA_TYPE_OF[self.kind]

    @property
    def file_name(self) -> str:
        return self.path.name


class _TrackFile:
    """One track of the call: its frames, its file, and what is known of both."""

    def __init__(
        self,
        path: Path,
        *,
        call_id: str,
        track_id: str,
        codec: RTCRtpCodecParameters,
    ) -> None:
        self.path = path
        self.call_id = call_id
        self.track_id = track_id
        self.codec = codec
        self.assembler = FrameAssembler(codec)
        # Written through as it goes (media.spool): a server killed mid-call leaves a file
        # that decodes up to about a second before (media.capture registers it at the next
        # start).
        self.file = MatroskaTrack(
            path,
            self.assembler.name,
            title=f"call {call_id} track {track_id}",
            options=spool.WRITE_THROUGH,
        )
        self.lock = threading.Lock()
        self.closed = False
        self.started_at: float | None = None
        self.frames = 0
        self.error: str | None = None

    def on_packet(self, packet: RtpPacket, now: float) -> None:
        for frame in self.assembler.add(packet, now):
            self._write(frame)

    def _write(self, frame: EncodedFrame) -> None:
        if self.error is not None:
            return
        try:
            self.file.write(frame)
            if self.frames == 0:
                self.started_at = frame.received_at
            self.frames += 1
        except (av.FFmpegError, OSError) as exc:
            # Disk full, say: keep what is written, stop writing, report it at close.
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("recording stopped", call=self.call_id, track=self.track_id, exc_info=exc)

    def finish(self, now: float) -> RecordingResult | None:
        """Blocking: writes what is left and the file's index, fsyncs and hashes it. None
        (and no file) if not one frame was written."""
        for frame in self.assembler.flush(now):
            self._write(frame)
        if self.file.opened:
            try:
                self.file.close()
            except (av.FFmpegError, OSError) as exc:
                self.error = self.error or f"{type(exc).__name__}: {exc}"
                log.error("recording not finished", call=self.call_id, track=self.track_id)
        if self.started_at is None:
            self.path.unlink(missing_ok=True)
            return None
        sha256, size = spool.seal(self.path)
        return RecordingResult(
            path=self.path,
            sha256=sha256,
            size=size,
            started_at=self.started_at,
            stopped_at=now,
            call_id=self.call_id,
            track_id=self.track_id,
            kind=self.assembler.kind,
            codec=self.codec.mimeType,
            frames=self.frames,
            error=self.error,
        )


class CallRecording:
    """A call's recording: one Matroska file per track, in directory `path`.

    `add_track`, `on_packet` and `needs_keyframe` are for the event loop; `close_track` and
    `close` do blocking file I/O (run them with `asyncio.to_thread`)."""

    def __init__(self, path: Path, call_id: str, started_at: float) -> None:
        self.dir = path
        self.call_id = call_id
        self.started_at = started_at
        self._tracks: dict[str, _TrackFile] = {}
        # Guards _tracks and _closed against close() in a worker thread; held for a dict
        # operation only, never for I/O, so the event loop never waits on it for long.
        self._registry = threading.Lock()
        self._added = 0
        self._closed = False
        path.mkdir(parents=True, exist_ok=True)

    def add_track(self, track_id: str, kind: Kind, codec: RTCRtpCodecParameters) -> None:
        """Record `track_id` from now on; its file starts at its first (key)frame. Raises
        ValueError for a codec other than VP8, H264 or Opus, a kind that does not match it,
        or a track already recorded (close_track it first to start a new file)."""
        if KIND_OF[codec_key(codec)] != kind:
            raise ValueError(f"{codec.mimeType} is not {kind}")
        with self._registry:
            if self._closed:
                raise ValueError("the recording is closed")
            if track_id in self._tracks:
                raise ValueError(f"track {track_id!r} is already recorded")
            path = self._new_path(kind)
            self._tracks[track_id] = _TrackFile(
                path, call_id=self.call_id, track_id=track_id, codec=codec
            )

    def _new_path(self, kind: Kind) -> Path:
        # Never an existing file: av.open would truncate it, and it may be a recording of
        # this call from an earlier session that is not registered yet.
        while True:
            self._added += 1
            path = spool.track_path(self.dir, self.call_id, self._added, kind)
            if not path.exists():
                return path

    def on_packet(self, track_id: str, packet: RtpPacket, now: float) -> None:
        """One received RTP packet of `track_id` (RTX already unwrapped), in any order.
        Packets of tracks not recorded, or being closed, are ignored."""
        track = self._tracks.get(track_id)
        if track is None or not track.lock.acquire(blocking=False):
            return
        try:
            if not track.closed:
                track.on_packet(packet, now)
        finally:
            track.lock.release()

    def needs_keyframe(self, track_id: str) -> bool:
        """True while a recorded video track waits for a keyframe (before its first, or
        after a loss): ask its publisher for one (PLI)."""
        track = self._tracks.get(track_id)
        return track is not None and not track.closed and track.assembler.needs_keyframe

    def tracks(self) -> list[str]:
        return list(self._tracks)

    def close_track(self, track_id: str, now: float) -> RecordingResult | None:
        """Finish one track's file (its publisher left). Blocking file I/O. None if the
        track is unknown or recorded nothing."""
        with self._registry:
            track = self._tracks.pop(track_id, None)
        if track is None:
            return None
        return self._finish(track, now)

    def close(self, now: float) -> list[RecordingResult]:
        """Finish every file, in the order the tracks were added. Blocking file I/O.
        Tracks that recorded nothing have no result; idempotent."""
        with self._registry:
            self._closed = True
            tracks = list(self._tracks.values())
            self._tracks.clear()
        results = []
        for track in tracks:
            result = self._finish(track, now)
            if result is not None:
                results.append(result)
        return results

    @staticmethod
    def _finish(track: _TrackFile, now: float) -> RecordingResult | None:
        with track.lock:
            track.closed = True
            return track.finish(now)


__all__ = ["CallRecording", "RecordingResult"]
