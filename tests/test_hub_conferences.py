"""Conferences through the real server over loopback WebSockets: a province meeting from
creation to end, the floor with its revoke grace on a fake clock, two moderators acting at
once, the chair's connection dropping, a site's connection dropping and coming back, a
witness with a scoped token, and what the trace holds."""

from __future__ import annotations

import time
from typing import Any

import jwt

from tests.conftest import Serve
from tests.fakeclock import FakeClock
from tests.wsclient import Client, Server

REVOKE_GRACE_S = 3.0
MODERATOR_DELTA_S = 0.5


async def meeting(server: Server) -> tuple[Client, dict[str, Client], str]:
    """sup0 (P) hosts a meeting of every court under P01; op1 (P0101) and op3 (P0102) join."""
    host = await server.connect("sup0", "supervisor", "P")
    consoles = {
        "op1": await server.connect("op1", "operator", "P0101"),
        "op2": await server.connect("op2", "operator", "P0101"),
        "op3": await server.connect("op3", "operator", "P0102"),
    }
    created = await host.request(
        "create_conference",
        reply="conference_created",
        title="Province meeting",
        invite_below=["P01"],
    )
    cid: str = created["conference"]["conference_id"]
    assert created["conference"]["status"] == "running"
    for client in consoles.values():
        invitation = await client.expect("conference_invitation")
        assert invitation["conference"]["conference_id"] == cid
    joined = await host.request("join_conference", reply="conference_joined", conference_id=cid)
    assert joined["role"] == "moderator"
    for user in ("op1", "op3"):
        site = await consoles[user].request(
            "join_conference", reply="conference_joined", conference_id=cid
        )
        assert site["role"] == "site"
    # op1 answered for P0101: its other console stops ringing.
    stopped = await consoles["op2"].expect("invitation_stopped", conference_id=cid)
    assert (stopped["reason"], stopped["by"]["id"]) == ("answered", "op1")
    return host, consoles, cid


async def revision_of(client: Client, cid: str) -> int:
    joined = await client.request("join_conference", reply="conference_joined", conference_id=cid)
    revision: int = joined["state"]["revision"]
    return revision


