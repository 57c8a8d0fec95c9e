"""The media benchmark's clients: a cheap synthetic publisher, subscribers that count frames
without decoding them, the negotiation with each target, and the worker processes that host
them, driven by `bench.relay` over a pipe.

- Publisher: a few seconds of synthetic 640x480 VP8 (about 1 Mbit/s, 110 packets/s) is
  encoded ONCE when the process starts; `ClipTrack` then loops the encoded frames at 30 fps
  as `av.Packet`s, which aiortc's `RTCRtpSender` packs with the codec's `pack()` without
  encoding. The clip's only keyframe is its first frame: a keyframe request (PLI/FIR) makes
  the track jump back to it, so the publisher costs the same whatever the server asks for.
- Subscriber: `count_frames_without_decoding()` replaces the receiver's decoder (in the
  subscriber processes only) by one that hands each reassembled encoded frame to the track
  as it is; the subscriber counts what its track yields.
- Targets: `commandcenter` (our server: the hub WebSocket protocol of docs/protocol.md and its
  media negotiation; the officer publishes, the operator and supervisors subscribe),
  `mediarelay` (bench.media_baseline's offer/answer over HTTP) and `janus` (the VideoRoom
  plugin over Janus's HTTP API: the publisher offers, Janus offers to each subscriber).
  Every client offers VP8 only and puts all its candidates in its SDP.

Commands over the pipe, one reply each (`{"ok": true, ...}` or `{"ok": false, "error": ...}`):
`publish` (start the publisher; replies with what subscribers need to find it), `subscribe`
(start subscribers; replies once each has negotiated), `counts` (frames so far per
subscriber, when they were read, and the clients' errors), `stats` (the publisher's
counters) and `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import Any, Final, Literal, Protocol, cast

import aiohttp
import aiortc.rtcrtpreceiver
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.frame import Frame

from bench._common import BenchError, Reply, Worker, raise_nofile_limit
from commandcenter.auth import Role, issue_token
from media.ice import use_addresses

TargetKind = Literal["commandcenter", "mediarelay", "janus"]

WIDTH: Final = 640
HEIGHT: Final = 480
FPS: Final = 30
BITRATE: Final = 1_000_000
CLIP_FRAMES: Final = 90
# RTP's video clock.
_VIDEO_TIME_BASE: Final = Fraction(1, 90_000)
# Subscribers hosted by one worker process, at most.
SUBSCRIBERS_PER_PROCESS: Final = 8
# The commandcenter target's users: all of one basic court, supervisors of its parent.
OFFICER_COURT: Final = "P0101"
SUPERVISOR_COURT: Final = "P01"
TOKEN_TTL_S: Final = 3600.0
NEGOTIATION_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class TargetSpec:
    """Where a worker's clients go and how they identify themselves."""

    kind: TargetKind
    # The target's HTTP / WebSocket port on 127.0.0.1.
    port: int
    # The address the clients offer as their ICE host candidate.
    ice_address: str
    # commandcenter: the HS256 secret the server verifies tokens with.
    secret: str = ""


# ---- the synthetic publisher ------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """Encoded VP8 frames to loop; `keyframes` are the indexes of the keyframes."""

    frames: tuple[bytes, ...]
    keyframes: tuple[int, ...]

    def bits_per_s(self) -> float:
        return 8.0 * sum(len(f) for f in self.frames) * FPS / len(self.frames)


