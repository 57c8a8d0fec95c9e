"""The pure evidence rules: upload metadata, file-name sanitising, naming, the clock check,
corrections and who may upload, read and correct. No event loop, no files."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commandcenter.auth import Courts, Identity, Role
from commandcenter.config import Config
from sessions import evidence as ev

COURTS = Courts(Config().courts)
SHA = "ab" * 32
CAPTURE_MS = 1_760_000_000_000.0

VALID: dict[str, str] = {
    "case": "(2025)P0101执123号",
    "kind": "photo",
    "sha256": SHA,
    "device": "phone-7",
    "capture_time": str(int(CAPTURE_MS)),
    "file_name": "IMG_0001.jpg",
    "lat": "31.23",
    "lon": "121.47",
    "accuracy_m": "8",
}


def parse(changes: dict[str, str | None], content_type: str | None = "image/jpeg") -> Any:
    params = {**VALID, **changes}
    return ev.parse_upload([(k, v) for k, v in params.items() if v is not None], content_type)


def field_of(changes: dict[str, str | None], content_type: str | None = "image/jpeg") -> str:
    with pytest.raises(ev.BadRequest) as info:
        parse(changes, content_type)
    assert info.value.http_status == 400
    assert info.value.field is not None
    return info.value.field


def who(role: str, court: str = "P0101", user: str = "u1") -> Identity:
    return Identity(user_id=user, name=user, role=Role(role), court=court, expires_at=2e9)


def item() -> ev.EvidenceItem:
    """Officer o1's (court P0101) photo, as recorded."""
    return ev.new_item(
        parse({}),
        sha256=SHA,
        size=10,
        uploader=who("officer", "P0101", "o1"),
        clock=ev.ClockCheck(12.5, None),
        received_at=1_760_000_001.0,
        owner=ev.CaseOwner("P0101", named=False),
    )


# --- upload metadata ---------------------------------------------------------------------


def test_a_complete_upload_request_parses_to_normalised_values() -> None:
    up = parse({"sha256": SHA.upper()}, "Image/JPEG; charset=binary")
    assert up.case_number == VALID["case"]
    assert up.kind is ev.EvidenceKind.PHOTO
    assert up.client_sha256 == SHA
    assert up.capture_time == CAPTURE_MS
    assert up.media_type == "image/jpeg"
    assert up.position == ev.Position(31.23, 121.47, 8.0)
    assert up.evidence_id() == ev.evidence_id_for(VALID["case"], SHA)


def test_position_is_optional_and_accuracy_with_it() -> None:
    assert parse({"lat": None, "lon": None, "accuracy_m": None}).position is None
    assert parse({"accuracy_m": None}).position == ev.Position(31.23, 121.47, None)