async def test_a_province_meeting_from_creation_to_end_is_in_the_trace(serve: Serve) -> None:
    clock = FakeClock(time.time())
    server = await serve(clock=clock)
    host, consoles, cid = await meeting(server)
    op1, op3 = consoles["op1"], consoles["op3"]
    # op1 raises a hand and is told its place; the moderator sees it.
    await op1.request("raise_hand", conference_id=cid)
    queued = await op1.expect("floor_status", conference_id=cid)
    assert (queued["floor"]["state"], queued["floor"]["position"]) == ("queued", 1)
    # The moderator's view goes in batches (conferences.moderator_delta_s): this one at the
    # end of the interval that began with the host's own join.
    clock.advance(MODERATOR_DELTA_S)
    await host.expect(
        "sites_changed",
        where=lambda m: any(
            (s["user"]["id"], s["floor"]["state"]) == ("op1", "queued") for s in m["sites"]
        ),
    )
    # Granted: every site sees the holder; then revoked, with the grace.
    await host.request("grant_floor", conference_id=cid, site="op1")
    granted = await op1.expect("floor_status", where=lambda m: m["floor"]["state"] == "permitted")
    assert granted["floor"]["called"] is False
    # Sites are sent what changed (here the holders and the spotlight), not the whole state.
    update = await op3.expect("conference_update", where=lambda m: m["changes"].get("holders"))
    assert [h["id"] for h in update["changes"]["holders"]] == ["op1"]
    assert "locked" not in update["changes"]
    await host.request("revoke_floor", conference_id=cid, site="op1")
    revoking = await op1.expect(
        "floor_status", where=lambda m: m["floor"]["state"] == "pending_revoke"
    )
    assert revoking["floor"]["until"] == round((clock.now() + REVOKE_GRACE_S) * 1000, 3)
    clock.advance(REVOKE_GRACE_S)
    taken = await op1.expect("floor_status", where=lambda m: m["floor"]["state"] == "not_permitted")
    assert taken["reason"] == "moderator"
    # Roll call, then mute all takes the floor from everyone at once.
    await host.request("grant_floor", conference_id=cid, site="op3")
    called = await op3.expect("floor_status", where=lambda m: m["floor"]["state"] == "permitted")
    assert called["floor"]["called"] is True
    await host.request("mute_all", conference_id=cid)
    muted = await op3.expect("floor_status", where=lambda m: m["floor"]["state"] == "not_permitted")
    assert muted["reason"] == "mute_all"
    # Locked: a new site is refused; ended: everyone is told.
    await host.request("lock_conference", conference_id=cid, locked=True)
    late = await consoles["op2"].send("join_conference", conference_id=cid)
    assert (await consoles["op2"].error_for(late))["code"] == "invalid_state"
    await host.request("end_conference", conference_id=cid)
    for client in (host, op1, op3):
        ended = await client.expect("conference_ended", conference_id=cid)
        assert (ended["reason"], ended["by"]) == ("ended", "sup0")
    await server.wait_recorded("conference_ended", conference=cid, reason="ended")
    kinds = [e.kind for e in server.recorder.events if e.data.get("conference") == cid]
    assert kinds[:2] == ["conference_created", "conference_started"]
    for kind in (
        "site_joined",
        "floor_requested",
        "floor_granted",
        "floor_revoked",
        "conference_muted",
        "conference_locked",
        "conference_ended",
    ):
        assert kind in kinds, kind
    (started,) = server.recorder.of_kind("conference_started")
    assert (started.data["court"], started.data["conference"]) == ("P", cid)


async def test_of_two_moderators_acting_at_once_one_wins_and_the_other_is_told(
    server: Server,
) -> None:
    host, _, cid = await meeting(server)
    co = await server.connect("sup1", "supervisor", "P01")
    await co.request("join_conference", reply="conference_joined", conference_id=cid)
    await host.request("name_moderator", conference_id=cid, user="sup1")
    revision = await revision_of(host, cid)
    first = await host.send("grant_floor", conference_id=cid, site="op1", revision=revision)
    second = await co.send("grant_floor", conference_id=cid, site="op3", revision=revision)
    assert (await host.reply_to(first))["type"] == "ack"
    refused = await co.error_for(second)
    assert (refused["code"], refused["field"]) == ("conflict", "revision")


async def test_when_the_chairs_connection_drops_a_co_moderator_takes_the_chair(
    server: Server,
) -> None:
    host, consoles, cid = await meeting(server)
    co = await server.connect("sup1", "supervisor", "P01")
    await co.request("join_conference", reply="conference_joined", conference_id=cid)
    await host.request("name_moderator", conference_id=cid, user="sup1")
    await host.close()
    update = await consoles["op1"].expect(
        "conference_update", where=lambda m: (m["changes"].get("chair") or {}).get("id") == "sup1"
    )
    assert update["changes"]["chair"]["name"] == "sup1"
    await server.wait_recorded("chair_changed", conference=cid, chair="sup1", reason="takeover")


async def test_a_site_dropped_for_a_moment_comes_back_with_its_state_not_a_new_join(
    server: Server,
) -> None:
    host, consoles, cid = await meeting(server)
    op1 = consoles["op1"]
    await host.request("grant_floor", conference_id=cid, site="op1")
    await op1.expect("floor_status", where=lambda m: m["floor"]["state"] == "permitted")
    await op1.close()
    await host.expect("sites_changed", where=lambda m: m["sites"][0]["status"] == "away")
    back = await server.connect("op1", "operator", "P0101", resume=op1.welcome["resume_token"])
    assert back.welcome["resumed"] is True
    again = await back.request("join_conference", reply="conference_joined", conference_id=cid)
    assert again["floor"]["state"] == "permitted"
    joins: list[Any] = [
        e for e in server.recorder.of_kind("site_joined") if e.data["user"] == "op1"
    ]
    assert len(joins) == 1


