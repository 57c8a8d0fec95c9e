"""The video wall's watches in the pure core (signalling.core.watches): who may watch whom,
one shared uplink per officer, the media room it makes, the trace's start and stop facts,
the bounds, and every way a watch ends. Time is an argument; nothing here waits."""

from __future__ import annotations

import pytest

from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.cluster.authority import AuthorityState
from signalling.core.actions import Action, Negotiate, Room
from signalling.core.watches import DEFAULT_CAPS, VideoCap, WatchLimits, policy_for
from signalling.errors import ClientError, Forbidden, InvalidState, MediaUnavailable, NotFound
from tests.corehelpers import (
    Board,
    messages,
    officer,
    operator,
    recipients,
    records,
    sends,
    supervisor,
)


def rooms(actions: list[Action]) -> list[Room]:
    return [a for a in actions if isinstance(a, Room)]


def board(max_feeds: int = 16, starts_per_min: int = 120) -> Board:
    b = Board(media=True, watches=WatchLimits(max_feeds=max_feeds, starts_per_min=starts_per_min))
    b.sign_in(officer("o1"), officer("o2"), officer("o9", "P0201"), operator("op1"))
    return b


def watch(b: Board, watcher: str, target: str) -> list[Action]:
    return b.send(watcher, p.Watch(id=b.msg_id(), officer=target))


def watching(actions: list[Action], watcher: str) -> p.Watching:
    (reply,) = messages(actions, p.Watching, to=watcher)
    return reply


def test_first_watcher_opens_the_officers_uplink_and_is_recorded() -> None:
    b = board()
    out = watch(b, "op1", "o1")
    reply = watching(out, "op1")
    assert reply.officer.id == "o1"
    assert reply.officer.name == "O1"
    (opened,) = messages(out, p.WatchOpened, to="o1")
    assert opened.watch_id == reply.watch_id
    (fact,) = records(out, "watch_started")
    assert fact.data == {"watch": reply.watch_id, "officer": "o1", "court": "P0101", "by": "op1"}
    assert fact.at == b.now
    (room,) = rooms(out)
    assert room.call_id == reply.watch_id
    assert room.watch
    assert room.members == ("o1", "op1")
    assert room.silent == ("op1",)


def test_a_second_watcher_shares_the_same_uplink() -> None:
    b = board()
    b.sign_in(supervisor("sup"))
    first = watching(watch(b, "op1", "o1"), "op1")
    out = watch(b, "sup", "o1")
    assert watching(out, "sup").watch_id == first.watch_id
    assert messages(out, p.WatchOpened) == []
    (room,) = rooms(out)
    assert room.members == ("o1", "op1", "sup")
    assert room.silent == ("op1", "sup")


def test_asking_again_is_the_same_watch_and_not_recorded_twice() -> None:
    b = board()
    first = watching(watch(b, "op1", "o1"), "op1")
    again = watch(b, "op1", "o1")
    assert watching(again, "op1").watch_id == first.watch_id
    assert records(again) == []
    assert rooms(again) == []


def test_unwatch_records_from_when_to_when_and_closes_the_uplink_when_last() -> None:
    b = board()
    b.sign_in(supervisor("sup"))
    started = b.now
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    watch(b, "sup", "o1")
    b.clock.advance(42.0)
    out = b.send("op1", p.Unwatch(id="u1", watch_id=wid))
    assert messages(out, p.Ack, to="op1") == [p.Ack(ref="u1")]
    (fact,) = records(out, "watch_stopped")
    assert fact.data["by"] == "op1"
    assert fact.data["reason"] == "stopped"
    assert fact.data["started_at"] == started
    assert fact.at == started + 42.0
    assert messages(out, p.WatchClosed) == []
    assert rooms(out)[0].members == ("o1", "sup")
    out = b.send("sup", p.Unwatch(id="u2", watch_id=wid))
    assert messages(out, p.WatchClosed, to="o1") == [p.WatchClosed(watch_id=wid)]
    assert rooms(out)[0].members == ()
    assert b.sb.watches.table == {}