def _texture_frame(index: int) -> av.VideoFrame:
    """A grey-scale texture scrolling diagonally: about 1 Mbit/s of VP8 at 640x480@30 under
    the encoder settings below (measured: 950 kbit/s, 110 packets/s)."""
    row = bytes((x * 7 + (x // 40) * 50) & 0xFF for x in range(2 * WIDTH))
    shift = (index * 4) % WIDTH
    luma = bytearray()
    for y in range(HEIGHT):
        start = (shift + y // 4) % WIDTH
        luma += row[start : start + WIDTH]
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    frame.planes[0].update(bytes(luma))
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    frame.planes[1].update(chroma)
    frame.planes[2].update(chroma)
    frame.pts = index
    frame.time_base = Fraction(1, FPS)
    return frame


def encode_clip(frames: int = CLIP_FRAMES) -> Clip:
    """Encode `frames` frames once (about 0.3 s of CPU), with aiortc's realtime VP8 settings
    in constant bit rate and a keyframe only at the start."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = WIDTH
    codec.height = HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = BITRATE
    codec.framerate = Fraction(FPS)
    codec.time_base = Fraction(1, FPS)
    codec.gop_size = 3000
    codec.options = {
        "bufsize": str(BITRATE),
        "cpu-used": "-6",
        "deadline": "realtime",
        "lag-in-frames": "0",
        "minrate": str(BITRATE),
        "maxrate": str(BITRATE),
        "overshoot-pct": "15",
        "undershoot-pct": "100",
        "static-thresh": "1",
        "partitions": "0",
    }
    packets: list[av.Packet[Any]] = []
    for index in range(frames):
        packets.extend(codec.encode(_texture_frame(index)))
    packets.extend(codec.encode(None))
    return Clip(
        frames=tuple(bytes(p) for p in packets),
        keyframes=tuple(i for i, p in enumerate(packets) if p.is_keyframe),
    )


class ClipTrack(MediaStreamTrack):
    """Loops a `Clip` at `FPS` as encoded packets; `request_keyframe()` makes the next packet
    the clip's next keyframe."""

    kind = "video"

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        if not clip.keyframes or clip.keyframes[0] != 0:
            raise BenchError("the clip must start with a keyframe")
        self._clip = clip
        self._index = 0
        self._sent = 0
        self._started: float | None = None
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        # When each request came (time.monotonic()): bench.conference's join storm.
        self.keyframe_request_times: list[float] = []

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.keyframe_request_times.append(time.monotonic())
        later = [k for k in self._clip.keyframes if k >= self._index]
        self._index = later[0] if later else self._clip.keyframes[0]

    @property
    def frames_sent(self) -> int:
        return self._sent

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = now
        else:
            # Paced on the wall clock from the start, so a late wake-up does not drift.
            due = self._started + self._sent / FPS
            if due > now:
                await asyncio.sleep(due - now)
        index = self._index
        if index in self._clip.keyframes:
            self.keyframes_sent += 1
        packet = av.Packet(self._clip.frames[index])
        packet.pts = self._sent * (90_000 // FPS)
        packet.time_base = _VIDEO_TIME_BASE
        self._index = (index + 1) % len(self._clip.frames)
        self._sent += 1
        return packet


def send_clip(transceiver: RTCRtpTransceiver, track: ClipTrack) -> None:
    """Route the sender's keyframe requests to the track: aiortc would set a flag for its
    encoder, which is never used for packets."""
    transceiver.sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]


def prefer_vp8(transceiver: RTCRtpTransceiver) -> None:
    """Offer VP8 (and its RTX) only, so every target relays the same codec."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    vp8 = [c for c in codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")]
    transceiver.setCodecPreferences(vp8)


# ---- the counting subscriber ------------------------------------------------------------


class _CountingDecoder(Decoder):
    """Passes each reassembled encoded frame on undecoded: the subscriber only counts."""

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        return [cast(Frame, encoded_frame)]


def _counting_decoder(codec: RTCRtpCodecParameters) -> Decoder:
    return _CountingDecoder()


def count_frames_without_decoding() -> None:
    """In this process, received tracks yield encoded frames instead of decoded ones.

    The receiver's decoder thread looks its decoder up in its own module's namespace, which
    re-exports it from aiortc.codecs (hence the type checker's complaint)."""
    aiortc.rtcrtpreceiver.get_decoder = _counting_decoder  # type: ignore[attr-defined]


def restrict_ice(address: str) -> None:
    """Offer only `address` as this process's host candidate (aioice skips 127.0.0.1 and
    would offer every other interface)."""
    use_addresses([address])


def new_peer_connection() -> RTCPeerConnection:
    # No ICE servers: aiortc would otherwise add a public STUN server.
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


@dataclass(eq=False)
class Subscriber:
    """One subscriber's peer connection and what its video track delivered."""

    name: str
    pc: RTCPeerConnection = field(default_factory=new_peer_connection)
    frames: int = 0
    # When the first frame arrived (time.monotonic()), or None.
    first_frame_at: float | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                task = asyncio.create_task(self._count(track))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _count(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                if self.frames == 0:
                    self.first_frame_at = time.monotonic()
                self.frames += 1

    async def close(self) -> None:
        await self.pc.close()
        for task in list(self._tasks):
            task.cancel()


async def wait_connected(pc: RTCPeerConnection, timeout_s: float = NEGOTIATION_TIMEOUT_S) -> None:
    """Return once `pc` has connected (ICE and DTLS done)."""
    deadline = time.monotonic() + timeout_s
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise BenchError(f"peer connection {pc.connectionState}, not connected")
        await asyncio.sleep(0.02)


def _local_description(pc: RTCPeerConnection) -> RTCSessionDescription:
    """`pc`'s local description once set; aiortc gathers every candidate into it."""
    description = pc.localDescription
    if description is None:
        raise BenchError("no local description")
    return description


# ---- target: mediarelay (bench.media_baseline) ---------------------------------------------


async def _post_offer(
    http: aiohttp.ClientSession, spec: TargetSpec, path: str, pc: RTCPeerConnection
) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    offer = _local_description(pc)
    url = f"http://127.0.0.1:{spec.port}{path}"
    async with http.post(url, json={"sdp": offer.sdp, "type": offer.type}) as resp:
        if resp.status != 200:
            raise BenchError(f"{path}: HTTP {resp.status}: {await resp.text()}")
        answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))


# ---- target: janus (VideoRoom over the HTTP API) ----------------------------------------


class JanusError(BenchError):
    pass


class JanusSession:
    """One Janus session: requests over HTTP, events by long poll, matched by transaction."""

    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self._http = http
        self._root = f"http://127.0.0.1:{port}/janus"
        self._url = ""
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poll_task: asyncio.Task[None] | None = None

    async def _post(self, url: str, message: dict[str, Any]) -> dict[str, Any]:
        async with self._http.post(url, json=message) as resp:
            data: dict[str, Any] = await resp.json(content_type=None)
        if data.get("janus") == "error":
            raise JanusError(f"janus: {data.get('error')}")
        return data

    async def create(self) -> None:
        data = await self._post(self._root, {"janus": "create", "transaction": _tx()})
        self._url = f"{self._root}/{data['data']['id']}"
        self._poll_task = asyncio.create_task(self._poll())

    async def attach(self) -> str:
        """Attach a VideoRoom handle; returns its URL."""
        data = await self._post(
            self._url,
            {"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": _tx()},
        )
        return f"{self._url}/{data['data']['id']}"

    async def request(
        self, handle: str, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send a plugin request; returns the plugin's data and any JSEP, whether Janus
        answers at once (synchronous requests) or later as an event."""
        tx = _tx()
        message: dict[str, Any] = {"janus": "message", "transaction": tx, "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        # Registered first: the event can come back before the POST's reply is read.
        future = asyncio.get_running_loop().create_future()
        self._pending[tx] = future
        try:
            data = await self._post(handle, message)
            if data.get("janus") == "ack":
                data = await asyncio.wait_for(future, NEGOTIATION_TIMEOUT_S)
        finally:
            self._pending.pop(tx, None)
        result: dict[str, Any] = data.get("plugindata", {}).get("data", {})
        if "error" in result:
            raise JanusError(f"janus videoroom: {result['error']} ({result.get('error_code')})")
        return result, data.get("jsep")

    async def _poll(self) -> None:
        while True:
            try:
                async with self._http.get(
                    self._url, params={"maxev": "1", "rid": str(time.time_ns())}
                ) as resp:
                    event = await resp.json(content_type=None)
            except (aiohttp.ClientError, json.JSONDecodeError):
                await asyncio.sleep(0.1)
                continue
            future = self._pending.get(event.get("transaction", ""))
            if future is not None and not future.done() and event.get("janus") == "event":
                future.set_result(event)

    async def destroy(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
        if self._url:
            with contextlib.suppress(aiohttp.ClientError, BenchError):
                await self._post(self._url, {"janus": "destroy", "transaction": _tx()})


def _tx() -> str:
    return secrets.token_hex(6)


def _jsep(description: RTCSessionDescription) -> dict[str, Any]:
    # Janus 1.1.2 keeps the LAST fingerprint of an m-section and verifies DTLS with SHA-256
    # or SHA-1 only; aiortc lists SHA-256, -384 and -512, so only the first may go.
    lines = description.sdp.split("\r\n")
    sdp = "\r\n".join(
        ln for ln in lines if not ln.startswith("a=fingerprint:") or "sha-256" in ln.lower()
    )
    # The SDP holds every candidate: Janus is not to wait for trickled ones.
    return {"type": description.type, "sdp": sdp, "trickle": False}


# ---- target: commandcenter (the hub WebSocket and its media negotiation) -----------------


class CcClient:
    """One user's hub WebSocket: requests matched to replies by id, pushes to handlers, and
    the server's media offers answered in order by the user's peer connection."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        spec: TargetSpec,
        user: str,
        role: Role,
        court: str,
        pc: RTCPeerConnection,
    ) -> None:
        self._http = http
        self._spec = spec
        self.user = user
        self._role = role
        self._court = court
        self.pc = pc
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = 0
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # One negotiation at a time: the server's offer may arrive right behind its answer
        # to ours, before that answer is applied.
        self._negotiating = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._welcome = asyncio.get_running_loop().create_future()
        # Pushes other than offers, by type, for the role's own logic.
        self.on_push: Callable[[dict[str, Any]], None] = lambda msg: None
        self.errors: list[str] = []

    async def connect(self) -> None:
        token = issue_token(
            self._spec.secret,
            user=self.user,
            role=self._role,
            court=self._court,
            name=self.user,
            ttl_s=TOKEN_TTL_S,
            now=time.time(),
        )
        url = f"http://127.0.0.1:{self._spec.port}/ws"
        self._ws = await self._http.ws_connect(
            url, params={"token": token, "device": "bench", "app": "bench-relay", "v": "1"}
        )
        self._spawn(self._read())
        self._spawn(self._answer_offers())
        await asyncio.wait_for(self._welcome, NEGOTIATION_TIMEOUT_S)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send `message` with a fresh id; returns its reply, raising on an `error`."""
        if self._ws is None:
            raise BenchError(f"{self.user}: not connected")
        self._ids += 1
        msg_id = f"{self.user}-{self._ids}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            await self._ws.send_str(json.dumps({**message, "id": msg_id}))
            reply = await asyncio.wait_for(future, NEGOTIATION_TIMEOUT_S)
            while reply.get("type") == "conference_waiting":
                # Let in at the server's join pace: `conference_joined` quotes the same id.
                future = asyncio.get_running_loop().create_future()
                self._pending[msg_id] = future
                reply = await asyncio.wait_for(
                    future, NEGOTIATION_TIMEOUT_S + float(reply["wait_s"])
                )
        finally:
            self._pending.pop(msg_id, None)
        if reply.get("type") == "error":
            raise BenchError(f"{self.user}: {message['type']} refused: {reply}")
        return reply

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            msg: dict[str, Any] = json.loads(frame.data)
            ref = msg.get("ref")
            kind = msg.get("type")
            if isinstance(ref, str) and ref in self._pending:
                future = self._pending[ref]
                if not future.done():
                    future.set_result(msg)
            elif kind == "welcome":
                if not self._welcome.done():
                    self._welcome.set_result(msg)
            elif kind == "offer":
                self._offers.put_nowait(msg)
            else:
                self.on_push(msg)
        if not self._welcome.done():
            self._welcome.set_exception(
                BenchError(f"{self.user}: closed before welcome ({self._ws.close_code})")
            )

    async def offer(self, call_id: str) -> None:
        """Send this peer connection's own offer and apply the server's answer."""
        async with self._negotiating:
            await self.pc.setLocalDescription(await self.pc.createOffer())
            offer = _local_description(self.pc)
            reply = await self.request({"type": "offer", "call_id": call_id, "sdp": offer.sdp})
            answer = RTCSessionDescription(sdp=reply["sdp"], type="answer")
            await self.pc.setRemoteDescription(answer)

    async def _answer_offers(self) -> None:
        while True:
            msg = await self._offers.get()
            try:
                await self._answer(msg)
            except Exception as exc:  # kept for the orchestrator; one bad offer is reported
                self.errors.append(f"{self.user}: answering the server's offer: {exc!r}")

    async def _answer(self, msg: dict[str, Any]) -> None:
        async with self._negotiating:
            offer = RTCSessionDescription(sdp=msg["sdp"], type="offer")
            await self.pc.setRemoteDescription(offer)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = _local_description(self.pc)
            await self.request({"type": "answer", "call_id": msg["call_id"], "sdp": answer.sdp})

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None:
            await self._ws.close()


# ---- the roles, per target ----------------------------------------------------------------


class Publisher:
    """The one publisher of a run, for any target."""

    def __init__(self, http: aiohttp.ClientSession, spec: TargetSpec, clip: Clip) -> None:
        self._http = http
        self._spec = spec
        self.track = ClipTrack(clip)
        self.pc = new_peer_connection()
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        prefer_vp8(transceiver)
        send_clip(transceiver, self.track)
        self._janus: JanusSession | None = None
        self._cc: CcClient | None = None

    async def start(self) -> Reply:
        """Publish; returns what subscribers need (`room`/`feed` for Janus, `call_id`)."""
        match self._spec.kind:
            case "mediarelay":
                await _post_offer(self._http, self._spec, "/publish", self.pc)
                published: Reply = {}
            case "janus":
                published = await self._start_janus()
            case "commandcenter":
                published = await self._start_cc()
        # Janus lists a feed only once its media is up; the others do not mind waiting.
        await wait_connected(self.pc)
        return published

    async def _start_janus(self) -> Reply:
        session = self._janus = JanusSession(self._http, self._spec.port)
        await session.create()
        handle = await session.attach()
        room = 1000 + secrets.randbelow(1_000_000)
        await session.request(
            handle,
            {
                "request": "create",
                "room": room,
                "publishers": 1,
                "videocodec": "vp8",
                "bitrate": 0,
                # No periodic keyframe requests: every target gets keyframes on demand only.
                "fir_freq": 0,
                "record": False,
                "is_private": True,
                "permanent": False,
            },
        )
        await self.pc.setLocalDescription(await self.pc.createOffer())
        data, jsep = await session.request(
            handle,
            {"request": "joinandconfigure", "ptype": "publisher", "room": room},
            _jsep(_local_description(self.pc)),
        )
        if jsep is None:
            raise BenchError(f"janus: no answer to the publisher's offer: {data}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="answer"))
        return {"room": room, "feed": data["id"]}

    async def _start_cc(self) -> Reply:
        cc = self._cc = CcClient(
            self._http, self._spec, "o-1", Role("officer"), OFFICER_COURT, self.pc
        )
        answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_push(msg: dict[str, Any]) -> None:
            if msg.get("type") == "call_answered" and not answered.done():
                answered.set_result(msg["call"]["call_id"])
            elif msg.get("type") == "call_ended" and not answered.done():
                answered.set_exception(BenchError(f"the call ended unanswered: {msg}"))

        cc.on_push = on_push
        await cc.connect()
        await cc.request({"type": "call_center"})
        call_id = await asyncio.wait_for(answered, NEGOTIATION_TIMEOUT_S)
        await cc.offer(call_id)
        return {"call_id": call_id}

    def stats(self) -> Reply:
        return {
            "frames_sent": self.track.frames_sent,
            "keyframe_requests": self.track.keyframe_requests,
            "keyframes_sent": self.track.keyframes_sent,
            "errors": [] if self._cc is None else self._cc.errors,
        }

    async def close(self) -> None:
        if self._cc is not None:
            await self._cc.close()
        await self.pc.close()
        if self._janus is not None:
            await self._janus.destroy()


class SubscriberClient:
    """One subscriber of a run and its negotiation with the target."""

    def __init__(self, http: aiohttp.ClientSession, spec: TargetSpec, index: int) -> None:
        self._http = http
        self._spec = spec
        self.index = index
        self.sub = Subscriber(name=f"s{index}")
        self._janus: JanusSession | None = None
        self._cc: CcClient | None = None

    async def start(self, published: Reply | None) -> None:
        """Join; `published` is `Publisher.start`'s reply (None for the commandcenter
        operator, who is signed in before the call is placed and answers it)."""
        match self._spec.kind:
            case "mediarelay":
                transceiver = self.sub.pc.addTransceiver("video", direction="recvonly")
                prefer_vp8(transceiver)
                await _post_offer(self._http, self._spec, "/subscribe", self.sub.pc)
            case "janus":
                await self._start_janus(_need(published))
            case "commandcenter":
                await self._start_cc(published)

    async def _start_janus(self, published: Reply) -> None:
        session = self._janus = JanusSession(self._http, self._spec.port)
        await session.create()
        handle = await session.attach()
        _, offer = await session.request(
            handle,
            {
                "request": "join",
                "ptype": "subscriber",
                "room": published["room"],
                "streams": [{"feed": published["feed"]}],
            },
        )
        if offer is None:
            raise BenchError("janus: no offer for a subscriber")
        pc = self.sub.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await session.request(
            handle,
            {"request": "start", "room": published["room"]},
            _jsep(_local_description(pc)),
        )

    async def _start_cc(self, published: Reply | None) -> None:
        operator = published is None
        role = Role("operator") if operator else Role("supervisor")
        court = OFFICER_COURT if operator else SUPERVISOR_COURT
        name = "op-1" if operator else f"sv-{self.index}"
        cc = self._cc = CcClient(self._http, self._spec, name, role, court, self.sub.pc)
        # Nothing to send: one recvonly audio m-line, as the protocol asks.
        self.sub.pc.addTransceiver("audio", direction="recvonly")
        if operator:
            cc.on_push = self._operator_push
            await cc.connect()
            return
        assert published is not None
        await cc.connect()
        await cc.request({"type": "join_call", "call_id": published["call_id"]})
        await cc.offer(published["call_id"])

    def _operator_push(self, msg: dict[str, Any]) -> None:
        """The operator accepts the call that rings and then negotiates its media."""
        cc = self._cc
        assert cc is not None
        if msg.get("type") == "call_ringing":
            call_id = msg["call"]["call_id"]

            async def accept_and_offer() -> None:
                try:
                    await cc.request({"type": "accept", "call_id": call_id})
                    await cc.offer(call_id)
                except Exception as exc:
                    cc.errors.append(f"operator: {exc!r}")

            cc._spawn(accept_and_offer())

    def errors(self) -> list[str]:
        return [] if self._cc is None else self._cc.errors

    async def close(self) -> None:
        if self._cc is not None:
            await self._cc.close()
        await self.sub.close()
        if self._janus is not None:
            await self._janus.destroy()


def _need(published: Reply | None) -> Reply:
    if published is None:
        raise BenchError("subscribe needs the publisher's reply")
    return published


# ---- the worker process -----------------------------------------------------------------


class _ClientWorker:
    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        self.http = aiohttp.ClientSession()
        self.publisher: Publisher | None = None
        self.subscribers: list[SubscriberClient] = []

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply:
        match cmd:
            case "publish":
                # Encoded here, once: the track then only loops the packets.
                clip = await asyncio.get_running_loop().run_in_executor(None, encode_clip)
                self.publisher = Publisher(self.http, self.spec, clip)
                published = await asyncio.wait_for(
                    self.publisher.start(), NEGOTIATION_TIMEOUT_S * 2
                )
                return {"published": published, "clip_kbit_s": round(clip.bits_per_s() / 1e3)}
            case "subscribe":
                new = [SubscriberClient(self.http, self.spec, i) for i in args["indexes"]]
                self.subscribers.extend(new)
                await asyncio.wait_for(
                    asyncio.gather(*(s.start(args["published"]) for s in new)),
                    NEGOTIATION_TIMEOUT_S * 2,
                )
                return {}
            case "counts":
                return {
                    # The system-wide monotonic clock: the orchestrator compares it across
                    # processes, so a reply's delay does not count as receiving time.
                    "t": time.monotonic(),
                    "frames": {str(s.index): s.sub.frames for s in self.subscribers},
                    "errors": [e for s in self.subscribers for e in s.errors()],
                }
            case "stats":
                if self.publisher is None:
                    raise BenchError("no publisher in this worker")
                return self.publisher.stats()
            case "stop":
                await self.close()
                return {}
        raise BenchError(f"unknown command {cmd!r}")

    async def close(self) -> None:
        closing = [s.close() for s in self.subscribers]
        if self.publisher is not None:
            closing.append(self.publisher.close())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10.0)
        await self.http.close()


class CommandHandler(Protocol):
    """What a worker process runs: one reply per command, and a close at the end."""

    async def run(self, cmd: str, args: dict[str, Any]) -> Reply: ...

    async def close(self) -> None: ...


async def serve_commands(conn: Connection, handler: Callable[[], CommandHandler]) -> None:
    """Answer the orchestrator's commands over `conn` with `handler()`'s, until `stop`."""
    worker = handler()
    loop = asyncio.get_running_loop()
    while True:
        try:
            request: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            # The orchestrator is gone; nobody is left to report to.
            await worker.close()
            return
        cmd = request.pop("cmd")
        try:
            reply = {"ok": True, **await worker.run(cmd, request)}
        except Exception:
            reply = {"ok": False, "error": traceback.format_exc()}
        conn.send(reply)
        if cmd == "stop":
            return


def client_main(conn: Connection, spec: TargetSpec, counting: bool) -> None:
    """A worker process: publisher (`counting` False) or subscribers (True)."""
    raise_nofile_limit()
    restrict_ice(spec.ice_address)
    if counting:
        count_frames_without_decoding()
    asyncio.run(serve_commands(conn, lambda: _ClientWorker(spec)))


class ClientProcess(Worker):
    """The orchestrator's handle on one worker process."""

    def __init__(self, name: str, spec: TargetSpec, *, counting: bool) -> None:
        super().__init__(name, client_main, spec, counting)


__all__ = [
    "SUBSCRIBERS_PER_PROCESS",
    "ClientProcess",
    "Clip",
    "ClipTrack",
    "CommandHandler",
    "TargetKind",
    "TargetSpec",
    "count_frames_without_decoding",
    "encode_clip",
    "restrict_ice",
    "serve_commands",
]
