"""What journalling a provincial conference costs the authority: the size of its snapshot
(`signalling.core.conference_snapshot`) as msgpack, the time to take and encode it (done at
most every `JOURNAL_EVERY_S` per conference on change), and the time a new authority takes to
decode and restore it.

    python -m bench.conference_journal [--sites 300] [--rounds 50]

Prints one JSON line: {"phase": "summary", "sites": ..., "snapshot_bytes": ...,
"encode_ms": ..., "restore_ms": ...} (medians over the rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence

import msgspec

from signalling.core.conference import Conference, ConferenceEvent, Invitation, Site
from signalling.core.conference_snapshot import restored, snapshot
from signalling.core.floor import Floor, FloorMode, FloorPolicy

T0 = 1_800_000_000.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.conference_journal")
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    if not 1 <= args.sites <= 5000 or not 1 <= args.rounds <= 10_000:
        parser.error("--sites is 1-5000, --rounds 1-10000")
    return args


def provincial(sites: int) -> Conference:
    """A running conference of `sites` courts' consoles: a chair, two speakers, 30 hands up,
    a spotlight, every court's invitation answered."""
    conf = Conference(
        conference_id="conf-province-0001",
        title="Provincial dispatch meeting",
        court="P",
        host="chair",
        created_at=T0,
        starts_at=T0,
        floor=Floor(FloorPolicy(mode=FloorMode.MODERATED, max_speakers=2, max_talk_s=120.0)),
        invited_courts=tuple(f"P{n:04d}" for n in range(sites)),
        moderators=["chair"],
        chair="chair",
    )
    conf.apply(ConferenceEvent.START, T0)
    conf.sites["chair"] = Site("chair", "P", "moderator", T0)
    for n in range(sites):
        user, court = f"op-{n:04d}", f"P{n:04d}"
        conf.sites[user] = Site(user, court, "site", T0 + n * 0.1, away=n % 50 == 0)
        conf.invitations[f"court:{court}"] = Invitation(court, "court", "joined", by=user)
    now = T0 + 600.0  # whole seconds: time left and back is exact
    for n in range(30):
        conf.floor.request(f"op-{n + 10:04d}", 2, now + n)
    conf.floor.grant("op-0001", now + 40)
    conf.floor.grant("op-0002", now + 41)
    conf.spotlight = "op-0001"
    conf.recording = True
    conf.revision = 77
    return conf


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    conf = provincial(args.sites)
    now = T0 + 700.0
    encoder = msgspec.msgpack.Encoder()
    encode_s: list[float] = []
    restore_s: list[float] = []
    blob = b""
    for _ in range(args.rounds):
        start = time.perf_counter()
        blob = encoder.encode(snapshot(conf, now))
        encode_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        again = restored(msgspec.msgpack.decode(blob), now)
        restore_s.append(time.perf_counter() - start)
        if again != conf:
            print(json.dumps({"phase": "error", "error": "restored conference differs"}))
            return 1
    summary = {
        "phase": "summary",
        "sites": args.sites,
        "rounds": args.rounds,
        "snapshot_bytes": len(blob),
        "encode_ms": round(statistics.median(encode_s) * 1000, 3),
        "restore_ms": round(statistics.median(restore_s) * 1000, 3),
        "encode_ms_max": round(max(encode_s) * 1000, 3),
        "restore_ms_max": round(max(restore_s) * 1000, 3),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
