"""The WebSocket edge under bad input: refused connections (4401, 4400), bad frames answered
with an error naming the field, oversize frames, the bad-frame and message-rate limits
(4400, 4429), forbidden actions, and the reply encoding following the frame's."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType

from signalling.clock import SystemClock
from tests.conftest import Serve
from tests.wsclient import Server

DEVICE_TIME = 1.7e12


# ---- refused connections -------------------------------------------------------------------


async def test_no_token_is_closed_4401(server: Server) -> None:
    client = await server.open("anon")
    assert await client.expect_close(4401) == "token missing"


async def test_bad_token_is_closed_4401(server: Server) -> None:
    client = await server.open("anon", token="not-a-jwt")
    assert await client.expect_close(4401) == "invalid token"


def _signed(server: Server, **claims: Any) -> str:
    import jwt

    base: dict[str, Any] = {"sub": "o1", "role": "officer", "court": "P0101"}
    return jwt.encode({**base, **claims}, server.config.auth.jwt_secret, algorithm="HS256")


@pytest.mark.parametrize(
    "claims",
    [{"exp": 10**400}, {"exp": 2**64, "nbf": -(2**70)}, {"exp": 4e9, "iat": 10**309}],
)
async def test_a_date_beyond_any_calendar_is_refused_401_not_a_crash(
    server: Server, claims: dict[str, Any]
) -> None:
    """Correctly signed, but a NumericDate no float holds: 401 over HTTP, 4401 over the
    WebSocket (it was an OverflowError, a 500)."""
    token = _signed(server, **claims)
    resp = await server.http.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    client = await server.open("o1", token=token)
    assert await client.expect_close(4401) == "invalid claim"


async def test_a_control_character_in_a_user_id_is_refused(server: Server) -> None:
    """An ANSI escape in `sub` would steer an operator's terminal through the log."""
    token = _signed(server, sub="o1\x1b[2J", exp=int(time.time()) + 60)
    client = await server.open("o1", token=token)
    assert await client.expect_close(4401) == "invalid claim"


async def test_a_fullwidth_id_signs_in_as_its_plain_spelling(server: Server) -> None:
    token = _signed(server, sub="\uff4f\uff11", exp=int(time.time()) + 60)
    client = await server.open("o1", token=token)
    welcome = await client.expect("welcome")
    assert welcome["user"]["id"] == "o1"


async def test_token_signed_with_another_secret_is_closed_4401(server: Server) -> None:
    from commandcenter.auth import Role, issue_token

    forged = issue_token(
        "another-secret-that-is-long-enough-for-hs256",
        user="o1",
        role=Role.OFFICER,
        court="P0101",
        name="o1",
        ttl_s=600,
        now=time.time(),
    )
    client = await server.open("o1", token=forged)
    assert await client.expect_close(4401) == "invalid token"


async def test_expired_token_is_closed_4401(server: Server) -> None:
    from commandcenter.auth import Role, issue_token

    expired = issue_token(
        server.config.auth.jwt_secret,
        user="o1",
        role=Role.OFFICER,
        court="P0101",
        name="o1",
        ttl_s=60,
        now=time.time() - 3600,
    )
    client = await server.open("o1", token=expired)
    assert await client.expect_close(4401) == "token expired"


async def test_bearer_header_authenticates_like_the_query_token(server: Server) -> None:
    token = server.token("o1", "officer", "P0101")
    client = await server.open("o1", headers={"Authorization": f"Bearer {token}"})
    welcome = await client.expect("welcome")
    assert welcome["user"]["id"] == "o1"


async def test_token_that_expires_during_the_session_closes_4401_on_the_next_frame(
    serve: Serve,
) -> None:
    server = await serve(auth={"leeway_s": 0.0})
    token = server.token("o1", "officer", "P0101", ttl_s=2)
    client = await server.open("o1", token=token)
    await client.expect("welcome")
    deadline = time.monotonic() + 4.0
    while client.close_code is None and time.monotonic() < deadline:
        await client.send("heartbeat", device_time=DEVICE_TIME)
        await client.assert_no("error", within=0.1)
    assert await client.expect_close(4401) == "token expired"