@pytest.mark.parametrize("name", ["case", "kind", "sha256", "device", "capture_time", "file_name"])
def test_each_required_parameter_missing_is_named(name: str) -> None:
    assert field_of({name: None}) == name


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "sketch"}, "kind"),
        ({"sha256": "ab" * 31}, "sha256"),
        ({"sha256": "zz" * 32}, "sha256"),
        ({"capture_time": "yesterday"}, "capture_time"),
        ({"capture_time": "nan"}, "capture_time"),
        ({"capture_time": "inf"}, "capture_time"),
        ({"capture_time": "1000"}, "capture_time"),
        ({"capture_time": "9999999999999"}, "capture_time"),
        ({"lat": "91"}, "lat"),
        ({"lon": "-180.5"}, "lon"),
        ({"lon": None}, "lon"),
        ({"lat": None}, "lat"),
        ({"lat": None, "lon": None}, "accuracy_m"),
        ({"accuracy_m": "-1"}, "accuracy_m"),
        ({"case": "   "}, "case"),
        ({"case": "x" * 65}, "case"),
        ({"case": "123\n456"}, "case"),
        ({"device": ""}, "device"),
        ({"device": "d" * 65}, "device"),
        ({"token": "abc"}, "token"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field(
    changes: dict[str, str | None], field: str
) -> None:
    assert field_of(changes) == field


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(ev.BadRequest) as info:
        ev.parse_upload([*VALID.items(), ("case", "other")], "image/jpeg")
    assert (info.value.field, info.value.reason) == ("case", "given more than once")


@pytest.mark.parametrize(
    ("kind", "content_type", "ok"),
    [
        ("photo", "image/png", True),
        ("photo", "video/mp4", False),
        ("video", "video/mp4", True),
        ("audio", "audio/ogg", True),
        ("audio", "image/png", False),
        ("document", "application/pdf", True),
        ("photo", None, True),
        ("video", "application/octet-stream", True),
        ("document", "not a type", False),
        ("document", "a/" + "b" * 130, False),
    ],
)
def test_the_content_type_must_suit_the_kind(kind: str, content_type: str | None, ok: bool) -> None:
    if ok:
        up = parse({"kind": kind}, content_type)
        assert up.media_type == (content_type or "application/octet-stream")
    else:
        assert field_of({"kind": kind}, content_type) == "content-type"


def test_case_numbers_are_nfc_normalised_so_they_match_when_listing() -> None:
    decomposed = unicodedata.normalize("NFD", "Café-1")
    assert parse({"case": decomposed}).case_number == unicodedata.normalize("NFC", "Café-1")


# --- file names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("/var/lib/x.jpg", "x.jpg"),
        ("..", ev.UNNAMED),
        ("", ev.UNNAMED),
        ("   ", ev.UNNAMED),
        ("dir/", ev.UNNAMED),
        (".bashrc", "bashrc"),
        ("a\x00b\r\n.jpg", "ab.jpg"),
        ("photo\u202egpj.exe", "photogpj.exe"),
        ("现场照片.jpg", "现场照片.jpg"),
        ("C:\\evidence\\..\\x.pdf", "x.pdf"),
    ],
)
def test_file_names_lose_paths_controls_and_leading_dots(raw: str, clean: str) -> None:
    assert ev.sanitise_file_name(raw) == clean


def test_a_long_file_name_is_cut_to_255_bytes_keeping_its_extension() -> None:
    name = ev.sanitise_file_name("证" * 200 + ".jpeg")
    assert name.endswith(".jpeg")
    assert len(name.encode()) <= ev.MAX_FILE_NAME_BYTES
    # Cut on a character boundary: every character is still whole.
    assert set(name[:-5]) == {"证"}


@given(st.text(max_size=600))
def test_any_file_name_sanitises_to_a_safe_stable_name(raw: str) -> None:
    name = ev.sanitise_file_name(raw)
    assert 0 < len(name.encode()) <= ev.MAX_FILE_NAME_BYTES
    assert "/" not in name
    assert "\\" not in name
    assert not name.startswith(".")
    assert not any(unicodedata.category(c)[0] == "C" for c in name)
    assert ev.sanitise_file_name(name) == name


# --- naming ------------------------------------------------------------------------------


def test_the_evidence_id_depends_on_case_and_hash_only() -> None:
    a = ev.evidence_id_for("C1", SHA)
    assert a == ev.evidence_id_for("C1", SHA)
    assert a != ev.evidence_id_for("C2", SHA)
    assert a != ev.evidence_id_for("C1", "cd" * 32)
    assert re.fullmatch(ev.EVIDENCE_ID_RE, a)


# --- the clock -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_device", "offset", "expected"),
    [
        ("phone-7", 150.0, ev.ClockCheck(150.0, None)),
        ("phone-7", -2000.0, ev.ClockCheck(-2000.0, None)),
        ("phone-7", 2000.5, ev.ClockCheck(2000.5, "offset_over_threshold")),
        ("phone-7", -90000.0, ev.ClockCheck(-90000.0, "offset_over_threshold")),
        ("phone-7", None, ev.ClockCheck(None, "no_heartbeat")),
        ("tablet-2", 10.0, ev.ClockCheck(None, "other_device")),
        (None, None, ev.ClockCheck(None, "not_signed_in")),
    ],
)
def test_the_capture_time_is_verified_only_by_a_small_offset_of_the_same_device(
    session_device: str | None, offset: float | None, expected: ev.ClockCheck
) -> None:
    check = ev.check_clock(
        upload_device="phone-7",
        session_device=session_device,
        session_offset_ms=offset,
        threshold_ms=2000.0,
    )
    assert check == expected
    assert check.time_unverified is (expected.unverified_reason is not None)


# --- items and corrections ---------------------------------------------------------------


