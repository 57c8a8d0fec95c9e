"""A conference of hundreds of sites through the pure switchboard, with a fake clock: joins
paced per media worker (sites over the rate told they wait, then let in in order), the
moderators' view sent as batched changes, and nothing a site is sent growing with the number
of sites. The pace itself (signalling.core.join_pace) is checked with Hypothesis."""

from __future__ import annotations

import itertools
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling import protocol as p
from signalling.codec import Encoding, encode
from signalling.core.actions import Action
from signalling.core.join_pace import LOCAL_WORKER, JoinPace, Waiter
from signalling.settings import ConferencesConfig
from tests.corehelpers import Board, messages, officer, recipients, sends, supervisor

RATE = 10.0
DELTA = 0.5


def site(i: int) -> str:
    return f"o{i}"


def conference(n: int, *, host_joins: bool = True, **config: float) -> tuple[Board, str]:
    """sup0 (P) hosts a running conference inviting officers o0..o{n-1} of P0101 (signed
    in) and (`host_joins`) has joined it."""
    settings = {"joins_per_s": RATE, "moderator_delta_s": DELTA, "max_sites": 1000, **config}
    b = Board(conferences=ConferencesConfig(**settings))  # type: ignore[arg-type]
    b.sign_in(supervisor("sup0", "P"), *(officer(site(i)) for i in range(n)))
    actions = b.send(
        "sup0",
        p.CreateConference(
            id=b.msg_id(), title="Province", invite_users=tuple(site(i) for i in range(n))
        ),
    )
    (created,) = messages(actions, p.ConferenceCreated)
    cid = created.conference.conference_id
    if host_joins:
        b.send("sup0", p.JoinConference(id=b.msg_id(), conference_id=cid))
    return b, cid


def join_all(b: Board, cid: str, n: int) -> list[Action]:
    out: list[Action] = []
    for i in range(n):
        out += b.send(site(i), p.JoinConference(id=f"j{i}", conference_id=cid))
    return out


def run_until_joined(b: Board, cid: str, n: int, step: float = 0.05) -> dict[str, float]:
    """Advance the clock until every site is in; returns when each was let in."""
    joined_at: dict[str, float] = {}
    for _ in range(int(10 * n / RATE / step)):
        for _msg, to in _joined(b.advance(step)):
            joined_at[to] = b.now
        if sum(1 for u in b.sb.conferences.table[cid].sites if u != "sup0") == n:
            return joined_at
    raise AssertionError("not every site was let in")


def _joined(actions: list[Action]) -> list[tuple[p.ConferenceJoined, str]]:
    return [
        (a.message, a.to[0]) for a in sends(actions) if isinstance(a.message, p.ConferenceJoined)
    ]


# ---- join pacing ------------------------------------------------------------------------------


def test_sites_over_the_join_rate_are_told_their_place_and_let_in_in_order() -> None:
    n = 35
    b, cid = conference(n)
    t0 = b.now
    actions = join_all(b, cid, n)
    # One second's worth goes in at once; the others wait, each told its place.
    assert len(messages(actions, p.ConferenceJoined)) == int(RATE)
    waiting = messages(actions, p.ConferenceWaiting)
    assert [w.place for w in waiting] == list(range(1, n - int(RATE) + 1))
    assert [w.ref for w in waiting] == [f"j{i}" for i in range(int(RATE), n)]
    assert waiting[0].wait_s == 1 / RATE
    assert math.isclose(waiting[-1].wait_s, 25 / RATE)
    joined_at = run_until_joined(b, cid, n)
    order = sorted(joined_at, key=lambda u: (joined_at[u], int(u[1:])))
    assert order == [site(i) for i in range(int(RATE), n)]
    # Let in at the rate, each about when it was told.
    for w, i in zip(waiting, range(int(RATE), n), strict=True):
        assert joined_at[site(i)] - t0 <= w.wait_s + 0.05 + 1e-9
    assert max(joined_at.values()) - t0 >= (n - RATE - 1) / RATE


def test_the_joined_reply_after_waiting_quotes_the_join_request() -> None:
    b, cid = conference(12)
    join_all(b, cid, 12)
    later = b.advance(1.0)
    refs = {m.ref for m in messages(later, p.ConferenceJoined)}
    assert refs == {"j10", "j11"}


def test_a_moderator_never_waits() -> None:
    b, cid = conference(20, host_joins=False)
    join_all(b, cid, 20)
    chair = b.send("sup0", p.JoinConference(id=b.msg_id(), conference_id=cid))
    (joined,) = messages(chair, p.ConferenceJoined, to="sup0")
    assert joined.role == "moderator"
    assert messages(chair, p.ConferenceWaiting) == []


