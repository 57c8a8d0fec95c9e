"""A conference's snapshot (signalling/core/conference_snapshot.py): restored whole from what
`snapshot` gives for conferences driven through the real switchboard by random moderators'
and sites' messages, its timers running on from the time they are restored at, and a bad
snapshot refused with the reason, nothing restored."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity import Identity
from signalling import protocol as p
from signalling.core.conference import Conference, ConferenceStatus
from signalling.core.conference_snapshot import SnapshotError, restored, snapshot
from signalling.core.floor import SiteFloor
from signalling.errors import ClientError
from tests.corehelpers import Board, officer, operator
from tests.test_conferences import create, join, province

SITES = ("op1", "op2", "op3", "o1")
USERS = ("sup0", *SITES)

FLOOR_MODES: tuple[p.FloorMode, ...] = ("moderated", "open")

Step = Callable[[Board, str], Any]


def _steps() -> st.SearchStrategy[Step]:
    """One legal-or-refused move of the conference (a refusal changes nothing)."""
    site = st.sampled_from(SITES)
    user = st.sampled_from(USERS)

    def send(who: str, make: Callable[[Board, str], p.ClientMessage]) -> Step:
        return lambda b, c: b.send(who, make(b, c))

    return st.one_of(
        user.map(lambda u: send(u, lambda b, c: p.JoinConference(id=b.msg_id(), conference_id=c))),
        site.map(lambda u: send(u, lambda b, c: p.RaiseHand(id=b.msg_id(), conference_id=c))),
        site.map(lambda u: send(u, lambda b, c: p.LowerHand(id=b.msg_id(), conference_id=c))),
        site.map(lambda u: send(u, lambda b, c: p.ReleaseFloor(id=b.msg_id(), conference_id=c))),
        site.map(lambda u: send(u, lambda b, c: p.LeaveConference(id=b.msg_id(), conference_id=c))),
        site.map(
            lambda u: send(
                "sup0", lambda b, c: p.GrantFloor(id=b.msg_id(), conference_id=c, site=u)
            )
        ),
        site.map(
            lambda u: send(
                "sup0", lambda b, c: p.RevokeFloor(id=b.msg_id(), conference_id=c, site=u)
            )
        ),
        st.sampled_from((*SITES, "sup0")).map(
            lambda u: send("sup0", lambda b, c: p.Spotlight(id=b.msg_id(), conference_id=c, site=u))
        ),
        site.map(
            lambda u: send(
                "sup0", lambda b, c: p.NameModerator(id=b.msg_id(), conference_id=c, user=u)
            )
        ),
        st.tuples(site, st.booleans()).map(
            lambda ub: send(
                "sup0",
                lambda b, c: p.RemoveSite(id=b.msg_id(), conference_id=c, site=ub[0], ban=ub[1]),
            )
        ),
        st.booleans().map(
            lambda on: send(
                "sup0", lambda b, c: p.LockConference(id=b.msg_id(), conference_id=c, locked=on)
            )
        ),
        st.booleans().map(
            lambda on: send(
                "sup0", lambda b, c: p.RecordConference(id=b.msg_id(), conference_id=c, on=on)
            )
        ),
        st.tuples(
            st.integers(1, 3),
            st.sampled_from([None, 5, 20]),
            st.sampled_from(FLOOR_MODES),
        ).map(
            lambda f: send(
                "sup0",
                lambda b, c: p.SetFloor(
                    id=b.msg_id(),
                    conference_id=c,
                    max_speakers=f[0],
                    max_talk_s=f[1],
                    mode=f[2],
                ),
            )
        ),
        st.just(send("sup0", lambda b, c: p.MuteAll(id=b.msg_id(), conference_id=c))),
        st.just(send("sup0", lambda b, c: p.UnmuteAll(id=b.msg_id(), conference_id=c))),
        site.map(lambda u: lambda b, c: b.drop(u) if b.sb.session(u) else None),
        site.map(lambda u: lambda b, c: None if b.sb.session(u) else b.sign_in(_identity(u))),
        st.integers(1, 4).map(lambda s: lambda b, c: b.advance(float(s))),
    )


def _identity(user: str) -> Identity:
    return officer(user) if user == "o1" else operator(user, "P0102" if user == "op3" else "P0101")


@settings(max_examples=150, deadline=None)
@given(st.lists(_steps(), max_size=40))
def test_a_conference_built_by_random_legal_moves_is_restored_equal_to_itself(
    steps: list[Step],
) -> None:
    b = province()
    cid = create(b, "sup0", invite_below=("P01",), invite_users=("o1",))
    join(b, "sup0", cid)
    for step in steps:
        with contextlib.suppress(ClientError):  # refused: nothing changed
            step(b, cid)
    conf = b.sb.conferences.table.get(cid)
    if conf is None or conf.status is ConferenceStatus.ENDED:
        return  # it ended (every moderator gone past the grace): nothing to carry on
    data = snapshot(conf, b.now)
    # What the journal stores: msgpack, and back.
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(data))
    assert restored(wire, b.now) == conf


def test_timers_are_carried_as_time_left_and_run_on_from_the_restoring_time() -> None:
    b = province()
    cid = create(b, "sup0", invite_users=("op1",))
    join(b, "sup0", cid)
    b.send("sup0", p.SetFloor(id=b.msg_id(), conference_id=cid, max_speakers=1, max_talk_s=30))
    conf = b.sb.conferences.get(cid)
    join(b, "op1", cid)
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op1"))
    b.advance(10.0)
    data = snapshot(conf, b.now)
    assert data["talk_left"] == {"op1": 20.0}
    # Restored on another node 5 s later (the lease's handover): 20 s left from then.
    later = restored(data, b.now + 5.0)
    assert later.floor.until("op1") == b.now + 25.0
    assert later.floor.holders() == ("op1",)
    assert later.floor.state_of("op1") is SiteFloor.PERMITTED


def _running() -> tuple[Board, Conference, dict[str, Any]]:
    b = province()
    cid = create(b, "sup0", invite_below=("P01",), invite_users=("o1",))
    join(b, "sup0", cid)
    join(b, "op1", cid)
    join(b, "op3", cid)
    b.send("op1", p.RaiseHand(id=b.msg_id(), conference_id=cid))
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site="op3"))
    conf = b.sb.conferences.get(cid)
    return b, conf, snapshot(conf, b.now)


def _bad(data: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    change(data)
    return data


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.__setitem__(key, value)


BAD: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown field": (_set("extra", 1), "unknown field"),
    "wrong version": (_set("version", 2), "version"),
    "title too long": (_set("title", "t" * 129), "title"),
    "too many sites": (
        lambda d: d.__setitem__("sites", d["sites"] * 2000),
        "sites",
    ),
    "a site twice": (lambda d: d["sites"].append(d["sites"][1]), "listed twice"),
    "chair not a moderator": (_set("chair", "op1"), "chair"),
    "holder not permitted": (_set("holders", [["op1", None]]), "holders"),
    "hand not queued": (_set("hands", []), "hands"),
    "ended": (_set("status", "ended"), "status"),
    "spotlight on nobody": (_set("spotlight", "ghost"), "spotlight"),
    "not a mapping": (lambda d: d.clear(), "missing required field"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_snapshot_is_refused_with_its_reason_and_nothing_is_restored(case: str) -> None:
    b, _conf, data = _running()
    change, reason = BAD[case]
    with pytest.raises(SnapshotError, match=reason):
        restored(_bad(data, change), b.now)


def test_a_good_snapshot_of_the_same_conference_restores() -> None:
    b, conf, data = _running()
    again = restored(data, b.now)
    assert again == conf
    assert again.floor.holders() == ("op3",)
    assert again.floor.queue() == ("op1",)


def test_an_ended_conference_has_no_snapshot() -> None:
    b, conf, _ = _running()
    b.send("sup0", p.EndConference(id=b.msg_id(), conference_id=conf.conference_id))
    assert conf.status is ConferenceStatus.ENDED
    with pytest.raises(SnapshotError, match="ended"):
        snapshot(conf, b.now)


def test_any_bytes_decoded_give_a_conference_or_a_snapshot_error() -> None:
    """Whatever the journal holds (msgpack of anything), `restored` refuses it cleanly."""

    @settings(max_examples=200, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=20,
        )
    )
    def check(data: Any) -> None:
        with pytest.raises(SnapshotError):
            restored(data, 0.0)

    check()
