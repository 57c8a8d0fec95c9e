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
from signalling.cluster import wire as w
from signalling.cluster.authority import AuthorityState
from signalling.core.actions import Room
from signalling.core.conference import Conference, ConferenceStatus
from signalling.core.conference_snapshot import SnapshotError, restored, snapshot
from signalling.core.floor import SiteFloor
from signalling.errors import ClientError
from tests.corehelpers import (
    Board,
    messages,
    officer,
    operator,
    recipients,
    records,
    supervisor,
)
from tests.test_conferences import EVERY_CHANGE_AT_ONCE, create, join, province

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


# ---- carried on by a new authority's core (Conferences.adopt) ------------------------------


def _new_authority(*signed_in: str) -> Board:
    """Another switchboard, as a new authority's, with `signed_in` reported by gateways."""
    b = Board(conferences=EVERY_CHANGE_AT_ONCE)
    everyone = {
        "sup0": supervisor("sup0", "P"),
        "op1": operator("op1"),
        "op3": operator("op3", "P0102"),
    }
    b.sign_in(*(everyone[u] for u in signed_in))
    return b


def test_an_adopted_conference_keeps_its_floor_and_its_sites_that_come_back() -> None:
    old, conf, data = _running()
    cid = conf.conference_id
    b = _new_authority("sup0", "op1")
    b.clock.now = old.now + 2.0
    out: list[Any] = []
    b.sb.conferences.adopt(restored(data, b.now), b.now, out)
    (adopted,) = records(out, "conference_adopted")
    assert adopted.data["holders"] == ["op3"]
    assert adopted.data["mode"] == "moderated"
    here = b.sb.conferences.get(cid)
    assert (here.floor.holders(), here.floor.queue(), here.chair) == (("op3",), ("op1",), "sup0")
    # op3 (its node died with the authority) signs in again within the grace: kept.
    b.advance(5.0)
    b.sign_in(operator("op3", "P0102"))
    assert not here.sites["op3"].away
    after = b.advance(b.presence_cfg.grace_s)
    assert not records(after, "site_left")
    assert set(here.sites) == {"sup0", "op1", "op3"}
    assert here.floor.holders() == ("op3",)


def test_sites_not_back_within_the_grace_leave_node_lost() -> None:
    old, conf, data = _running()
    cid = conf.conference_id
    b = _new_authority("sup0", "op1")
    b.clock.now = old.now
    b.sb.conferences.adopt(restored(data, b.now), b.now, [])
    assert not records(b.advance(b.presence_cfg.grace_s - 1.0), "site_left")
    after = b.advance(1.0)
    (left,) = records(after, "site_left")
    assert (left.data["user"], left.data["reason"]) == ("op3", "node_lost")
    assert messages(after, p.ConferenceLeft, to="op3")[0].reason == "node_lost"
    here = b.sb.conferences.get(cid)
    assert set(here.sites) == {"sup0", "op1"}
    # The floor it held is free again; the raised hand stays.
    assert here.floor.holders() == ()
    assert here.floor.queue() == ("op1",)


def test_an_adopted_conference_nobody_comes_back_to_ends_node_lost() -> None:
    old, conf, data = _running()
    b = _new_authority()
    b.clock.now = old.now
    b.sb.conferences.adopt(restored(data, b.now), b.now, [])
    after = b.advance(b.presence_cfg.grace_s)
    (ended,) = records(after, "conference_ended")
    assert ended.data["reason"] == "node_lost"
    assert conf.conference_id not in b.sb.conferences.table


def test_an_adopted_holders_talk_time_runs_on_from_what_was_left() -> None:
    old = province()
    cid = create(old, "sup0", invite_users=("op1",))
    join(old, "sup0", cid)
    old.send("sup0", p.SetFloor(id=old.msg_id(), conference_id=cid, max_speakers=1, max_talk_s=30))
    join(old, "op1", cid)
    old.send("sup0", p.GrantFloor(id=old.msg_id(), conference_id=cid, site="op1"))
    old.advance(20.0)
    data = snapshot(old.sb.conferences.get(cid), old.now)
    b = _new_authority("sup0", "op1")
    b.clock.now = old.now + 3.0
    b.sb.conferences.adopt(restored(data, b.now), b.now, [])
    assert not messages(b.advance(9.0), p.FloorStatus, to="op1")
    (status,) = messages(b.advance(1.0), p.FloorStatus, to="op1")
    assert (status.floor.state, status.reason) == ("pending_revoke", "talk_time")


def test_a_new_authority_carries_on_restorable_conferences_and_keeps_their_live_media() -> None:
    """`AuthorityState.inherit_conferences`: a conference with a good snapshot is adopted, its
    media kept on its live home (or, over the cascade, on its live sites' nodes, home moved,
    under a new key); one whose snapshot is bad ends `node_lost`, its people told."""
    old = province()
    cids = [create(old, "sup0", invite_below=("P01",)) for _ in range(3)]
    for cid in cids:
        join(old, "sup0", cid)
        join(old, "op1", cid)
        join(old, "op3", cid)
    journal: dict[str, bytes] = {}
    for cid in cids:
        facts = old.sb.conference_facts(cid)
        assert facts is not None
        state = snapshot(old.sb.conferences.get(cid), old.now)
        if cid == cids[2]:
            state["chair"] = "op1"  # not a moderator: refused
        entry = w.JournalConference(notify=list(facts.notify), ended=facts.ended, snapshot=state)
        journal[cid] = w.encode(entry)
    media = {
        cids[0]: w.encode(w.JournalMedia(home="n2")),
        cids[1]: w.encode(w.JournalMedia(home="n1", sites={"sup0": "n1", "op1": "n3"})),
    }
    new = AuthorityState(core=_new_authority("sup0", "op1").sb)
    keys = iter([b"k" * 32])
    got = new.inherit_conferences(
        journal, old.now, media=media, alive=["n2", "n3"], new_key=lambda: next(keys)
    )
    assert sorted(got.adopted) == sorted(cids[:2])
    assert got.ended == [cids[2]]
    assert "chair" in got.refused[cids[2]]
    assert [r.data["conference"] for r in records(got.actions, "conference_adopted")] == cids[:2]
    (ended,) = records(got.actions, "conference_ended")
    assert (ended.data["conference"], ended.data["reason"]) == (cids[2], "node_lost")
    assert recipients(got.actions, p.ConferenceEnded) == {"sup0", "op1", "op3"}
    # Media: kept on live n2; the spread's home n1 died, so home is n3 (its live site's node).
    assert new.media_nodes == {cids[0]: "n2", cids[1]: "n3"}
    spread = new.spreads[cids[1]]
    assert (spread.home, spread.sites, spread.key) == ("n3", {"op1": "n3"}, b"k" * 32)
    # Each adopted conference's room goes out again, to be sent to those nodes.
    rooms = {a.call_id for a in got.actions if isinstance(a, Room)}
    assert rooms == set(cids[:2])
    # sup0's media was on n1, which died: it offers again; op1's (on n3) goes on untouched.
    assert recipients(got.actions, p.MediaRestart) == {"sup0"}