def test_officer_going_offline_ends_every_watch_of_them() -> None:
    b = board()
    b.sign_in(supervisor("sup"))
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    watch(b, "sup", "o1")
    out = b.drop("o1")
    ended = messages(out, p.WatchEnded)
    assert {(m.watch_id, m.officer, m.reason) for m in ended} == {(wid, "o1", "officer_offline")}
    assert recipients(out, p.WatchEnded) == {"op1", "sup"}
    assert sorted(f.data["by"] for f in records(out, "watch_stopped")) == ["op1", "sup"]
    assert rooms(out)[-1].members == ()
    assert b.sb.watches.of_officer("o1") is None


def test_watcher_leaving_ends_their_watches_only() -> None:
    b = board()
    b.sign_in(supervisor("sup"))
    watch(b, "op1", "o1")
    watch(b, "op1", "o2")
    watch(b, "sup", "o2")
    out = b.drop("op1")
    stops = records(out, "watch_stopped")
    assert sorted((f.data["officer"], f.data["reason"]) for f in stops) == [
        ("o1", "watcher_gone"),
        ("o2", "watcher_gone"),
    ]
    assert messages(out, p.WatchClosed, to="o1") != []
    assert messages(out, p.WatchClosed, to="o2") == []
    assert [w.officer for w in b.sb.watches.watching("sup")] == ["o2"]


def test_another_courts_officer_answers_as_one_not_online() -> None:
    b = board()
    for target in ("o9", "nobody", "op1"):
        with pytest.raises(NotFound) as exc:
            watch(b, "op1", target)
        assert exc.value.field == "officer"
    b.drop("o2")
    with pytest.raises(NotFound):
        watch(b, "op1", "o2")


def test_a_supervisor_watches_courts_below_theirs() -> None:
    b = board()
    b.sign_in(supervisor("psup", "P"))
    assert watching(watch(b, "psup", "o9"), "psup").officer.court == "P0201"


def test_officers_do_not_watch() -> None:
    b = board()
    with pytest.raises(Forbidden):
        watch(b, "o2", "o1")


def test_no_watch_without_media() -> None:
    b = Board(watches=WatchLimits())
    b.sign_in(officer("o1"), operator("op1"))
    with pytest.raises(MediaUnavailable):
        watch(b, "op1", "o1")


def test_at_most_max_feeds_at_once() -> None:
    b = board(max_feeds=2)
    b.sign_in(officer("o3"))
    watch(b, "op1", "o1")
    watch(b, "op1", "o2")
    before = b.snapshot()
    with pytest.raises(InvalidState):
        watch(b, "op1", "o3")
    assert b.snapshot() == before
    assert b.sb.watches.of_officer("o3") is None


def test_starts_are_rate_limited_per_minute_window() -> None:
    b = board(starts_per_min=3)
    wid = ""
    for _ in range(3):
        wid = watching(watch(b, "op1", "o1"), "op1").watch_id
        b.send("op1", p.Unwatch(id=b.msg_id(), watch_id=wid))
        b.clock.advance(1.0)
    with pytest.raises(ClientError) as exc:
        watch(b, "op1", "o1")
    assert exc.value.code == "rate_limited"
    b.clock.advance(58.0)
    watching(watch(b, "op1", "o1"), "op1")


def test_unwatch_of_someone_elses_watch_is_not_found() -> None:
    b = board()
    b.sign_in(operator("op2"))
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    for named in (wid, "w-none"):
        with pytest.raises(NotFound):
            b.send("op2", p.Unwatch(id=b.msg_id(), watch_id=named))


def test_media_of_a_watch_goes_to_the_media_server_for_its_members_only() -> None:
    b = board()
    b.sign_in(operator("op2"))
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    for user in ("o1", "op1"):
        out = b.send(user, p.Offer(id=b.msg_id(), call_id=wid, sdp="v=0"))
        (step,) = [a for a in out if isinstance(a, Negotiate)]
        assert step.user == user
    with pytest.raises(NotFound):
        b.send("op2", p.Offer(id=b.msg_id(), call_id=wid, sdp="v=0"))
    with pytest.raises(InvalidState):
        b.send("op1", p.Snapshot(id=b.msg_id(), call_id=wid))