def test_an_item_survives_the_round_trip_through_its_record_data() -> None:
    original = item()
    data = original.to_data()
    assert json.loads(json.dumps(data)) == data
    assert ev.EvidenceItem.from_data(data) == original
    assert data["court"] == "P0101"
    assert data["case_number"] == VALID["case"]


def test_a_correction_parses_to_normalised_changes() -> None:
    body = {
        "changes": {
            "case_number": " C-2 ",
            "kind": "document",
            "file_name": "../x.pdf",
            "position": None,
            "capture_time": CAPTURE_MS + 5,
        },
        "reason": "typo",
    }
    c = ev.parse_correction(json.dumps(body).encode())
    assert c.changes == {
        "case_number": "C-2",
        "kind": "document",
        "file_name": "x.pdf",
        "position": None,
        "capture_time": CAPTURE_MS + 5,
    }
    assert c.reason == "typo"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "body"),
        (b"[]", "body"),
        (b'{"changes": {}, "reason": "r"}', "changes"),
        (b'{"changes": {"sha256": "x"}, "reason": "r"}', "changes"),
        (b'{"changes": {"kind": "sketch"}, "reason": "r"}', "changes.kind"),
        (b'{"changes": {"kind": "photo"}}', "body"),
        (b'{"changes": {"kind": "photo"}, "reason": ""}', "reason"),
        (b'{"changes": {"kind": "photo"}, "reason": "  "}', "reason"),
        (
            b'{"changes": {"position": {"lat": 99, "lon": 0}}, "reason": "r"}',
            "changes.position.lat",
        ),
        (b'{"changes": {"capture_time": 5}, "reason": "r"}', "changes.capture_time"),
        (b'{"changes": {"kind": "photo"}, "reason": "r", "extra": 1}', "body"),
    ],
)
def test_a_bad_correction_is_refused_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(ev.BadRequest) as info:
        ev.parse_correction(body)
    assert info.value.field == field


def test_an_oversize_correction_is_refused_with_413() -> None:
    body = json.dumps({"changes": {"kind": "photo"}, "reason": "r" * 20000}).encode()
    with pytest.raises(ev.TooLarge) as info:
        ev.parse_correction(body)
    assert info.value.http_status == 413


def test_corrections_apply_in_order_over_the_untouched_original() -> None:
    original = item()
    first = ev.CorrectionEntry(1, 1.0, "o1", "r", {"case_number": "C-2"}, {})
    second = ev.CorrectionEntry(2, 2.0, "s1", "r", {"case_number": "C-3", "position": None}, {})
    history = ev.ItemHistory(original=original, seq=1, at=0.0, corrections=(first, second))
    now = history.current()
    assert (now.case_number, now.position) == ("C-3", None)
    assert history.original == original
    view = history.to_json()
    assert view["case_number"] == "C-3"
    assert [c["seq"] for c in view["corrections"]] == [1, 2]


def test_previous_values_hold_what_a_correction_replaces() -> None:
    before = item()
    prev = ev.previous_values(before, {"kind": "video", "position": None})
    assert prev == {"kind": "photo", "position": {"lat": 31.23, "lon": 121.47, "accuracy_m": 8.0}}


# --- authorisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "court", "user", "read", "correct"),
    [
        ("officer", "P0101", "o1", True, True),  # the uploader
        ("officer", "P0101", "o2", False, False),  # a colleague in the same court
        ("operator", "P0101", "op1", True, False),
        ("operator", "P0102", "op2", False, False),
        ("operator", "P01", "op3", False, False),  # operators see their own court only
        ("supervisor", "P01", "s1", True, True),  # the parent court's subtree
        ("supervisor", "P0101", "s2", True, True),
        ("supervisor", "P02", "s3", False, False),
        ("admin", "P", "a1", True, True),
        ("auditor", "P0201", "au1", True, False),  # auditors read everything, change nothing
    ],
)
def test_who_may_read_and_correct_an_officers_item(
    role: str, court: str, user: str, read: bool, correct: bool
) -> None:
    identity = who(role, court, user)
    assert ev.may_read(identity, item(), COURTS) is read
    assert ev.may_correct(identity, item(), COURTS) is correct


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("officer", True),
        ("operator", True),
        ("supervisor", False),
        ("admin", False),
        ("auditor", False),
    ],
)
def test_only_officers_and_operators_upload(role: str, allowed: bool) -> None:
    assert ev.may_upload(who(role)) is allowed