async def test_a_witness_watches_only_their_conference(server: Server) -> None:
    _, _, cid = await meeting(server)
    witness = await server.connect(
        "w1", "witness", "P", scope=f"conference:{cid}", name="Deputy Wang"
    )
    joined = await witness.request("join_conference", reply="conference_joined", conference_id=cid)
    assert (joined["role"], joined["sites"]) == ("witness", [])
    hand = await witness.send("raise_hand", conference_id=cid)
    assert (await witness.error_for(hand))["code"] == "forbidden"
    roster = await witness.send("get_roster")
    assert (await witness.error_for(roster))["code"] == "forbidden"
    await server.wait_recorded("site_joined", conference=cid, user="w1", role="witness")
    await witness.request("leave_conference", conference_id=cid)
    await server.wait_recorded("site_left", conference=cid, user="w1", reason="left")


async def test_a_witness_token_without_a_conference_is_refused_at_the_door(
    server: Server,
) -> None:
    """`commandcenter token` will not mint one; a token made by hand is refused 4401."""
    claims = {"sub": "w2", "role": "witness", "court": "P", "exp": time.time() + 60}
    token = jwt.encode(claims, server.config.auth.jwt_secret, algorithm="HS256")
    client = await server.open("w2", token=token)
    assert await client.expect_close(4401) == "invalid claim"


async def test_a_moderator_invites_a_signed_in_user_and_withdraws_the_invitation(
    server: Server,
) -> None:
    """invite_to_conference rings at a signed-in user who was not invited; withdraw_invitation
    stops it and the user may no longer join; both are in the trace."""
    host, _, cid = await meeting(server)
    officer = await server.connect("o9", "officer", "P0101", name="Officer Nine")
    # An officer is not invited by the courts' invitations: joining is refused.
    refused = await officer.error_for(await officer.send("join_conference", conference_id=cid))
    assert refused["code"] == "forbidden"
    await host.request("invite_to_conference", conference_id=cid, user="o9")
    rung = await officer.expect("conference_invitation")
    assert rung["conference"]["conference_id"] == cid
    listed = await host.request("list_conferences", reply="conferences")
    assert [c["invited_users"] for c in listed["conferences"]] == [["o9"]]
    await host.expect(
        "sites_changed",
        where=lambda m: (
            {"invitee": "o9", "kind": "user", "state": "ringing", "by": None} in m["invitations"]
        ),
    )
    again = await host.error_for(
        await host.send("invite_to_conference", conference_id=cid, user="o9")
    )
    assert (again["code"], again["field"]) == ("invalid_state", "user")
    nobody = await host.error_for(
        await host.send("invite_to_conference", conference_id=cid, user="nobody")
    )
    assert (nobody["code"], nobody["field"]) == ("not_found", "user")
    await host.request("withdraw_invitation", conference_id=cid, user="o9")
    stopped = await officer.expect("invitation_stopped", conference_id=cid)
    assert (stopped["reason"], stopped["by"]["id"]) == ("withdrawn", "sup0")
    await host.expect(
        "sites_changed",
        where=lambda m: any(
            i["invitee"] == "o9" and i["state"] == "withdrawn" for i in m["invitations"]
        ),
    )
    refused = await officer.error_for(await officer.send("join_conference", conference_id=cid))
    assert refused["code"] == "forbidden"
    twice = await host.error_for(
        await host.send("withdraw_invitation", conference_id=cid, user="o9")
    )
    assert (twice["code"], twice["field"]) == ("not_found", "user")
    # Invited again, the officer joins as a site.
    await host.request("invite_to_conference", conference_id=cid, user="o9")
    await officer.expect("conference_invitation")
    joined = await officer.request("join_conference", reply="conference_joined", conference_id=cid)
    assert joined["role"] == "site"
    answered = await host.error_for(
        await host.send("withdraw_invitation", conference_id=cid, user="o9")
    )
    assert answered["code"] == "invalid_state"
    await server.wait_recorded("conference_invited", conference=cid, user="o9", by="sup0")
    await server.wait_recorded(
        "conference_invitation_withdrawn", conference=cid, user="o9", by="sup0"
    )


