"""The media worker pool's pure parts: placement (media.worker_placement), the split of the port
range, the `[media] workers` setting and the worker wire's decoding (media.worker_wire)."""

from __future__ import annotations

import contextlib
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commandcenter.config import ConfigError, load_config
from media import worker_wire as w
from media.pool import port_ranges
from media.settings import MAX_WORKERS, worker_count
from media.worker_placement import WorkerLoad, conference_sites, least_loaded
from signalling import protocol as p
from signalling.core.actions import Room, Stage

# ---- placement --------------------------------------------------------------------------


def test_a_room_goes_to_the_worker_with_the_fewest_peers_then_rooms_then_the_first() -> None:
    assert least_loaded([WorkerLoad(0, 4, 1), WorkerLoad(1, 2, 3), WorkerLoad(2, 2, 5)]) == 1
    assert least_loaded([WorkerLoad(0, 2, 2), WorkerLoad(1, 2, 1)]) == 1
    assert least_loaded([WorkerLoad(1, 0, 0), WorkerLoad(0, 0, 0)]) == 0


def test_no_worker_to_place_on_is_an_error() -> None:
    with pytest.raises(ValueError, match="no worker"):
        least_loaded([])


def test_unspread_a_conference_is_placed_whole_at_home() -> None:
    where = conference_sites(
        home=1, members=["a", "b", "c"], placed={}, workers=[0, 1, 2], spread=False
    )
    assert where == {"a": 1, "b": 1, "c": 1}


def test_by_default_a_conference_spreads_over_the_workers() -> None:
    where = conference_sites(home=1, members=["a", "b", "c"], placed={}, workers=[0, 1, 2])
    assert sorted(where.values()) == [0, 1, 2]


def test_spread_conference_joins_go_round_robin_and_placed_members_stay() -> None:
    first = conference_sites(
        home=0, members=["a", "b", "c", "d"], placed={}, workers=[0, 1, 2], spread=True
    )
    assert first == {"a": 0, "b": 1, "c": 2, "d": 0}
    # Two more join: the turn goes on from the four placed; nobody placed moves.
    later = conference_sites(
        home=0, members=["a", "b", "c", "d", "e", "f"], placed=first, workers=[0, 1, 2], spread=True
    )
    assert later == {**first, "e": 1, "f": 2}


def test_a_member_on_a_worker_no_longer_there_is_placed_again() -> None:
    where = conference_sites(home=0, members=["a", "b"], placed={"a": 5, "b": 0}, workers=[0, 1])
    # b stays; a takes the next turn of the round-robin (one site already placed).
    assert where == {"a": 1, "b": 0}


# ---- ports ------------------------------------------------------------------------------


def test_the_port_range_is_split_evenly_and_contiguously() -> None:
    assert port_ranges(40000, 40009, 3) == [(40000, 40003), (40004, 40006), (40007, 40009)]
    assert port_ranges(0, 0, 2) == [(0, 0), (0, 0)]


def test_fewer_ports_than_workers_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 UDP ports cannot be shared by 3"):
        port_ranges(40000, 40001, 3)


@given(low=st.integers(1024, 60000), size=st.integers(1, 5000), count=st.integers(1, 64))
def test_port_shares_cover_the_range_exactly(low: int, size: int, count: int) -> None:
    high = low + size - 1
    if size < count:
        return
    shares = port_ranges(low, high, count)
    assert len(shares) == count
    assert shares[0][0] == low
    assert shares[-1][1] == high
    for (_, end), (start, _) in itertools.pairwise(shares):
        assert start == end + 1
    sizes = [b - a + 1 for a, b in shares]
    assert max(sizes) - min(sizes) <= 1


# ---- the setting ------------------------------------------------------------------------


def test_workers_setting_auto_means_one_per_core_and_a_number_that_many() -> None:
    assert worker_count("auto", 4) == 4
    assert worker_count("auto", 0) == 1
    assert worker_count(0, 4) == 0
    assert worker_count(3, 1) == 3
    assert worker_count("2", 1) == 2