def test_a_site_that_leaves_or_signs_out_while_waiting_is_not_let_in() -> None:
    b, cid = conference(14)
    join_all(b, cid, 14)
    b.send(site(11), p.LeaveConference(id=b.msg_id(), conference_id=cid))
    b.drop(site(12))
    b.advance(b.presence_cfg.grace_s + 0.01)  # o12's grace over: signed out
    b.advance(2.0)
    sites = b.sb.conferences.table[cid].sites
    assert site(10) in sites
    assert site(13) in sites
    assert site(11) not in sites
    assert site(12) not in sites


def test_a_waiting_site_asking_again_keeps_its_place() -> None:
    b, cid = conference(12)
    join_all(b, cid, 12)
    again = b.send(site(11), p.JoinConference(id="again", conference_id=cid))
    (waiting,) = messages(again, p.ConferenceWaiting)
    assert (waiting.place, waiting.ref) == (2, "again")
    (joined,) = [m for m in messages(b.advance(1.0), p.ConferenceJoined) if m.ref == "again"]
    assert joined.role == "site"


def test_those_waiting_are_told_when_the_conference_ends() -> None:
    b, cid = conference(12)
    join_all(b, cid, 12)
    ended = b.send("sup0", p.EndConference(id=b.msg_id(), conference_id=cid))
    assert {site(10), site(11)} <= recipients(ended, p.ConferenceEnded)
    assert messages(b.advance(2.0), p.ConferenceJoined) == []


def test_a_conference_locked_while_a_site_waited_refuses_it_in_its_turn() -> None:
    b, cid = conference(11)
    join_all(b, cid, 11)
    b.send("sup0", p.LockConference(id=b.msg_id(), conference_id=cid, locked=True))
    (refused,) = messages(b.advance(1.0), p.Error, to=site(10))
    assert (refused.ref, refused.code) == ("j10", "invalid_state")


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0, 25.0]),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=60),
)
def test_the_pace_lets_in_in_order_never_faster_than_the_rate(
    rate: float, gaps: list[float]
) -> None:
    """Whatever the arrivals, sites go in first come first, at most `max(1, rate)` + `rate`
    x T in any T seconds, and each waiting one is let in by the time it was told."""
    pace = JoinPace(rate)
    now = 0.0
    admitted: list[tuple[float, int]] = []
    told: dict[int, float] = {}
    arrivals = [(sum(gaps[: i + 1]), i) for i in range(len(gaps))]

    def turns_until(t: float) -> None:
        nonlocal now
        while (at := pace.next_turn(LOCAL_WORKER, now)) is not None and at <= t:
            now = max(now, at)
            admitted.extend((now, int(w.user)) for w in pace.turn(LOCAL_WORKER, now))
        now = t

    for t, i in arrivals:
        turns_until(t)
        place = pace.arrive(LOCAL_WORKER, Waiter("c", str(i), f"r{i}"), t)
        if place is None:
            admitted.append((t, i))
        else:
            told[i] = t + place.wait_s
    turns_until(math.inf)
    assert [i for _, i in admitted] == list(range(len(gaps)))
    times = [t for t, _ in admitted]
    burst = max(1.0, rate)
    for a in range(len(times)):
        for b in range(a, len(times)):
            assert b - a + 1 <= burst + rate * (times[b] - times[a]) + 1e-6
    for t, i in admitted:
        if i in told:
            assert t <= told[i] + 1e-6


def test_the_pace_drops_the_buckets_of_workers_gone() -> None:
    """Worker ids change per restart: 1000 ids each used once leave only those used within
    the last second (a full bucket is dropped), not one bucket per id ever seen."""
    pace = JoinPace(10.0)
    for i in range(1000):
        assert pace.arrive(f"worker-{i}", Waiter("c", str(i), f"r{i}"), i * 0.5) is None
    assert pace.workers_held() <= {"worker-998", "worker-999"}
    assert pace.arrive("worker-new", Waiter("c", "x", "rx"), 1000.0) is None
    assert pace.workers_held() == {"worker-new"}


