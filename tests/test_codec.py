"""Frames to messages and back: every client message decodes from JSON and msgpack, bad
input of any kind gives InvalidMessage naming the field (never another exception), oversize
frames give FrameTooLarge, and every server message survives both encodings."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling import protocol as p
from signalling.codec import Encoding, decode, encode
from signalling.errors import ClientError, FrameTooLarge, InvalidMessage

MAX = 65536
ENCODINGS = list(Encoding)
CLIENT_TYPES: tuple[type[p.ClientMessage], ...] = typing.get_args(p.ClientMessage)
SERVER_TYPES: tuple[type[p.ServerMessage], ...] = typing.get_args(p.ServerMessage)

NOW_MS = 1_800_000_000_000.0

# One fully populated example of every client message (every optional field set).
CLIENT_SAMPLES: list[p.ClientMessage] = [
    p.Heartbeat(id="m1", device_time=NOW_MS, rtt_ms=120.5),
    p.Position(id="m2", lat=30.25, lon=120.125, accuracy_m=4.5, device_time=NOW_MS),
    p.CallCenter(id="m3", case_number="(2026)P0101-1"),
    p.Emergency(id="m4", case_number="(2026)P0101-2", note="crowd gathering"),
    p.EmergencyNote(id="m4n", note="两人受伤"),
    p.CallOfficer(id="m5", officer="o1", case_number="(2026)P0101-3"),
    p.Accept(id="m6", call_id="c1"),
    p.Decline(id="m7", call_id="c1"),
    p.Cancel(id="m8", call_id="c1"),
    p.Hangup(id="m9", call_id="c1"),
    p.JoinCall(id="m10", call_id="c1", covert=True),
    p.LeaveCall(id="m11", call_id="c1"),
    p.Transfer(id="m12", call_id="c1", to="op2"),
    p.ClearEmergency(id="m13", officer="o1", outcome="false_alarm", reason="pocket dial"),
    p.AcknowledgeEmergency(id="m13c", officer="o1"),
    p.GetRoster(id="m14", court="P0101"),
    p.Offer(id="m15", call_id="c1", sdp="v=0\r\n"),
    p.Answer(id="m16", call_id="c1", sdp="v=0\r\n"),
    p.IceCandidate(
        id="m17",
        call_id="c1",
        candidate="candidate:1 1 udp 1 1.2.3.4 5 typ host",
        sdp_mid="0",
        sdp_mline_index=0,
    ),
    p.Snapshot(id="m18", call_id="c1", of="o1"),
    p.CreateConference(
        id="m19",
        title="Province dispatch meeting",
        court="P",
        invite_courts=("P0201",),
        invite_below=("P01",),
        invite_users=("o1",),
        starts_at=NOW_MS,
        max_speakers=2,
        max_talk_s=120.0,
    ),
    p.ListConferences(id="m20"),
    p.StartConference(id="m21", conference_id="m-1"),
    p.JoinConference(id="m22", conference_id="m-1"),
    p.DeclineConference(id="m23", conference_id="m-1"),
    p.LeaveConference(id="m24", conference_id="m-1"),
    p.RaiseHand(id="m25", conference_id="m-1"),
    p.LowerHand(id="m26", conference_id="m-1"),
    p.ReleaseFloor(id="m27", conference_id="m-1"),
    p.GrantFloor(id="m28", conference_id="m-1", site="op1", revision=7),
    p.RevokeFloor(id="m29", conference_id="m-1", site="op1", revision=8),
    p.MuteAll(id="m30", conference_id="m-1"),
    p.UnmuteAll(id="m31", conference_id="m-1"),
    p.Spotlight(id="m32", conference_id="m-1", site="op1"),
    p.RemoveSite(id="m33", conference_id="m-1", site="op1", ban=True),
    p.LockConference(id="m34", conference_id="m-1", locked=True),
    p.RecordConference(id="m41", conference_id="m-1", on=True),
    p.ShareCall(id="m42", conference_id="m-1", call_id="c1"),
    p.UnshareCall(id="m43", conference_id="m-1", call_id="c1", revision=4),
    p.AcceptTransfer(id="m60", call_id="c1"),
    p.DeclineTransfer(id="m61", call_id="c1"),
    p.CancelTransfer(id="m62", call_id="c1"),
    p.SetAvailability(id="m63", status="away"),
    p.GetOperators(id="m64", court="P0101"),
    p.SendBack(id="m65", call_id="c1"),
    p.InviteSupervisor(id="m66", call_id="c1"),
    p.SetCamera(id="m67", call_id="c1", on=False),
    p.GetQueue(id="m68", court="P0101"),
    p.SetFloor(id="m35", conference_id="m-1", max_speakers=3, max_talk_s=60.0, mode="open"),
    p.NameModerator(id="m36", conference_id="m-1", user="sup1"),
    p.RemoveModerator(id="m36a", conference_id="m-1", user="sup1"),
    p.InviteToConference(id="m36b", conference_id="m-1", user="op9"),
    p.WithdrawInvitation(id="m36c", conference_id="m-1", user="op9", revision=2),
    p.HandOver(id="m37", conference_id="m-1", to="sup1"),
    p.EndConference(id="m38", conference_id="m-1", revision=9),
    # The video wall.
    p.Watch(id="m46", officer="o1"),
    p.Unwatch(id="m47", watch_id="w-1"),
    p.WallLayout(id="m48", tiles=16),
]

USER = p.UserInfo(id="o1", name="Officer One", role="officer", court="P0101")
OPERATOR = p.UserInfo(id="op1", name="Operator", role="operator", court="P0101")
POSITION = p.GeoPosition(lat=30.0, lon=120.0, accuracy_m=5.0, device_time=NOW_MS)
CALL = p.CallInfo(
    call_id="c1",
    direction=p.Direction.OFFICER_TO_CENTER,
    state="active",
    court="P0101",
    officer=USER,
    operator=OPERATOR,
    case_number="(2026)P0101-1",
    emergency=True,
    supervisors=[p.UserInfo(id="s1", name="Sup", role="supervisor", court="P01")],
    created_at=NOW_MS,
)
ENTRY = p.RosterEntry(
    officer=USER,
    status="online",
    call_id="c1",
    emergency=False,
    position=POSITION,
    device="phone",
    since=NOW_MS,
)

CONFERENCE = p.ConferenceInfo(
    conference_id="m-1",
    title="Province dispatch meeting",
    court="P",
    host=OPERATOR,
    status="running",
    starts_at=NOW_MS,
    created_at=NOW_MS,
    invited_courts=["P01", "P0101"],
    invited_users=["o1"],
    moderators=["op1"],
    chair="op1",
    sites=2,
    locked=False,
    kind="meeting",
)
FLOOR = p.FloorInfo(state="permitted", position=None, until=NOW_MS + 60_000, called=True)
STATE = p.ConferenceState(
    conference_id="m-1",
    revision=3,
    status="running",
    chair=OPERATOR,
    holders=[USER],
    spotlight=USER,
    audio="floor",
    locked=False,
    recording=False,
    feeds=[p.FeedInfo(call_id="c1", officer=USER, emergency=True, by=OPERATOR)],
    max_speakers=1,
    max_talk_s=None,
    mode="moderated",
    sites=2,
)
SITE = p.SiteInfo(user=USER, role="site", status="joined", floor=FLOOR, joined_at=NOW_MS)
INVITATION = p.InvitationInfo(invitee="P0101", kind="court", state="joined", by=OPERATOR)

SERVER_SAMPLES: list[p.ServerMessage] = [
    p.Welcome(
        protocol=p.PROTOCOL_VERSION,
        session_id="s1",
        resume_token="r1",
        resumed=True,
        user=USER,
        node_id="n1",
        server_time=NOW_MS,
        heartbeat_interval_s=15.0,
        grace_s=30.0,
        calls=[CALL],
        court_name="第一基层人民法院",
    ),
    p.Ack(ref="m1"),
    p.Error(ref="m1", code="forbidden", reason="no", field="court"),
    p.HeartbeatAck(ref="m1", device_time=NOW_MS, server_time=NOW_MS, offset_ms=1.5, rtt_ms=3.0),
    p.CallPlaced(ref="m1", call_id="c1"),
    p.Roster(ref="m1", officers=[ENTRY]),
    p.RosterUpdate(entry=ENTRY),
    p.CallRinging(call=CALL),
    p.CallQueued(call_id="c1", position=2),
    p.CallRingingCenter(call_id="c1"),
    p.EmergencyCleared(by=OPERATOR),
    p.EmergencyAcknowledged(officer=USER, by=OPERATOR),
    p.EmergencyNoted(officer=USER, note="两人受伤"),
    p.CallTaken(call_id="c1", by=OPERATOR),
    p.RingStopped(call_id="c1", reason="busy"),
    p.CallAnswered(call=CALL),
    p.CallEnded(call_id="c1", reason=p.EndReason.MISSED, by=None),
    p.ParticipantJoined(call_id="c1", user=USER, covert=True),
    p.ParticipantLeft(call_id="c1", user=USER),
    p.CallTransferred(call=CALL, from_operator=OPERATOR),
    p.PartyAway(call_id="c1", user=USER, grace_s=30.0),
    p.PartyBack(call_id="c1", user=USER),
    p.ServerOffer(call_id="c1", sdp="v=0"),
    p.ServerAnswer(ref="m1", call_id="c1", sdp="v=0"),
    p.ServerIceCandidate(call_id="c1", candidate="", sdp_mid=None, sdp_mline_index=None),
    p.SnapshotTaken(
        ref="m18",
        call_id="c1",
        of="o1",
        evidence_id="ev-" + "0" * 32,
        sha256="0" * 64,
        taken_at=NOW_MS,
    ),
    p.ConferenceMedia(conference_id="m-1", audio=["sup-1", None], spotlight="op-7", grid=[]),
    p.ConferenceSpeaking(conference_id="m-1", speaking=["op-7"]),
    p.ConferenceCreated(ref="m19", conference=CONFERENCE),
    p.Conferences(ref="m20", conferences=[CONFERENCE]),
    p.ConferenceInvitation(conference=CONFERENCE),
    p.InvitationStopped(conference_id="m-1", reason="answered", by=OPERATOR),
    p.ConferenceJoined(
        ref="m22",
        conference=CONFERENCE,
        state=STATE,
        role="moderator",
        floor=FLOOR,
        sites=[SITE],
        invitations=[INVITATION],
    ),
    p.ConferenceUpdate(
        conference_id="m-1",
        revision=4,
        changes=p.ConferenceChanges(holders=[OPERATOR], spotlight=None, max_talk_s=None),
    ),
    p.ConferenceUpdate(conference_id="m-1", revision=5, changes=p.ConferenceChanges()),
    p.FloorStatus(conference_id="m-1", floor=FLOOR, reason=None),
    p.SitesChanged(
        conference_id="m-1", revision=3, sites=[SITE], left=["o2"], invitations=[INVITATION]
    ),
    p.ConferenceWaiting(ref="m45", conference_id="m-1", place=12, wait_s=1.1),
    p.ConferenceLeft(conference_id="m-1", reason="banned", by="op1"),
    p.FeedEnded(
        conference_id="m-1",
        title="会商",
        call_id="c-1",
        officer=p.UserInfo(id="o1", name="张伟", role="officer", court="P0101"),
        reason="transferred",
        by=OPERATOR,
        to=None,
    ),
    p.ConferenceEnded(conference_id="m-1", reason="no_moderator", by=None),
    # The video wall.
    p.Watching(
        ref="m46",
        watch_id="w-1",
        officer=p.UserInfo(id="o1", name="张伟", role="officer", court="P0101"),
    ),
    p.WatchOpened(watch_id="w-1"),
    p.WatchClosed(watch_id="w-1"),
    p.WatchEnded(watch_id="w-1", officer="o1", reason="officer_offline"),
    p.VideoPolicy(watch_id="w-1", max_height=180, max_fps=12, max_kbps=200),
    p.VideoPolicy(watch_id="w-1", max_height=None, max_fps=None, max_kbps=None),
    p.TransferOffered(call=CALL, from_operator=USER, expires_in_s=30.0),
    p.TransferEnded(call_id="c1", outcome="declined", by="op2"),
    p.Operators(ref="m64", court="P0101", operators=[p.OperatorEntry(user=USER, status="free")]),
    p.OperatorStatus(entry=p.OperatorEntry(user=USER, status="away")),
    p.CallRequeued(call_id="c1", by=USER),
    p.EmergencyAlarm(officer=USER, repeat=2, waiting_s=60.0, escalated_to="P01"),
    p.SupervisorInvited(call=CALL, by=USER),
    p.CameraChanged(call_id="c1", user="op1", on=False),
    p.Queue(ref="m68", court="P0101", calls=[p.QueueEntry(call=CALL, position=1, ringing=0)]),
    p.QueueUpdate(court="P0101", calls=[p.QueueEntry(call=CALL, position=None, ringing=2)]),
    p.MediaRestart(call_id="c1"),
]

# Instructions (signalling.protocol.instructions).
RECIPIENT = p.RecipientInfo(
    officer=USER, state="read", sent_at=NOW_MS, delivered_at=NOW_MS, read_at=NOW_MS
)
INSTRUCTION = p.InstructionInfo(
    instruction_id="i-1",
    by=OPERATOR,
    court="P0101",
    officer="o1",
    text="请立即前往二号现场",
    sent_at=NOW_MS,
    expires_at=NOW_MS,
    recipients=[RECIPIENT],
)
CLIENT_SAMPLES += [
    p.SendInstruction(id="i1", text="请立即前往二号现场", officer="o1"),
    p.InstructionReceipt(id="i2", instruction_id="i-1", state="delivered"),
    p.ListInstructions(id="i3", court="P0101"),
]
SERVER_SAMPLES += [
    p.InstructionSent(ref="i1", instruction_id="i-1"),
    p.Instruction(
        instruction_id="i-1",
        by=OPERATOR,
        text="请立即前往二号现场",
        court_wide=False,
        sent_at=NOW_MS,
        expires_at=NOW_MS,
        state="sent",
    ),
    p.InstructionUpdate(instruction=INSTRUCTION),
    p.ReceiptUpdate(instruction_id="i-1", court="P0101", recipient=RECIPIENT),
    p.Instructions(ref="i3", instructions=[INSTRUCTION]),
]

_server_json = msgspec.json.Decoder(p.ServerMessage)
_server_msgpack = msgspec.msgpack.Decoder(p.ServerMessage)


def frame_of(data: Any, encoding: Encoding) -> str | bytes:
    """A frame as a client would send it: JSON text or msgpack bytes."""
    if encoding is Encoding.JSON:
        return msgspec.json.encode(data).decode("utf-8")
    return msgspec.msgpack.encode(data)


def as_dict(msg: p.ClientMessage) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(msg)
    return data


def fields_of(kind: type[p.ClientMessage]) -> list[msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return list(info.fields)


def max_length(field: msgspec.inspect.Field) -> int | None:
    """The bound on a string field (optional or not), or None if it is not a bounded str."""
    t = field.type
    options = t.types if isinstance(t, msgspec.inspect.UnionType) else (t,)
    for option in options:
        if isinstance(option, msgspec.inspect.StrType) and option.max_length is not None:
            return option.max_length
    return None


def outcome(frame: str | bytes, encoding: Encoding) -> p.ClientMessage | InvalidMessage:
    """The decoded message, or the InvalidMessage raised; any other exception propagates."""
    try:
        return decode(frame, encoding, MAX)
    except InvalidMessage as exc:
        return exc


def decode_error(frame: str | bytes, encoding: Encoding) -> InvalidMessage:
    # Above the protocol's hard SDP ceiling, so that an overlong field is seen as such.
    with pytest.raises(InvalidMessage) as info:
        decode(frame, encoding, 2**20)
    assert not isinstance(info.value, FrameTooLarge)
    return info.value


# ---- valid frames -------------------------------------------------------------------------


def test_every_client_message_type_has_a_sample() -> None:
    assert {type(m) for m in CLIENT_SAMPLES} == set(CLIENT_TYPES)
    assert {type(m) for m in SERVER_SAMPLES} == set(SERVER_TYPES)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("msg", CLIENT_SAMPLES, ids=lambda m: type(m).__name__)
def test_client_message_decodes_to_an_equal_struct(
    msg: p.ClientMessage, encoding: Encoding
) -> None:
    frame = frame_of(as_dict(msg), encoding)
    assert decode(frame, encoding, MAX) == msg


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("kind", CLIENT_TYPES, ids=lambda k: k.__name__)
def test_client_message_with_only_required_fields_decodes(
    kind: type[p.ClientMessage], encoding: Encoding
) -> None:
    """Optional fields may be left out; they take their defaults."""
    (sample,) = [m for m in CLIENT_SAMPLES if type(m) is kind]
    data = as_dict(sample)
    required = {f.encode_name for f in fields_of(kind) if f.required} | {"type"}
    minimal = {k: v for k, v in data.items() if k in required}
    decoded = decode(frame_of(minimal, encoding), encoding, MAX)
    assert type(decoded) is kind
    for f in fields_of(kind):
        if not f.required:
            assert getattr(decoded, f.name) == f.default


def test_json_bytes_and_text_decode_alike() -> None:
    text = frame_of(as_dict(CLIENT_SAMPLES[5]), Encoding.JSON)
    assert isinstance(text, str)
    assert decode(text.encode(), Encoding.JSON, MAX) == decode(text, Encoding.JSON, MAX)


# ---- bad frames ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=256) | st.text(max_size=256), encoding=st.sampled_from(ENCODINGS))
def test_arbitrary_input_gives_a_message_or_invalid_message(
    frame: str | bytes, encoding: Encoding
) -> None:
    result = outcome(frame, encoding)
    if isinstance(result, InvalidMessage):
        assert isinstance(result, ClientError)
        assert result.code in ("invalid_message", "frame_too_large")
        assert result.reason
    else:
        assert isinstance(result, CLIENT_TYPES)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from([k.__struct_config__.tag for k in CLIENT_TYPES] + ["nope"])},
    optional={
        "id": st.text(max_size=70) | st.integers(min_value=-(2**63), max_value=2**63),
        "call_id": st.text(max_size=70) | json_values,
        "device_time": st.floats() | st.integers(min_value=-(2**63), max_value=2**63),
        "lat": st.floats(allow_nan=False) | st.text(max_size=3),
        "covert": json_values,
        "court": json_values,
        "extra": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=json_values | message_like, encoding=st.sampled_from(ENCODINGS))
def test_arbitrary_structured_input_gives_a_message_or_invalid_message(
    data: Any, encoding: Encoding
) -> None:
    """Well-formed JSON or msgpack of any shape, including near-messages, never crashes."""
    result = outcome(frame_of(data, encoding), encoding)
    if isinstance(result, InvalidMessage):
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            usable = 0 < len(data["id"]) <= 64
            assert result.ref == (data["id"] if usable else None)
    else:
        assert isinstance(result, CLIENT_TYPES)
        assert isinstance(data, dict)
        assert result.id == data["id"]


def _mutations() -> list[tuple[str, str, str]]:
    """(message type, mutation, field) for every field of every client message."""
    out: list[tuple[str, str, str]] = []
    for kind in CLIENT_TYPES:
        tag = kind.__struct_config__.tag
        assert isinstance(tag, str)
        for f in fields_of(kind):
            if f.required:
                out.append((tag, "drop", f.encode_name))
            out.append((tag, "wrong_type", f.encode_name))
            if max_length(f) is not None:
                out.append((tag, "overlong", f.encode_name))
        out.append((tag, "add", "colour"))
    return out


MUTATIONS = _mutations()
SAMPLE_BY_TAG = {type(m).__struct_config__.tag: m for m in CLIENT_SAMPLES}


def mutate(tag: str, how: str, name: str) -> dict[str, Any]:
    data = as_dict(SAMPLE_BY_TAG[tag])
    kind = type(SAMPLE_BY_TAG[tag])
    if how == "drop":
        del data[name]
    elif how == "add":
        data[name] = "red"
    elif how == "wrong_type":
        data[name] = [1, 2]
    else:
        (f,) = [f for f in fields_of(kind) if f.encode_name == name]
        bound = max_length(f)
        assert bound is not None
        data[name] = "x" * (bound + 1)
    return data


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("tag", "how", "name"), MUTATIONS)
def test_mutated_frame_names_the_field_and_refers_to_the_id(
    tag: str, how: str, name: str, encoding: Encoding
) -> None:
    data = mutate(tag, how, name)
    exc = decode_error(frame_of(data, encoding), encoding)
    assert exc.field == name
    assert exc.code == "invalid_message"
    assert exc.ref == (None if name == "id" else data["id"])
    if how == "add":
        assert "unknown field" in exc.reason


@settings(max_examples=200, deadline=None)
@given(mutation=st.sampled_from(MUTATIONS), encoding=st.sampled_from(ENCODINGS))
def test_any_mutation_of_a_valid_frame_is_an_invalid_message(
    mutation: tuple[str, str, str], encoding: Encoding
) -> None:
    """The same check drawn at random, so shrinking points at the first bad case."""
    data = mutate(*mutation)
    exc = decode_error(frame_of(data, encoding), encoding)
    assert exc.field == mutation[2]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unknown_type_is_reported_as_such(encoding: Encoding) -> None:
    exc = decode_error(frame_of({"type": "teleport", "id": "m1"}, encoding), encoding)
    assert (exc.field, exc.reason, exc.ref) == ("type", "unknown message type", "m1")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "call_officer", "officer": "o1\x1b[2J"}, "officer"),
        ({"type": "call_officer", "officer": "o\u202e1"}, "officer"),
        ({"type": "call_center", "case_number": "(2026)\u200b1"}, "case_number"),
        ({"type": "create_conference", "title": "dispatch\nmeeting"}, "title"),
        ({"type": "join_conference", "conference_id": "m-1\x00"}, "conference_id"),
    ],
)
def test_control_and_formatting_characters_in_names_are_refused(
    encoding: Encoding, fields: dict[str, Any], field: str
) -> None:
    """Refused by name, and the reason does not echo the characters back."""
    exc = decode_error(frame_of({"id": "m1", **fields}, encoding), encoding)
    assert (exc.field, exc.ref) == (field, "m1")
    assert exc.reason == "must not contain control or formatting characters"


def test_chinese_names_and_titles_are_text() -> None:
    msg = decode(
        '{"type":"create_conference","id":"m1","title":"全省执行视频调度会"}',
        Encoding.JSON,
        4096,
    )
    assert isinstance(msg, p.CreateConference)
    assert msg.title == "全省执行视频调度会"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_frame_that_is_not_an_object_is_invalid(encoding: Encoding) -> None:
    exc = decode_error(frame_of([1, 2, 3], encoding), encoding)
    assert exc.ref is None


def test_a_broken_json_frame_is_invalid_without_a_field() -> None:
    exc = decode_error('{"type": "accept", "id": "m1"', Encoding.JSON)
    assert exc.field is None
    assert "json" in exc.reason


def test_a_lone_surrogate_in_a_text_frame_is_invalid() -> None:
    exc = decode_error('{"type":"accept","id":"m1","call_id":"\ud800"}', Encoding.JSON)
    assert exc.code == "invalid_message"


# ---- size -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_oversize_frame_is_refused_before_decoding(encoding: Encoding) -> None:
    msg = p.Offer(id="m1", call_id="c1", sdp="v" * 2000)
    frame = frame_of(as_dict(msg), encoding)
    with pytest.raises(FrameTooLarge) as info:
        decode(frame, encoding, 1000)
    assert info.value.code == "frame_too_large"
    assert info.value.ref is None
    assert decode(frame, encoding, len(frame)) == msg


def test_a_text_frame_is_measured_in_bytes_not_characters() -> None:
    """Chinese text takes three bytes a character in UTF-8."""
    msg = p.Emergency(id="m1", note="现场有人阻挠执行" * 10)
    text = frame_of(as_dict(msg), Encoding.JSON)
    assert isinstance(text, str)
    size = len(text.encode("utf-8"))
    assert len(text) < size
    with pytest.raises(FrameTooLarge):
        decode(text, Encoding.JSON, size - 1)
    assert decode(text, Encoding.JSON, size) == msg


# ---- server messages ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("msg", SERVER_SAMPLES, ids=lambda m: type(m).__name__)
def test_server_message_encodes_and_decodes_back(msg: p.ServerMessage, encoding: Encoding) -> None:
    frame = encode(msg, encoding)
    if encoding is Encoding.JSON:
        assert isinstance(frame, str)
        assert _server_json.decode(frame) == msg
    else:
        assert isinstance(frame, bytes)
        assert _server_msgpack.decode(frame) == msg


def test_server_messages_carry_their_type_tag() -> None:
    for msg in SERVER_SAMPLES:
        data = msgspec.json.decode(encode(msg, Encoding.JSON))
        assert data["type"] == type(msg).__struct_config__.tag


def test_a_msgpack_map_with_a_non_string_key_is_invalid_and_says_so() -> None:
    frame = msgspec.msgpack.encode({"type": "accept", "id": "m1", 7: "c1"})
    exc = decode_error(frame, Encoding.MSGPACK)
    assert exc.field is None
    assert exc.reason.startswith("field names must be strings")
    assert "$" not in exc.reason


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    """msgpack can carry NaN and infinities; every bounded number refuses them."""
    for field in ("lat", "lon", "accuracy_m", "device_time"):
        data = as_dict(CLIENT_SAMPLES[1])
        data[field] = value
        exc = decode_error(msgspec.msgpack.encode(data), Encoding.MSGPACK)
        assert (exc.field, exc.ref) == (field, "m2")


def test_deeply_nested_input_is_invalid_not_a_crash() -> None:
    assert decode_error("[" * 50_000, Encoding.JSON).code == "invalid_message"
    assert decode_error(b"\x91" * 50_000, Encoding.MSGPACK).code == "invalid_message"
