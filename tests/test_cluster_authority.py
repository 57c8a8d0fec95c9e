"""The authority's pure state (signalling/cluster/authority.py) driven directly, no Redis and
no event loop: where users are, resumes across nodes, a resync's reconciliation (what it
closes comes back as `DisconnectOn`), a node's death, and a dead authority's journal."""

from __future__ import annotations

from identity import Identity
from signalling import protocol as p
from signalling.cluster import wire as w
from signalling.cluster.authority import AuthorityState, DisconnectOn
from signalling.errors import CLOSE_REPLACED
from tests.corehelpers import Board, ended, messages, officer, operator, placed, records

RUN = 1.0


def info(identity: Identity, session_id: str, resume_token: str = "r") -> w.ConnectionInfo:
    return w.ConnectionInfo(
        user=identity.user_id,
        name=identity.name,
        role=identity.role.value,
        court=identity.court,
        expires_at=identity.expires_at,
        session_id=session_id,
        resume_token=resume_token,
        device="d",
        app_version="1",
    )


def connect(
    state: AuthorityState, board: Board, identity: Identity, node: str, session_id: str
) -> None:
    """`identity` connects through `node` and is welcomed there."""
    envelope = w.Connect(node=node, run=RUN, conn=info(identity, session_id), resume=None)
    state.connect(envelope, board.now)
    state.welcomed([identity.user_id])


def said(node: str, user: str, session_id: str) -> w.ClientMessage:
    """A message of `user`'s connection of `session_id` on `node`."""
    return w.ClientMessage(
        node=node, run=RUN, user=user, session_id=session_id, message=p.CallCenter(id="m1")
    )


def test_a_user_is_where_their_welcome_went_not_where_they_connected_first() -> None:
    b = Board()
    state = AuthorityState(core=b.sb)
    envelope = w.Connect(node="n2", run=RUN, conn=info(officer("o1"), "s1"), resume=None)
    actions = state.connect(envelope, b.now)
    assert messages(actions, p.Welcome, to="o1")
    # Until the welcome is delivered, the user is arriving, not there.
    assert state.where == {}
    assert state.arriving == {"o1": ("n2", RUN)}
    state.welcomed(["o1"])
    assert state.where == {"o1": ("n2", RUN)}
    assert state.arriving == {}


def test_a_message_of_a_replaced_connection_is_not_admitted() -> None:
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    connect(state, b, officer("o1"), "n2", "s2")
    old = w.ClientMessage(
        node="n1", run=RUN, user="o1", session_id="s1", message=p.CallCenter(id="m1")
    )
    new = w.ClientMessage(
        node="n2", run=RUN, user="o1", session_id="s2", message=p.CallCenter(id="m1")
    )
    assert not state.admits(old)
    assert state.admits(new)


def test_a_resume_through_another_node_is_known_by_the_id_that_node_drew() -> None:
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    session = b.sb.session("o1")
    assert session is not None
    state.closed(w.Closed(node="n1", run=RUN, user="o1", session_id="s1"), b.now)
    resumed = w.Connect(
        node="n2", run=RUN, conn=info(officer("o1"), "s-drawn"), resume=session.resume_token
    )
    state.connect(resumed, b.now)
    assert state.aliases == {("o1", "s-drawn"): "s1"}
    assert state.admits(said("n2", "o1", "s-drawn"))
    # Its close, under the drawn id, closes the session's connection.
    state.welcomed(["o1"])
    state.closed(w.Closed(node="n2", run=RUN, user="o1", session_id="s-drawn"), b.now)
    assert state.aliases == {}
    assert "o1" not in state.where


def test_a_resync_adopts_unknown_sessions_and_returns_stale_connections_to_close() -> None:
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    connect(state, b, operator("op1"), "n2", "s2")
    report = w.Report(
        node="n3",
        run=RUN,
        conns=[
            # Replaced since by the session s1 on n1.
            info(officer("o1"), "s-old"),
            # Resumed on n2 since; n3's close of it is on its way.
            info(operator("op1"), "s2"),
            # Unknown to this core: adopted.
            info(officer("o2"), "s9"),
        ],
    )
    reconciled = state.reconcile(report, b.now)
    assert reconciled.closes == [
        DisconnectOn("n3", "o1", "s-old", CLOSE_REPLACED, "signed in elsewhere"),
        DisconnectOn("n3", "op1", "s2", CLOSE_REPLACED, "resumed elsewhere"),
    ]
    assert [e.data["user"] for e in records(reconciled.actions, "session_adopted")] == ["o2"]
    assert state.arriving == {"o2": ("n3", RUN)}