async def test_an_idle_connection_is_closed_4401_when_its_token_expires(serve: Serve) -> None:
    """Authorisation lasts as long as the token, even for a client that sends nothing."""
    server = await serve(auth={"leeway_s": 0.0})
    client = await server.open("o1", token=server.token("o1", "officer", "P0101", ttl_s=1))
    await client.expect("welcome")
    assert await client.expect_close(4401, timeout=4.0) == "token expired"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"encoding": "xml"}, "encoding must be json or msgpack"),
        ({"v": "2"}, "protocol version 1 only"),
        ({"v": "one"}, "protocol version 1 only"),
        ({"device": "d" * 65}, "device longer than 64"),
    ],
)
async def test_bad_query_parameter_is_closed_4400(
    server: Server, query: dict[str, str], reason: str
) -> None:
    token = server.token("o1", "officer", "P0101")
    client = await server.open("o1", token=token, query=query)
    assert await client.expect_close(4400) == reason


# ---- bad frames ----------------------------------------------------------------------------


BAD_FRAMES: list[tuple[str, dict[str, Any] | str, str, str | None, str | None]] = [
    # name, frame (object or raw text), error code, field, ref
    ("undecodable", "{not json", "invalid_message", None, None),
    ("not an object", "[1, 2]", "invalid_message", None, None),
    ("unknown type", {"type": "teleport", "id": "f1"}, "invalid_message", "type", "f1"),
    ("missing type", {"id": "f2"}, "invalid_message", "type", "f2"),
    ("missing field", {"type": "accept", "id": "f3"}, "invalid_message", "call_id", "f3"),
    (
        "extra field",
        {"type": "heartbeat", "id": "f4", "device_time": DEVICE_TIME, "colour": "red"},
        "invalid_message",
        "colour",
        "f4",
    ),
    (
        "wrong type",
        {"type": "heartbeat", "id": "f5", "device_time": "noon"},
        "invalid_message",
        "device_time",
        "f5",
    ),
    (
        "overlong string",
        {"type": "accept", "id": "f6", "call_id": "c" * 65},
        "invalid_message",
        "call_id",
        "f6",
    ),
    (
        "out of range",
        {
            "type": "position",
            "id": "f7",
            "lat": 91.0,
            "lon": 0.0,
            "accuracy_m": 1.0,
            "device_time": DEVICE_TIME,
        },
        "invalid_message",
        "lat",
        "f7",
    ),
    (
        "overlong id is no ref",
        {"type": "heartbeat", "id": "i" * 65, "device_time": DEVICE_TIME},
        "invalid_message",
        "id",
        None,
    ),
]


@pytest.mark.parametrize(
    ("frame", "code", "field", "ref"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_FRAMES],
)
async def test_bad_frame_gets_an_error_naming_the_field_and_the_connection_stays(
    server: Server, frame: dict[str, Any] | str, code: str, field: str | None, ref: str | None
) -> None:
    client = await server.connect("o1", "officer", "P0101")
    await client.send_raw(frame if isinstance(frame, str) else json.dumps(frame))
    error = await client.expect("error")
    assert (error["code"], error["field"], error["ref"]) == (code, field, ref)
    assert error["reason"]
    await client.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)


async def test_oversize_frame_gets_frame_too_large_and_the_connection_stays(
    serve: Serve,
) -> None:
    server = await serve(limits={"max_frame_bytes": 1024})
    client = await server.connect("o1", "officer", "P0101")
    await client.send("heartbeat", device_time=DEVICE_TIME, pad="x" * 2000)
    error = await client.expect("error")
    assert (error["code"], error["ref"]) == ("frame_too_large", None)
    await client.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)