def test_shutdown_records_every_stop() -> None:
    b = board()
    watch(b, "op1", "o1")
    watch(b, "op1", "o2")
    out = b.sb.shutdown(b.now)
    assert [f.data["reason"] for f in records(out, "watch_stopped")] == ["shutdown", "shutdown"]
    kinds = [e.kind for e in records(out)]
    assert kinds.index("watch_stopped") < kinds.index("sign_out")


def test_a_watched_officer_in_a_call_keeps_both() -> None:
    """A call does not end the watch: the officer publishes in both media sessions."""
    b = board()
    b.sign_in(operator("op2"))
    wid = watching(watch(b, "op2", "o1"), "op2").watch_id
    b.call_center("o1")
    assert b.sb.watches.of_officer("o1") is not None
    assert b.sb.watches.table[wid].watchers.keys() == {"op2"}


def test_a_new_authority_closes_in_the_trace_the_watches_a_dead_one_left() -> None:
    """The journal keeps each open watch's stops; the next authority records them
    `node_lost` and tells the watchers and the officer."""
    b = board()
    b.sign_in(supervisor("sup"))
    started = b.now
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    watch(b, "sup", "o1")
    facts = b.sb.watch_facts(wid)
    assert facts is not None
    entry = w.JournalWatch(
        officer=facts.officer, watchers=list(facts.watchers), stopped=list(facts.stopped)
    )
    fresh = Board(media=True)
    fresh.clock.advance(30.0)
    state = AuthorityState(core=fresh.sb)
    inherited = state.inherit_watches({wid: w.encode(entry), "w-junk": b"\x01"}, fresh.now)
    assert inherited.ended == [wid]
    # Its room is to be closed wherever it is, the officer's uplink with it.
    assert inherited.rooms == {wid: "o1"}
    stops = records(inherited.actions, "watch_stopped")
    assert sorted(f.data["by"] for f in stops) == ["op1", "sup"]
    assert {f.data["reason"] for f in stops} == {"node_lost"}
    assert {f.data["started_at"] for f in stops} == {started}
    assert {f.at for f in stops} == {fresh.now}
    assert recipients(inherited.actions, p.WatchEnded) == {"op1", "sup"}
    assert messages(inherited.actions, p.WatchClosed, to="o1") == [p.WatchClosed(watch_id=wid)]
    # Once stopped, there is nothing left to journal.
    b.send("op1", p.Unwatch(id=b.msg_id(), watch_id=wid))
    b.send("sup", p.Unwatch(id=b.msg_id(), watch_id=wid))
    assert b.sb.watch_facts(wid) is None


def test_an_authority_leaves_alone_a_watch_it_has_itself() -> None:
    b = board()
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    facts = b.sb.watch_facts(wid)
    assert facts is not None
    entry = w.JournalWatch(officer="o1", watchers=["op1"], stopped=list(facts.stopped))
    inherited = AuthorityState(core=b.sb).inherit_watches({wid: w.encode(entry)}, b.now)
    assert inherited.actions == []
    assert inherited.ended == []
    assert inherited.rooms == {}


# ---- sized to the wall -----------------------------------------------------------------


def layout(b: Board, watcher: str, tiles: p.WallTiles) -> list[Action]:
    return b.send(watcher, p.WallLayout(id=b.msg_id(), tiles=tiles))


def policies(actions: list[Action], officer_id: str) -> list[p.VideoPolicy]:
    return messages(actions, p.VideoPolicy, to=officer_id)


def capped(watch_id: str, height: int, fps: int, kbps: int) -> p.VideoPolicy:
    return p.VideoPolicy(watch_id=watch_id, max_height=height, max_fps=fps, max_kbps=kbps)


