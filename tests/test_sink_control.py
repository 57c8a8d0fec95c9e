"""The bench-only sink socket's requests (media.sink_control) and sinks (media.sink), pure:
every line gives a request or a refusal saying why, never another exception."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.sink import SinkError, SinkSpec
from media.sink_control import Add, Remove, RequestRefused, Status, decode, specs

KEY = "ab" * 30


def line(**request: object) -> bytes:
    return json.dumps(request).encode()


def test_requests_decode_to_their_types() -> None:
    sink = {"name": "sink-0", "host": "10.99.0.2", "port": 4000, "key": KEY}
    add = decode(line(type="add", conference_id="c", sinks=[sink]))
    assert isinstance(add, Add)
    assert specs(add) == [SinkSpec("sink-0", "10.99.0.2", 4000, bytes.fromhex(KEY))]
    assert isinstance(decode(line(type="remove", conference_id="c", names=["a"])), Remove)
    assert isinstance(decode(line(type="status", conference_id="c")), Status)


@pytest.mark.parametrize(
    ("request_line", "why"),
    [
        (b"not json", "bad request"),
        (line(type="grant", conference_id="c"), "bad request"),
        (line(type="status", conference_id="c", extra=1), "bad request"),
        (line(type="add", conference_id="c", sinks=[{"name": "a"}]), "bad request"),
        (line(type="add", conference_id="", sinks=[]), "bad request"),
    ],
)
def test_a_bad_line_is_refused_saying_so(request_line: bytes, why: str) -> None:
    with pytest.raises(RequestRefused, match=why):
        decode(request_line)


@pytest.mark.parametrize(
    ("host", "port", "key", "why"),
    [
        ("example.org", 4000, KEY, "not an IP address"),
        ("10.99.0.2", 0, KEY, "out of range"),
        ("10.99.0.2", 70000, KEY, "out of range"),
        ("10.99.0.2", 4000, "zz" * 30, "bad request"),
    ],
)
def test_a_sink_that_cannot_be_made_is_refused(host: str, port: int, key: str, why: str) -> None:
    sink = {"name": "sink-0", "host": host, "port": port, "key": key}
    with pytest.raises(RequestRefused, match=why):
        specs(decode(line(type="add", conference_id="c", sinks=[sink])))  # type: ignore[arg-type]


def test_a_sink_key_is_an_srtp_master_key_and_salt() -> None:
    with pytest.raises(SinkError, match="30 bytes"):
        SinkSpec("sink-0", "10.99.0.2", 4000, bytes(16))


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_refusal(data: bytes) -> None:
    try:
        request = decode(data)
    except RequestRefused:
        return
    if isinstance(request, Add):
        with contextlib.suppress(RequestRefused):
            specs(request)