def test_a_resync_applies_the_close_of_a_connection_its_node_no_longer_reports() -> None:
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    reconciled = state.reconcile(w.Report(node="n1", run=RUN, conns=[]), b.now)
    assert reconciled.closes == []
    session = b.sb.session("o1")
    assert session is not None
    assert not session.connected
    assert state.where == {}


def test_a_dead_nodes_users_are_lost_but_not_those_of_its_new_run() -> None:
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    connect(state, b, operator("op1"), "n2", "s2")
    call_id = placed(b.call_center("o1"))
    b.accept("op1", call_id)
    # n2 restarted: its current run keeps its users (none connected through it yet).
    assert state.node_lost("n2", current_run=RUN, now=b.now).sessions == 0
    lost = state.node_lost("n1", current_run=None, now=b.now)
    assert lost.sessions == 1
    assert ended(lost.actions, call_id).reason == p.EndReason.NODE_LOST
    assert b.sb.session("o1") is None
    assert state.where == {"op1": ("n2", RUN)}


def test_calls_whose_media_a_dead_node_relayed_end() -> None:
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    connect(state, b, operator("op1"), "n1", "s2")
    call_id = placed(b.call_center("o1"))
    b.accept("op1", call_id)
    assert state.media_node(call_id, [], fallback="m1") == "m1"
    # Asked again, the same node, whatever the registry says now.
    assert state.media_node(call_id, [], fallback="other") == "m1"
    lost = state.node_lost("m1", current_run=None, now=b.now)
    assert lost.sessions == 0
    assert ended(lost.actions, call_id).reason == p.EndReason.NODE_LOST


def test_a_dead_authoritys_calls_end_and_its_unreported_sessions_sign_out() -> None:
    old = Board()
    old.sign_in(officer("o1"), operator("op1"), officer("o2"))
    call_id = placed(old.call_center("o1"))
    old.accept("op1", call_id)
    facts = old.sb.call_facts(call_id)
    assert facts is not None
    calls = {
        call_id: w.encode(w.JournalCall(notify=list(facts.notify), ended=facts.ended)),
        "garbage": b"\xc1",
    }
    sessions = {}
    for user in ("o1", "op1", "o2"):
        sign_out = old.sb.session_facts(user)
        assert sign_out is not None
        entry = w.JournalSession(session_id=str(sign_out["session"]), sign_out=sign_out)
        sessions[user] = w.encode(entry)
    fresh = Board()
    state = AuthorityState(core=fresh.sb)
    inherited = state.inherit_calls(calls, fresh.now)
    assert inherited.ended == [call_id]
    assert inherited.waiting == []
    assert ended(inherited.actions, call_id).reason == p.EndReason.NODE_LOST
    assert [e.data["call"] for e in records(inherited.actions, "call_ended")] == [call_id]
    # o1 and op1 were reported and adopted (o1's journal field rewritten); op1 then
    # signed out here (its field deleted): only o2 was served by nobody alive.
    report = w.Report(
        node="n2",
        run=RUN,
        conns=[
            info(officer("o1"), str(old.sb.session_facts("o1")["session"])),  # type: ignore[index]
            info(operator("op1"), str(old.sb.session_facts("op1")["session"])),  # type: ignore[index]
        ],
    )
    state.reconcile(report, fresh.now)
    state.welcomed(["o1", "op1"])
    fresh.drop("op1")
    now_in_journal = {"o1": b"rewritten", "o2": sessions["o2"]}
    left = state.inherit_sessions(sessions, now_in_journal, fresh.now)
    assert left.closed == ["o2"]
    assert [e.data["user"] for e in records(left.actions, "sign_out")] == ["o2"]