def uncapped(watch_id: str) -> p.VideoPolicy:
    return p.VideoPolicy(watch_id=watch_id, max_height=None, max_fps=None, max_kbps=None)


def test_the_policy_is_the_highest_need_of_the_walls_watching() -> None:
    assert policy_for([], DEFAULT_CAPS) is None
    assert policy_for([1], DEFAULT_CAPS) is None
    assert policy_for([4], DEFAULT_CAPS) == VideoCap(540, 25, 1200)
    assert policy_for([9], DEFAULT_CAPS) == VideoCap(360, 15, 500)
    assert policy_for([16], DEFAULT_CAPS) == VideoCap(180, 12, 200)
    assert policy_for([16, 9], DEFAULT_CAPS) == VideoCap(360, 15, 500)
    assert policy_for([16, 4, 9], DEFAULT_CAPS) == VideoCap(540, 25, 1200)
    assert policy_for([16, 1], DEFAULT_CAPS) is None


def test_a_sixteen_tile_wall_caps_each_officer_it_watches() -> None:
    b = board()
    assert records(layout(b, "op1", 16)) == []
    out = watch(b, "op1", "o1")
    wid = watching(out, "op1").watch_id
    # Told after the watch opened, so the page has the watch to apply it to.
    kinds = [type(m.message) for m in sends(out) if "o1" in m.to]
    assert kinds == [p.WatchOpened, p.VideoPolicy]
    assert policies(out, "o1") == [capped(wid, 180, 12, 200)]
    # The same layout again changes nothing: the officer is not told twice.
    assert policies(layout(b, "op1", 16), "o1") == []


def test_a_wall_that_never_said_its_layout_asks_for_no_cap() -> None:
    b = board()
    assert policies(watch(b, "op1", "o1"), "o1") == []


def test_enlarging_a_tile_lifts_the_cap_and_going_back_restores_it() -> None:
    b = board()
    layout(b, "op1", 9)
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    assert policies(layout(b, "op1", 1), "o1") == [uncapped(wid)]
    assert policies(layout(b, "op1", 9), "o1") == [capped(wid, 360, 15, 500)]


def test_the_highest_need_wins_and_only_the_senders_watches_are_weighed() -> None:
    b = board()
    b.sign_in(supervisor("sup"))
    layout(b, "op1", 16)
    layout(b, "sup", 4)
    w1 = watching(watch(b, "op1", "o1"), "op1").watch_id
    w2 = watching(watch(b, "op1", "o2"), "op1").watch_id
    # The supervisor's 4-tile wall needs o1 sharper than op1's 16 tiles do.
    out = watch(b, "sup", "o1")
    assert policies(out, "o1") == [capped(w1, 540, 25, 1200)]
    # op1 going to 9 tiles changes neither o1 (sup needs more) nor anyone op1 does not
    # watch; o2, watched by op1 alone, gets the 9-tile cap.
    out = layout(b, "op1", 9)
    assert policies(out, "o1") == []
    assert policies(out, "o2") == [capped(w2, 360, 15, 500)]
    # The supervisor stops: o1 falls back to what op1's wall needs.
    out = b.send("sup", p.Unwatch(id=b.msg_id(), watch_id=w1))
    assert policies(out, "o1") == [capped(w1, 360, 15, 500)]


def test_only_the_command_center_says_a_wall_layout() -> None:
    b = board()
    with pytest.raises(Forbidden):
        layout(b, "o1", 4)


def test_the_caps_are_configurable() -> None:
    caps = {4: VideoCap(720, 30, 2000), 9: VideoCap(360, 15, 500), 16: VideoCap(144, 10, 150)}
    b = Board(media=True, watches=WatchLimits(caps=caps))
    b.sign_in(officer("o1"), operator("op1"))
    layout(b, "op1", 16)
    wid = watching(watch(b, "op1", "o1"), "op1").watch_id
    assert policies(layout(b, "op1", 4), "o1") == [capped(wid, 720, 30, 2000)]