async def test_too_many_bad_frames_close_4400_after_answering_the_others(
    serve: Serve,
) -> None:
    server = await serve(limits={"bad_frames_before_close": 5})
    client = await server.connect("o1", "officer", "P0101")
    for _ in range(5):
        await client.send_raw("{bad")
    assert await client.expect_close(4400) == "too many invalid frames"
    errors = [m for m in client.unread() if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["invalid_message"] * 4


async def test_message_flood_is_rate_limited_then_closed_4429(serve: Serve) -> None:
    server = await serve(
        limits={"messages_per_s": 5.0, "message_burst": 10, "rate_limited_before_close": 3}
    )
    client = await server.connect("o1", "officer", "P0101")
    sent = [await client.send("heartbeat", device_time=DEVICE_TIME) for _ in range(30)]
    assert await client.expect_close(4429) == "message rate exceeded"
    got = [m["type"] for m in client.unread()]
    # The burst is served, then two rate_limited errors, and the third closes; every
    # reply sent before the close arrives before it.
    assert got.count("heartbeat_ack") >= 10
    errors = [m for m in client.unread() if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["rate_limited", "rate_limited"]
    assert got[-1] == "error"
    # Each names the frame it dropped: two in a row, after the ones served.
    acked = {m["ref"] for m in client.unread() if m["type"] == "heartbeat_ack"}
    refs = [e["ref"] for e in errors]
    assert refs[0] in sent
    assert refs[0] not in acked
    assert sent.index(refs[1]) == sent.index(refs[0]) + 1


async def test_messages_within_the_rate_are_all_served(serve: Serve) -> None:
    server = await serve(limits={"messages_per_s": 50.0, "message_burst": 5})
    client = await server.connect("o1", "officer", "P0101")
    for _ in range(15):
        await client.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)
        # Paced below the rate: never limited.
        await client.assert_no("error", within=0.03)


# ---- forbidden actions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "court", "message"),
    [
        ("officer", "P0101", {"type": "get_roster"}),
        ("officer", "P0101", {"type": "call_officer", "officer": "o2"}),
        ("officer", "P0101", {"type": "clear_emergency", "officer": "o1"}),
        (
            "operator",
            "P0101",
            {
                "type": "position",
                "lat": 1.0,
                "lon": 1.0,
                "accuracy_m": 1.0,
                "device_time": DEVICE_TIME,
            },
        ),
        ("operator", "P0101", {"type": "call_center"}),
        ("operator", "P0101", {"type": "emergency"}),
        ("auditor", "P", {"type": "get_roster"}),
    ],
)
async def test_action_outside_the_role_is_forbidden(
    server: Server, role: str, court: str, message: dict[str, Any]
) -> None:
    client = await server.connect("u1", role, court)
    msg_id = await client.send(message["type"], **{k: v for k, v in message.items() if k != "type"})
    error = await client.error_for(msg_id)
    assert error["code"] == "forbidden"


async def test_operator_may_not_call_an_officer_of_another_court(server: Server) -> None:
    await server.connect("o1", "officer", "P0102")
    op = await server.connect("op1", "operator", "P0101")
    msg_id = await op.send("call_officer", officer="o1")
    error = await op.error_for(msg_id)
    assert (error["code"], error["field"]) == ("forbidden", "officer")


async def test_supervisor_may_not_join_a_call_outside_their_scope(server: Server) -> None:
    from tests.test_hub_calls import answered_call

    _, _, call_id = await answered_call(server)
    sup = await server.connect("sup2", "supervisor", "P02")
    msg_id = await sup.send("join_call", call_id=call_id)
    assert (await sup.error_for(msg_id))["code"] == "forbidden"


async def test_media_message_with_media_disabled_is_media_unavailable(serve: Serve) -> None:
    from tests.test_hub_calls import answered_call

    server = await serve(media={"enabled": False})
    officer, _, call_id = await answered_call(server)
    for kind, fields in (
        ("offer", {"sdp": "v=0\r\n"}),
        ("answer", {"sdp": "v=0\r\n"}),
        ("ice_candidate", {"candidate": ""}),
    ):
        msg_id = await officer.send(kind, call_id=call_id, **fields)
        assert (await officer.error_for(msg_id))["code"] == "media_unavailable"


async def test_unusable_offer_is_negotiation_failed(server: Server) -> None:
    """An SDP the media server cannot parse is refused with `negotiation_failed`."""
    from tests.test_hub_calls import answered_call

    officer, _, call_id = await answered_call(server)
    msg_id = await officer.send("offer", call_id=call_id, sdp="v=0\r\n")
    assert (await officer.error_for(msg_id))["code"] == "negotiation_failed"


