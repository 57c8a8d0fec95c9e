"""One track's Matroska file: encoded frames muxed as they are, through PyAV, never transcoded.

The frames are written to a PyAV stream that has no encoder: `add_mux_stream` for VP8 and
H264. Opus is the exception: Matroska needs its `OpusHead` as the track's CodecPrivate and
PyAV 18 offers no way to set a mux-only stream's extradata, so the audio stream is a libopus
stream whose encoder is opened once (which produces the OpusHead) and never fed; packets are
still muxed untouched.

The header, written before the first frame, gives the video's picture size, so the file is
opened at the first frame (for video, a keyframe: media.reassembly starts there). A browser
that changes resolution mid-call sends a keyframe with the new size, which decoders follow.
Muxing a frame is a memory copy and, now and then, a buffered write: cheap enough for the
event loop. How the file survives a crash (its muxer options) is media.spool's to say.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Final

import av

from media.bitstream import CLOCK_OF, OPUS, OPUS_CLOCK, Kind, video_size
from media.reassembly import EncodedFrame

MATROSKA_VIDEO: Final = "video/x-matroska"
MATROSKA_AUDIO: Final = "audio/x-matroska"
MEDIA_TYPE_OF: Final[dict[Kind, str]] = {"video": MATROSKA_VIDEO, "audio": MATROSKA_AUDIO}


class MatroskaTrack:
    """A Matroska file of one track in codec `name` (VP8, H264 or OPUS), opened at its first
    frame. `write` and `close` raise av.FFmpegError or OSError (a full disk, say)."""

    def __init__(self, path: Path, name: str, *, title: str, options: Mapping[str, str]) -> None:
        self.path = path
        self.name = name
        self.title = title
        self.options = dict(options)
        self.time_base = Fraction(1, CLOCK_OF[name])
        self.container: av.container.OutputContainer | None = None
        self.stream: av.stream.Stream | None = None

    def _open(self, first: EncodedFrame) -> None:
        container = av.open(str(self.path), "w", format="matroska", options=self.options)
        self.container = container
        started = dt.datetime.fromtimestamp(first.received_at, dt.UTC)
        container.metadata["title"] = self.title
        container.metadata["creation_time"] = started.isoformat()
        if self.name == OPUS:
            stream: av.stream.Stream = container.add_stream(
                "libopus", rate=OPUS_CLOCK, layout="stereo"
            )
        else:
            width, height = video_size(self.name, first.data)
            stream = container.add_mux_stream(self.name.lower(), width=width, height=height)
        stream.time_base = self.time_base
        self.stream = stream

    def write(self, frame: EncodedFrame) -> None:
        if self.container is None:
            self._open(frame)
        assert self.container is not None
        assert self.stream is not None
        packet = av.Packet(frame.data)
        packet.stream = self.stream
        packet.time_base = self.time_base
        packet.pts = packet.dts = frame.pts
        packet.is_keyframe = frame.keyframe
        self.container.mux_one(packet)

    @property
    def opened(self) -> bool:
        return self.container is not None

    def close(self) -> None:
        """Writes what the muxer holds and the file's index. Blocking file I/O."""
        if self.container is not None:
            self.container.close()


__all__ = ["MATROSKA_AUDIO", "MATROSKA_VIDEO", "MEDIA_TYPE_OF", "MatroskaTrack"]
