"""A conference member's track on another media worker, as the fabric brings it
(media.span): to this worker's slots it is a Publication like any other, so local
subscriptions renumber, protect, send and answer NACKs from their own history as for a local
source. Its keyframe requests go along the fabric, paced as a publication paces its PLIs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.fabric_frames import Packet
from media.forwarder import Publication

_RATE: Final = {"audio": 48_000, "video": 90_000}


class RemotePublication(Publication):
    """A member's track on another worker, as the fabric brings it: to this worker's slots it
    is a Publication like any other."""

    def __init__(
        self,
        *,
        owner: str,
        kind: str,
        mime_type: str,
        keyframe_interval: float,
        clock: Callable[[], float],
        ask: Callable[[RemotePublication], None],
    ) -> None:
        super().__init__(
            owner=owner, kind=kind, receiver=None, keyframe_interval=keyframe_interval, clock=clock
        )
        self._mime_type = mime_type
        self._ask = ask

    def feed(self, frame: Packet) -> bool:
        """One packet from the fabric; True if it was the first (the track is usable now)."""
        first = self.codec is None
        if not first and not self.subscriptions and not self.sinks and self.on_level is None:
            # Nobody here takes it now (home with no local viewer, no recording): counted,
            # and a keyframe noted, without making a packet of it.
            self.packets_received += 1
            if frame.keyframe_start and self.kind == "video":
                self.keyframes.keyframe_seen()
            return False
        if first:
            channels = 2 if self.kind == "audio" else None
            self.codec = RTCRtpCodecParameters(
                mimeType=self._mime_type,
                clockRate=_RATE[self.kind],
                channels=channels,
                payloadType=frame.payload_type,
            )
        assert self.codec is not None
        packet = RtpPacket(
            payload_type=frame.payload_type,
            marker=int(frame.marker),
            sequence_number=frame.sequence_number,
            timestamp=frame.timestamp,
            payload=frame.payload,
        )
        if frame.audio_level is not None:
            packet.extensions.audio_level = frame.audio_level
        self.packets_received += 1
        self.fan_out(packet, self.codec, frame.keyframe_start)
        return first

    def _send_pli(self) -> None:
        # Not to a publisher: along the fabric, towards the worker that has one.
        self.keyframes_requested += 1
        self._ask(self)