@pytest.mark.parametrize("value", ["many", "", -1, MAX_WORKERS + 1, True, "-1", 1.5])
def test_other_workers_settings_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match='must be "auto" or an integer from 0 to 64'):
        worker_count(value, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ['workers = "many"', "workers = -1", "workers = 65"])
def test_a_bad_workers_setting_is_a_config_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[media]\n{text}\n")
    with pytest.raises(ConfigError, match=re.escape("media.workers: must be")):
        load_config(path, environ={})


def test_workers_from_the_environment() -> None:
    assert load_config(environ={"COMMANDCENTER_MEDIA_WORKERS": "3"}).media.workers in (3, "3")
    with pytest.raises(ConfigError, match=re.escape("media.workers")):
        load_config(environ={"COMMANDCENTER_MEDIA_WORKERS": "lots"})


def test_the_default_is_auto() -> None:
    assert load_config(environ={}).media.workers == "auto"


# ---- the wire ---------------------------------------------------------------------------


def test_records_cross_the_wire_unchanged() -> None:
    room = Room(
        "m-1",
        ("a", "b"),
        ("b",),
        "P0101",
        "o-1",
        None,
        Stage(audible=("a",), spotlight="a", moderators=("a",), feeds=(("o-1", "c-1"),)),
    )
    for record in (
        w.RoomChanged(room=room),
        w.Signal(id=3, user="a", message=p.Offer(id="k1", call_id="c-1", sdp="v=0")),
        w.ConferencePlacement(conference_id="m-1", home=1, where={"a": 1}),
        w.Sinks(
            id=4,
            conference_id="m-1",
            add=[w.SinkRecord(name="sink-0", host="10.0.0.2", port=5000, key=bytes(30))],
            remove=["sink-1"],
        ),
    ):
        body = w.frame(record)[w.HEADER.size :]
        assert w.decode_to_worker(body) == record
    for back in (
        w.Deliver(user="a", message=p.MediaRestart(call_id="c-1")),
        w.Signalled(id=3, code="invalid_state", reason="no offer", field=None),
        w.Register(
            id=1,
            call_id="c-1",
            case_number="c-1",
            court="P0101",
            officer="o-1",
            media_type="image/jpeg",
            file_name="x.jpg",
            captured_at_ms=1.0,
            data=b"\xff\xd8",
        ),
        w.SinksState(id=4, sent={"sink-0": 12}),
        w.SinksState(id=5, error="this conference has no media on this worker"),
    ):
        assert w.decode_to_parent(w.frame(back)[w.HEADER.size :]) == back


def test_a_bench_sink_with_a_key_of_the_wrong_length_is_refused() -> None:
    record = w.Sinks(
        id=1,
        conference_id="m-1",
        add=[w.SinkRecord(name="sink-0", host="10.0.0.2", port=5000, key=bytes(16))],
    )
    with pytest.raises(w.WireError, match="key"):
        w.decode_to_worker(w.frame(record)[w.HEADER.size :])


def test_a_record_of_the_other_direction_is_refused() -> None:
    body = w.frame(w.Ready(worker=0, pid=1))[w.HEADER.size :]
    with pytest.raises(w.WireError, match="Invalid value 'ready'"):
        w.decode_to_worker(body)


@given(st.binary(max_size=256))
def test_any_bytes_decode_to_a_record_or_a_wire_error(data: bytes) -> None:
    for decode in (w.decode_to_parent, w.decode_to_worker):
        with contextlib.suppress(w.WireError):
            decode(data)


@given(
    members=st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10),
    placed=st.dictionaries(st.sampled_from("abcdefghij"), st.integers(0, 4), max_size=10),
    workers=st.lists(st.integers(0, 3), unique=True, min_size=1, max_size=4),
    spread=st.booleans(),
)
def test_every_member_is_placed_on_a_worker_and_placed_members_stay(
    members: list[str], placed: dict[str, int], workers: list[int], spread: bool
) -> None:
    home = workers[0]
    where = conference_sites(
        home=home, members=members, placed=placed, workers=workers, spread=spread
    )
    assert list(where) == members
    for member, worker in where.items():
        assert worker in workers
        if placed.get(member) in workers:
            assert worker == placed[member]
        elif not spread:
            assert worker == home
