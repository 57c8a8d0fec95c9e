"""The node's end of the cascade: one UDP socket for the conferences spread over several
nodes, and a place on the node's fabric (media.fabric) beside the media workers.

To this node's workers every member whose media another node terminates is on one more
worker, this gateway (`index`: one past the last worker; media.pool maps them there). So the
conference's router on this node (the span on its home worker, media.span) gates, relays and
asks for keyframes exactly as between workers; the gateway carries what reaches it across:

- a frame from the router here (a packet the stage lets cross, a keyframe request) is sealed
  (media.cascade_frames) and sent: from the home node to every other node with sites, from
  any other node to home; a keyframe request to where `CascadePlan.keyframe_to` says;
- a datagram from another node is checked (known conference, a node of it, the seal, the
  replay window, the fabric frame inside), handed to the router here as if it came from a
  worker, and, on the home node, sent on to the nodes other than the sender's.

So one copy of each packet crosses to each node, and the keyframe requests for a publisher
meet at the home node's router, which asks the publisher's node at most once per interval.
Drops are counted by reason (`dropped`), never raised; nothing of a key is ever logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
from collections.abc import Mapping
from typing import Final

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from media import cascade_frames as cf
from media.fabric import Fabric, FabricEndpoint
from media.fabric_frames import BadFrame, Frame, KeyframeRequest, Packet, decode, resend
from media.placement import owner_kind

log = structlog.get_logger(__name__)

# Datagrams read per wake-up before other work gets the loop.
_READ_BATCH: Final = 64
_BUFFER_BYTES: Final = 1 << 20
# Streams remembered per conference and sender node (a node restarted starts a new one).
_STREAMS_PER_NODE: Final = 4


class _Conference:
    """What the gateway knows of one conference: its plan, the router here, the sealer of
    this node's stream, each sender's keys and windows."""

    def __init__(
        self, here: str, plan: cf.CascadePlan, home_worker: int, sealer: cf.Sealer
    ) -> None:
        self.here = here
        self.plan = plan
        self.home_worker = home_worker
        self.sealer = sealer
        self.targets: dict[str, tuple[str, int]] = {}
        self.opened: dict[tuple[str, bytes], tuple[AESGCM, cf.ReplayWindow]] = {}
        self.downstream: list[str] = []
        self.senders: set[str] = set()
        self._relayed: dict[str, list[str]] = {}
        self.set_plan(plan)

    def set_plan(self, plan: cf.CascadePlan) -> None:
        self.plan = plan
        targets: dict[str, tuple[str, int]] = {}
        for node, address in plan.addresses.items():
            with contextlib.suppress(ValueError):
                targets[node] = cf.parse_address(address)
        self.targets = targets
        # The plan's routes, once per plan rather than per packet: each walks every site.
        self.downstream = plan.downstream(self.here)
        self.senders = plan.senders()
        self._relayed = {}

    def relayed(self, sender: str) -> list[str]:
        """`plan.relayed(here, sender)`, kept until the plan changes."""
        route = self._relayed.get(sender)
        if route is None:
            route = self._relayed[sender] = self.plan.relayed(self.here, sender)
        return route


class CascadeGateway:
    def __init__(
        self,
        *,
        node_id: str,
        index: int,
        path: str,
        workers: Mapping[int, str],
        host: str,
        port: int = 0,
    ) -> None:
        """`index` and `path`: this gateway's place on the node's fabric; `workers` the
        workers' (index -> socket path); `host`/`port` the UDP address it binds and
        advertises (port 0: any)."""
        self.node_id = node_id
        self.index = index
        self.endpoint = FabricEndpoint(index, path, dict(workers))
        self.host = host
        self.port = port
        self.fabric: Fabric | None = None
        self.conferences: dict[str, _Conference] = {}
        self._stream = os.urandom(cf.STREAM_BYTES)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.received = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        # The gate's proof across nodes: datagrams sent per source track, this run.
        self.tracks_out: collections.Counter[str] = collections.Counter()
        # Keyframe requests sent to other nodes (each router's, paced there), per track.
        self.keyframes_out: collections.Counter[str] = collections.Counter()

    # ---- life -----------------------------------------------------------------------------

    def open(self) -> None:
        """Bind the UDP socket and this gateway's fabric socket."""
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, _BUFFER_BYTES)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)
        self.fabric = Fabric(self.endpoint)
        self.fabric.open()
        log.info("cascade listening", address=self.address())

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self.fabric is not None:
            self.fabric.close()
            self.fabric = None
        self.conferences.clear()

    def address(self) -> str:
        """Where other nodes send this node's cascade ("host:port"); "" before `open`."""
        if self._sock is None:
            return ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # ---- the pool's word ------------------------------------------------------------------

    def place(self, conference_id: str, plan: cf.CascadePlan | None, home_worker: int) -> None:
        """Conference `conference_id` spans nodes by `plan`, its router here on worker
        `home_worker` (None plan: it no longer crosses this node's edge)."""
        fabric = self.fabric
        if fabric is None:
            return
        if plan is None or len(plan.senders()) < 2:
            self.conferences.pop(conference_id, None)
            fabric.handlers.pop(conference_id, None)
            return
        known = self.conferences.get(conference_id)
        if known is None or known.plan.key != plan.key:
            sealer = cf.Sealer(plan.key, conference_id, self.node_id, self._stream)
            self.conferences[conference_id] = _Conference(self.node_id, plan, home_worker, sealer)
            fabric.handlers[conference_id] = self._from_router
        else:
            known.set_plan(plan)
            known.home_worker = home_worker

    def health(self) -> dict[str, object]:
        return {
            "address": self.address(),
            "conferences": len(self.conferences),
            "sent": self.sent,
            "received": self.received,
            "dropped": dict(self.dropped),
            "tracks_out": dict(self.tracks_out),
            "keyframes_out": dict(self.keyframes_out),
        }

    # ---- from the router here -------------------------------------------------------------

    def _from_router(self, frame: Frame, data: bytes) -> None:
        conference = self.conferences.get(frame.conference)
        if conference is None:
            return
        plan = conference.plan
        match frame:
            case Packet():
                if frame.sender != conference.home_worker:
                    self.dropped["not_from_router"] += 1
                    return
                targets = conference.downstream
                if targets:
                    self.tracks_out[frame.track] += len(targets)
                self._send(conference, data, targets)
            case KeyframeRequest():
                owner, _ = owner_kind(frame.track)
                target = plan.keyframe_to(self.node_id, owner)
                if target is not None:
                    self.keyframes_out[frame.track] += 1
                    self._send(conference, data, [target])
            case _:
                # Sites, stop, roll-in: the router's business with its workers, not other
                # nodes' (each node's router runs its own).
                pass

    def _send(self, conference: _Conference, frame: bytes, nodes: list[str]) -> None:
        sock = self._sock
        if sock is None or not nodes:
            return
        for node in nodes:
            target = conference.targets.get(node)
            if target is None:
                self.dropped["no_address"] += 1
                continue
            datagram = conference.sealer.seal(frame)
            try:
                sock.sendto(datagram, target)
            except BlockingIOError:
                self.dropped["would_block"] += 1
                continue
            except OSError:
                self.dropped["unreachable"] += 1
                continue
            self.sent += 1

    # ---- from other nodes -----------------------------------------------------------------

    def _readable(self) -> None:
        for _ in range(_READ_BATCH):
            sock = self._sock
            if sock is None:
                return
            try:
                data = sock.recv(cf.MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("cascade socket failed", node_id=self.node_id)
                return
            self.received += 1
            try:
                self.take(data)
            except cf.Rejected as rejected:
                self.dropped[rejected.reason] += 1
            except BadFrame as bad:
                self.dropped[f"frame_{bad.reason}"] += 1

    def take(self, data: bytes) -> None:
        """One datagram from another node: checked, opened, handed to the router here (and,
        on the home node, sent on). Raises Rejected or BadFrame for what is dropped."""
        head = cf.header(data)
        conference = self.conferences.get(head.conference)
        if conference is None:
            raise cf.Rejected("unknown_conference")
        plan = conference.plan
        if head.node == self.node_id or head.node not in conference.senders:
            raise cf.Rejected("unknown_node")
        opened = conference.opened.get((head.node, head.stream))
        if opened is None:
            if sum(1 for node, _ in conference.opened if node == head.node) >= _STREAMS_PER_NODE:
                for key in [k for k in conference.opened if k[0] == head.node][:1]:
                    del conference.opened[key]
            aead = cf.stream_key(plan.key, head.node.encode(), head.stream)
            # Kept only once a datagram of it verified: forged streams cost no memory.
            opened = (aead, cf.ReplayWindow())
            candidate = True
        else:
            candidate = False
        aead, window = opened
        if not window.check(head.counter):
            raise cf.Rejected("replayed")
        frame_bytes = cf.open_sealed(aead, head, data)
        window.note(head.counter)
        if candidate:
            conference.opened[(head.node, head.stream)] = opened
        frame = decode(frame_bytes)
        if frame.conference != head.conference:
            raise cf.Rejected("wrong_conference")
        fabric = self.fabric
        if fabric is None:
            return
        match frame:
            case Packet():
                fabric.send(conference.home_worker, resend(frame_bytes, self.index))
                relay = conference.relayed(head.node)
                if relay:
                    self.tracks_out[frame.track] += len(relay)
                    self._send(conference, frame_bytes, relay)
            case KeyframeRequest():
                fabric.send(conference.home_worker, resend(frame_bytes, self.index))
            case _:
                raise cf.Rejected("unexpected_kind")


__all__ = ["CascadeGateway"]