async def test_only_moderators_invite_and_witnesses_are_not_invited(server: Server) -> None:
    host, consoles, cid = await meeting(server)
    await server.connect("w1", "witness", "P", scope=f"conference:{cid}")
    witness = await host.error_for(
        await host.send("invite_to_conference", conference_id=cid, user="w1")
    )
    assert (witness["code"], witness["field"]) == ("forbidden", "user")
    await server.connect("o9", "officer", "P0101")
    site = consoles["op1"]
    refused = await site.error_for(
        await site.send("invite_to_conference", conference_id=cid, user="o9")
    )
    assert refused["code"] == "forbidden"
    refused = await site.error_for(
        await site.send("withdraw_invitation", conference_id=cid, user="o9")
    )
    assert refused["code"] == "forbidden"


async def test_invitations_are_bounded_by_max_invitations(serve: Serve) -> None:
    server = await serve(conferences={"max_invitations": 1})
    host = await server.connect("sup0", "supervisor", "P")
    created = await host.request(
        "create_conference", reply="conference_created", title="Small", invite_users=["o8"]
    )
    cid = created["conference"]["conference_id"]
    await host.request("join_conference", reply="conference_joined", conference_id=cid)
    await server.connect("o9", "officer", "P0101")
    busy = await host.error_for(
        await host.send("invite_to_conference", conference_id=cid, user="o9")
    )
    assert busy["code"] == "busy"


async def test_the_chair_removes_a_co_moderator_who_stays_as_a_site(server: Server) -> None:
    host, consoles, cid = await meeting(server)
    op1, op3 = consoles["op1"], consoles["op3"]
    await host.request("name_moderator", conference_id=cid, user="op1")
    await op1.expect("sites_changed")
    # Only the chair removes, and not itself.
    refused = await op1.error_for(
        await op1.send("remove_moderator", conference_id=cid, user="sup0")
    )
    assert refused["code"] == "forbidden"
    itself = await host.error_for(
        await host.send("remove_moderator", conference_id=cid, user="sup0")
    )
    assert (itself["code"], itself["field"]) == ("invalid_state", "user")
    not_one = await host.error_for(
        await host.send("remove_moderator", conference_id=cid, user="op3")
    )
    assert (not_one["code"], not_one["field"]) == ("not_found", "user")
    await host.request("remove_moderator", conference_id=cid, user="op1")
    await host.expect(
        "sites_changed",
        where=lambda m: any(s["user"]["id"] == "op1" and s["role"] == "site" for s in m["sites"]),
    )
    # op1 itself is told, at once, so its pages leave the moderator view.
    told = await op1.expect(
        "sites_changed",
        where=lambda m: any(s["user"]["id"] == "op1" and s["role"] == "site" for s in m["sites"]),
    )
    assert [s["user"]["id"] for s in told["sites"]] == ["op1"]
    # A site again: it may raise a hand, and may no longer moderate.
    await op1.request("raise_hand", conference_id=cid)
    denied = await op1.error_for(await op1.send("mute_all", conference_id=cid))
    assert denied["code"] == "forbidden"
    listed = await op3.request("list_conferences", reply="conferences")
    assert [c["moderators"] for c in listed["conferences"] if c["conference_id"] == cid] == [
        ["sup0"]
    ]
    await server.wait_recorded("moderator_removed", conference=cid, user="op1", by="sup0")