def test_a_session_whose_user_signed_in_again_with_the_new_authority_is_signed_out() -> None:
    """o1's session s-old was in the dead authority's journal; o1 reconnected before any
    resync, its resume token unknown to the new core, and signed in again (s-new, which
    rewrote the journal field): s-old was served by nobody alive and is signed out; the
    field, now s-new's, is kept."""
    old = Board()
    old.sign_in(officer("o1"))
    sign_out = old.sb.session_facts("o1")
    assert sign_out is not None
    entry = w.JournalSession(session_id=str(sign_out["session"]), sign_out=sign_out)
    before = {"o1": w.encode(entry)}
    fresh = Board()
    state = AuthorityState(core=fresh.sb)
    connect(state, fresh, officer("o1"), "n2", "s-new")
    left = state.inherit_sessions(before, {"o1": b"s-new's entry"}, fresh.now)
    assert [e.data["session"] for e in records(left.actions, "sign_out")] == [sign_out["session"]]
    assert left.closed == []
    current = fresh.sb.session("o1")
    assert current is not None
    assert current.session_id == "s-new"


def arrive(
    state: AuthorityState,
    board: Board,
    identity: Identity,
    node: str,
    session_id: str,
    resume: str | None = None,
) -> None:
    """`identity` connects through `node`; its welcome is not delivered yet."""
    envelope = w.Connect(node=node, run=RUN, conn=info(identity, session_id), resume=resume)
    state.connect(envelope, board.now)


def test_a_user_who_signed_in_again_elsewhere_is_not_signed_out_with_the_dead_node() -> None:
    """o1 was on n1 and signed in again on n2 (a new session, replacing the one on n1)
    whose welcome is still on its way when n1 is declared dead: the new session lives on,
    only the replaced one is over (signed out `replaced`, by the core, once)."""
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    arrive(state, b, officer("o1"), "n2", "s2")
    lost = state.node_lost("n1", current_run=None, now=b.now)
    assert lost.sessions == 0
    assert records(lost.actions, "sign_out") == []
    session = b.sb.session("o1")
    assert session is not None
    assert session.session_id == "s2"
    state.welcomed(["o1"])
    assert state.where == {"o1": ("n2", RUN)}


def test_a_user_who_resumed_elsewhere_is_not_signed_out_with_the_dead_node() -> None:
    """o1 resumed its session on n2 (same session) before n1 was declared dead, its welcome
    still on its way: the session is not lost."""
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    session = b.sb.session("o1")
    assert session is not None
    arrive(state, b, officer("o1"), "n2", "s-drawn", resume=session.resume_token)
    lost = state.node_lost("n1", current_run=None, now=b.now)
    assert lost.sessions == 0
    assert records(lost.actions, "sign_out") == []
    assert b.sb.session("o1") is not None


def test_a_user_whose_welcome_was_on_its_way_through_the_dead_node_signs_out() -> None:
    """o1 connected through n1, which died before o1's welcome went out: the session was
    served by nobody alive, so it signs out `node_lost` (it used to stay open for ever),
    once, even when o1 had been on n1 before too."""
    b = Board()
    state = AuthorityState(core=b.sb)
    arrive(state, b, officer("o1"), "n1", "s1")
    connect(state, b, officer("o2"), "n1", "s2")
    arrive(state, b, officer("o2"), "n1", "s3")
    lost = state.node_lost("n1", current_run=None, now=b.now)
    assert lost.sessions == 2
    sign_outs = records(lost.actions, "sign_out")
    assert sorted((e.data["session"], e.data["reason"]) for e in sign_outs) == [
        ("s1", "node_lost"),
        ("s3", "node_lost"),
    ]
    assert b.sb.session("o1") is None
    assert b.sb.session("o2") is None
    assert state.where == {}
    assert state.arriving == {}


def test_a_connection_resumed_away_from_a_node_that_died_is_closed_with_it() -> None:
    """o1 on n1 resumed its session on n2 while n1's connection was still open (n1 dying):
    the core counts two connections until n1's close is reported, which never comes from a
    dead node. Once n1 is declared dead its connection counts as closed, so when o1 later
    leaves n2 the session goes away (and signs out after its grace) instead of staying
    connected for ever."""
    b = Board()
    state = AuthorityState(core=b.sb)
    connect(state, b, officer("o1"), "n1", "s1")
    session = b.sb.session("o1")
    assert session is not None
    arrive(state, b, officer("o1"), "n2", "s-drawn", resume=session.resume_token)
    state.welcomed(["o1"])
    lost = state.node_lost("n1", current_run=None, now=b.now)
    assert lost.sessions == 0
    assert records(lost.actions, "sign_out") == []
    assert session.connected
    state.closed(w.Closed(node="n2", run=RUN, user="o1", session_id="s1"), b.now)
    assert not session.connected