def test_the_pace_keeps_a_drained_or_queued_workers_bucket() -> None:
    """Dropping full buckets changes no pace: a worker whose bucket is drained keeps it
    while others come and go, and its queue waits for the refill as before."""
    pace = JoinPace(2.0)
    assert pace.arrive("a", Waiter("c", "1", "r1"), 0.0) is None
    assert pace.arrive("a", Waiter("c", "2", "r2"), 0.0) is None
    assert pace.arrive("b", Waiter("c", "3", "r3"), 0.1) is None
    place = pace.arrive("a", Waiter("c", "4", "r4"), 0.1)
    assert place is not None
    assert place.place == 1
    assert pace.arrive("b", Waiter("c", "5", "r5"), 5.0) is None
    assert "a" in pace.workers_held()
    assert [w.user for w in pace.turn("a", 5.0)] == ["4"]
    assert pace.arrive("a", Waiter("c", "6", "r6"), 5.0) is None
    place = pace.arrive("a", Waiter("c", "7", "r7"), 5.0)
    assert place is not None
    assert place.wait_s == pytest.approx(0.5)
    assert pace.arrive("c", Waiter("c", "8", "r8"), 20.0) is None
    assert pace.workers_held() == {"a", "c"}
    assert [w.user for w in pace.turn("a", 20.0)] == ["7"]
    assert pace.arrive("d", Waiter("c", "9", "r9"), 40.0) is None
    assert pace.workers_held() == {"d"}


# ---- the moderators' view ---------------------------------------------------------------------


def test_the_moderator_gets_300_joins_in_batches_at_most_every_interval() -> None:
    n = 300
    b, cid = conference(n)
    b.advance(DELTA)  # the host's own join went out at once; a quiet spell follows
    start = len(b.log)
    join_all(b, cid, n)
    run_until_joined(b, cid, n)
    b.advance(DELTA)
    sent = messages(b.log[start:], p.SitesChanged, to="sup0")
    # Every site once joined is in some batch; every invitation answered too.
    seen = {s.user.id for m in sent for s in m.sites}
    assert seen == {site(i) for i in range(n)}
    answered = {i.invitee for m in sent for i in m.invitations if i.state == "joined"}
    assert answered == {site(i) for i in range(n)}
    # About one batch per interval while the joins last (30 s at 10 a second), not 600.
    assert len(sent) <= n / RATE / DELTA + 2


def test_batches_are_at_least_the_interval_apart() -> None:
    b, cid = conference(40)
    times: list[float] = []
    for i in range(40):
        out = b.send(site(i), p.JoinConference(id=f"j{i}", conference_id=cid))
        out += b.advance(0.07)
        if messages(out, p.SitesChanged, to="sup0"):
            times.append(b.now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) >= 4
    assert min(gaps) >= DELTA - 0.07 - 1e-9


def test_a_site_that_joined_and_left_within_a_batch_is_only_left() -> None:
    b, cid = conference(3)
    b.send(site(0), p.JoinConference(id=b.msg_id(), conference_id=cid))
    b.send(site(0), p.LeaveConference(id=b.msg_id(), conference_id=cid))
    (batch,) = messages(b.advance(DELTA), p.SitesChanged, to="sup0")
    assert (batch.sites, batch.left) == ([], [site(0)])


def test_a_hand_raised_after_a_quiet_spell_reaches_the_moderator_at_once() -> None:
    b, cid = conference(3)
    b.send(site(0), p.JoinConference(id=b.msg_id(), conference_id=cid))
    b.advance(DELTA)  # the join's batch
    b.advance(DELTA)  # a quiet spell
    raised = b.send(site(0), p.RaiseHand(id=b.msg_id(), conference_id=cid))
    (batch,) = messages(raised, p.SitesChanged, to="sup0")
    assert [(s.user.id, s.floor.state) for s in batch.sites] == [(site(0), "queued")]


# ---- what a site is sent ----------------------------------------------------------------------


def _largest_to_sites(n: int) -> tuple[int, set[str]]:
    """The largest frame any site was sent in a conference of `n` sites (joins, hands, a
    grant, a spotlight, a revoke), and the kinds sent to sites."""
    b, cid = conference(n, joins_per_s=1000.0)
    join_all(b, cid, n)
    for i in range(0, n, 3):
        b.send(site(i), p.RaiseHand(id=b.msg_id(), conference_id=cid))
    b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site=site(0)))
    b.send("sup0", p.Spotlight(id=b.msg_id(), conference_id=cid, site=site(0)))
    b.send("sup0", p.RevokeFloor(id=b.msg_id(), conference_id=cid, site=site(0)))
    b.advance(5.0)
    sites = {site(i) for i in range(n)}
    largest, kinds = 0, set()
    for a in sends(b.log):
        if sites & set(a.to):
            largest = max(largest, len(encode(a.message, Encoding.JSON)))
            kinds.add(type(a.message).__name__)
    return largest, kinds