async def test_answer_or_candidate_before_any_offer_is_invalid_state(server: Server) -> None:
    from tests.test_hub_calls import answered_call

    officer, _, call_id = await answered_call(server)
    msg_id = await officer.send("answer", call_id=call_id, sdp="v=0\r\n")
    assert (await officer.error_for(msg_id))["code"] == "invalid_state"
    msg_id = await officer.send("ice_candidate", call_id=call_id, candidate="")
    assert (await officer.error_for(msg_id))["code"] == "invalid_state"


async def test_sdp_over_the_configured_bound_is_refused_naming_sdp(serve: Serve) -> None:
    server = await serve(limits={"max_sdp_chars": 100})
    client = await server.connect("o1", "officer", "P0101")
    msg_id = await client.send("offer", call_id="c-1", sdp="v" * 101)
    error = await client.error_for(msg_id)
    assert (error["code"], error["field"]) == ("invalid_message", "sdp")


# ---- encodings -----------------------------------------------------------------------------


async def test_msgpack_frames_get_msgpack_replies(server: Server) -> None:
    client = await server.connect("o1", "officer", "P0101", encoding="msgpack")
    ack = await client.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)
    assert ack["device_time"] == DEVICE_TIME
    await client.send_raw(msgspec.msgpack.encode({"type": "accept", "id": "b1"}))
    error = await client.expect("error")
    assert (error["field"], error["ref"]) == ("call_id", "b1")
    assert client.text_frames == 0
    assert client.binary_frames == 3  # welcome, heartbeat_ack, error


async def test_json_frames_get_json_replies(server: Server) -> None:
    client = await server.connect("o1", "officer", "P0101")
    await client.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)
    assert (client.text_frames, client.binary_frames) == (2, 0)


async def test_each_reply_uses_the_encoding_of_the_frame_it_answers(server: Server) -> None:
    client = await server.connect("o1", "officer", "P0101")
    text = json.dumps({"type": "heartbeat", "id": "t1", "device_time": DEVICE_TIME})
    binary = msgspec.msgpack.encode({"type": "heartbeat", "id": "b1", "device_time": DEVICE_TIME})
    # Sent back to back, so the server reads both before answering either.
    await asyncio.gather(client.send_raw(text), client.send_raw(binary))
    await client.expect("heartbeat_ack", ref="t1")
    await client.expect("heartbeat_ack", ref="b1")
    assert (client.text_frames, client.binary_frames) == (2, 1)


async def test_deeply_nested_msgpack_frame_gets_an_error_and_the_connection_stays(
    server: Server,
) -> None:
    """Found by the fuzzer: finding the id of a deeply nested bad frame overflowed the stack,
    and the connection was closed 1011."""
    client = await server.connect("o1", "officer", "P0101", encoding="msgpack")
    deep = b"\x83\xa4type\xa9heartbeat\xa2id\xa2d1\xa2zz" + b"\x91" * 50_000 + b"\xc0"
    await client.send_raw(deep)
    error = await client.expect("error")
    assert (error["code"], error["field"]) == ("invalid_message", "zz")
    await client.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)


async def test_text_frame_that_is_not_utf8_closes_1007(server: Server) -> None:
    """RFC 6455 8.1: invalid UTF-8 in a text frame fails the connection (aiohttp does it)."""
    client = await server.connect("o1", "officer", "P0101")
    await client.ws.send_frame(b'{"type": "\xff"}', WSMsgType.TEXT)
    await client.expect_close(1007)


class FailingOnceClock(SystemClock):
    """The server's clock, which can be made to fail once: a stand-in for any bug of ours."""

    def __init__(self) -> None:
        self.fail_next = False

    def now(self) -> float:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("secret detail that must not reach the client")
        return time.time()


async def test_our_own_failure_closes_1011_without_details_and_the_server_goes_on(
    serve: Serve,
) -> None:
    clock = FailingOnceClock()
    server = await serve(clock=clock)
    client = await server.connect("o1", "officer", "P0101")
    clock.fail_next = True
    await client.send("heartbeat", device_time=DEVICE_TIME)
    assert await client.expect_close(1011) == "internal error"
    again = await server.connect("o1", "officer", "P0101")
    await again.request("heartbeat", reply="heartbeat_ack", device_time=DEVICE_TIME)