def test_nothing_a_site_is_sent_grows_with_the_number_of_sites() -> None:
    small, kinds = _largest_to_sites(10)
    large, _ = _largest_to_sites(300)
    assert "SitesChanged" not in kinds
    # Only the count of sites (and of places in the queue) gets a digit or two longer.
    assert large <= small + 8, (small, large)


def test_a_site_joined_is_not_sent_the_roster_nor_whom_the_conference_invited() -> None:
    b, cid = conference(30, joins_per_s=1000.0)
    joined = messages(join_all(b, cid, 30), p.ConferenceJoined, to=site(5))[0]
    assert (joined.sites, joined.invitations) == ([], [])
    assert (joined.conference.invited_users, joined.conference.invited_courts) == ([], [])
    assert joined.state.sites == 7  # the host and o0..o5: a count, not a list
    host = messages(b.send("sup0", p.JoinConference(id="m", conference_id=cid)), p.ConferenceJoined)
    assert len(host[0].conference.invited_users) == 30
    assert len(host[0].sites) == 31


def test_a_grant_sends_the_moderator_the_queue_not_every_site_behind() -> None:
    n = 40
    b, cid = conference(n, joins_per_s=1000.0)
    join_all(b, cid, n)
    for i in range(n):
        b.send(site(i), p.RaiseHand(id=b.msg_id(), conference_id=cid))
    b.advance(DELTA)
    b.advance(DELTA)  # a quiet spell: the grant's batch goes at once
    granted = b.send("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site=site(0)))
    (batch,) = messages(granted, p.SitesChanged, to="sup0")
    assert [s.user.id for s in batch.sites] == [site(0)]
    # Hands raised at once go by site id: o1, o10, o11, ...
    assert batch.queue == sorted(site(i) for i in range(1, n))
    # Each site behind is still told its own new place.
    (moved,) = messages(granted, p.FloorStatus, to=site(7))
    assert moved.floor.position == batch.queue.index(site(7)) + 1


def test_a_site_whose_connection_dropped_while_it_waited_joins_away() -> None:
    b, cid = conference(11)
    join_all(b, cid, 11)
    b.drop(site(10))
    later = b.advance(1.0) + b.advance(DELTA)
    assert b.sb.conferences.table[cid].sites[site(10)].away
    seen = {
        s.user.id: s.status for m in messages(later, p.SitesChanged, to="sup0") for s in m.sites
    }
    assert seen[site(10)] == "away"


def test_sites_kept_current_by_the_changes_hold_the_state_a_new_join_is_given() -> None:
    """Each site applies `conference_update`'s changes to the state of its join; whenever it
    joined, it ends with the state the conference has (but for the count of sites, which
    joins do not send)."""
    b, cid = conference(6, joins_per_s=1000.0)
    held: dict[str, p.ConferenceState] = {}

    def apply(actions: list[Action]) -> None:
        for a in sends(actions):
            for user in a.to:
                if isinstance(a.message, p.ConferenceJoined):
                    held[user] = a.message.state
                elif isinstance(a.message, p.ConferenceUpdate) and user in held:
                    changed = {
                        k: v
                        for k in p.ConferenceChanges.__struct_fields__
                        if (v := getattr(a.message.changes, k)) is not msgspec.UNSET
                    }
                    held[user] = msgspec.structs.replace(
                        held[user], revision=a.message.revision, **changed
                    )

    def act(user: str, msg: p.ClientMessage) -> None:
        apply(b.send(user, msg))

    apply(b.log)
    for i in range(3):
        act(site(i), p.JoinConference(id=b.msg_id(), conference_id=cid))
    act("sup0", p.GrantFloor(id=b.msg_id(), conference_id=cid, site=site(0)))
    act(site(3), p.JoinConference(id=b.msg_id(), conference_id=cid))
    act("sup0", p.Spotlight(id=b.msg_id(), conference_id=cid, site=site(1)))
    act("sup0", p.LockConference(id=b.msg_id(), conference_id=cid, locked=True))
    act("sup0", p.UnmuteAll(id=b.msg_id(), conference_id=cid))
    act("sup0", p.RevokeFloor(id=b.msg_id(), conference_id=cid, site=site(0)))
    apply(b.advance(5.0))
    act("sup0", p.Spotlight(id=b.msg_id(), conference_id=cid, site=None))
    now = messages(b.send("sup0", p.JoinConference(id="x", conference_id=cid)), p.ConferenceJoined)
    expected = msgspec.structs.replace(now[0].state, sites=0)
    for user in ("sup0", site(0), site(1), site(2), site(3)):
        assert msgspec.structs.replace(held[user], sites=0) == expected, user
