"""The trace's subject index (sessions/subjects.py): which kinds are filed under which call,
conference or evidence item; every kind the code records about one of them is filed (read
from the code itself); each store files on append and `commandcenter trace reindex` rebuilds
the index, on SQLite and on PostgreSQL."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import typing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from commandcenter.cli import main
from sessions import records, subjects
from sessions.conference_records import CONFERENCE_AUDIT_READ
from sessions.memory_store import MemoryTraceStore
from sessions.recorder import TraceEvent
from sessions.store import TraceStore
from signalling.protocol.callflow import TransferOutcome
from tests.tracehelpers import Backend, PostgresBackend, backend

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

REPO = Path(__file__).resolve().parent.parent
T0 = 1_773_532_800.0
# The fields that make a record about a call, a conference or an evidence item.
SUBJECT_FIELDS = {"call", "conference", "evidence_id"}
# Kinds whose data is built elsewhere (a dict handed over whole) but whose name says whose.
SUBJECT_PREFIXES = ("call_", "conference_", "floor_", "site_", "evidence_", "transfer_", "witness_")


def _constants() -> dict[str, set[str]]:
    """Every module-level `NAME: Final = "text"` of the server's packages, by name."""
    found: dict[str, set[str]] = {}
    for root in ("signalling", "media", "commandcenter", "sessions"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                target = value = None
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    target, value = node.target.id, node.value
                elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                    first = node.targets[0]
                    target = first.id if isinstance(first, ast.Name) else None
                    value = node.value
                if target and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.setdefault(target, set()).add(value.value)
    return found


def _kinds_of(
    node: ast.expr, constants: dict[str, set[str]], local: dict[str, ast.expr]
) -> set[str]:
    match node:
        case ast.Constant(value=str() as text):
            return {text}
        case ast.IfExp(body=body, orelse=orelse):
            return _kinds_of(body, constants, local) | _kinds_of(orelse, constants, local)
        case ast.Name(id=name) if name in local:
            return _kinds_of(local[name], constants, local)
        case ast.Name(id=name) | ast.Attribute(attr=name) if name in constants:
            return constants[name]
        case ast.JoinedStr(values=[ast.Constant(value="transfer_"), ast.FormattedValue()]):
            return {f"transfer_{o}" for o in typing.get_args(TransferOutcome)}
    return set()


def recorded_kinds() -> dict[str, set[str]]:
    """Every record kind the server's code writes, with the data fields it names: read
    from calls of `record(kind, now, **fields)`, `_record(conf, kind, ...)` (which adds
    `conference`) and `TraceEvent(kind, at, {...})`."""
    constants = _constants()
    kinds: dict[str, set[str]] = {}
    for root in ("signalling", "media", "commandcenter", "sessions"):
        for path in (REPO / root).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in ast.walk(tree):
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                local = {
                    n.targets[0].id: n.value
                    for n in ast.walk(fn)
                    if isinstance(n, ast.Assign)
                    and len(n.targets) == 1
                    and isinstance(n.targets[0], ast.Name)
                }
                for call in ast.walk(fn):
                    if not isinstance(call, ast.Call):
                        continue
                    f = call.func
                    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                    fields = {k.arg for k in call.keywords if k.arg}
                    if name == "record" and call.args:
                        kind_arg = call.args[0]
                    elif name == "_record" and len(call.args) >= 2:
                        kind_arg, fields = call.args[1], fields | {"conference"}
                    elif name == "TraceEvent" and call.args:
                        kind_arg = call.args[0]
                        if len(call.args) >= 3 and isinstance(call.args[2], ast.Dict):
                            fields |= {
                                k.value
                                for k in call.args[2].keys
                                if isinstance(k, ast.Constant) and isinstance(k.value, str)
                            }
                    else:
                        continue
                    for kind in _kinds_of(kind_arg, constants, local):
                        kinds.setdefault(kind, set()).update(fields)
    return kinds


def test_the_code_is_read_for_the_kinds_it_records() -> None:
    """The reader finds kinds of every way they are written (a guard on the test below)."""
    kinds = recorded_kinds()
    for kind in (
        "call_created",  # facts.record
        "floor_granted",  # speakers._record
        "conference_recording_started",  # a conditional kind
        "transfer_declined",  # an f-string over TransferOutcome
        "video_watched",  # TraceEvent(CONSTANT, ...)
        "call_audit_read",  # TraceEvent(records.CALL_AUDIT_READ, ...)
        "site_left",
        "conference_ended",
    ):
        assert kind in kinds, kind
    assert "conference" in kinds["floor_granted"]
    assert "call" in kinds["video_watched"]


def test_every_kind_recorded_about_a_call_conference_or_item_is_indexed() -> None:
    kinds = recorded_kinds()
    about = {
        kind
        for kind, fields in kinds.items()
        if fields & SUBJECT_FIELDS or kind.startswith(SUBJECT_PREFIXES)
    }
    # Kinds of other packages, named there, that the audit views read.
    about |= set(records.CALL_AUDIT_KINDS) | set(records.EVIDENCE_AUDIT_KINDS)
    about |= {CONFERENCE_AUDIT_READ}
    missing = sorted(about - subjects.INDEXED_KINDS)
    assert missing == []
    # And nothing listed that nobody writes (a renamed kind would leave its old name here).
    assert sorted(subjects.INDEXED_KINDS - about) == []


def test_a_record_is_filed_under_each_subject_it_names() -> None:
    assert subjects.subjects_of("call_shared", {"call": "c1", "conference": "k1"}) == (
        "call:c1",
        "conference:k1",
    )
    assert subjects.subjects_of("call_evidence", {"call": "c1", "evidence_id": "ev-1"}) == (
        "call:c1",
        "evidence:ev-1",
    )
    # Not an indexed kind, a field that is not a string, an empty or oversized id: nothing.
    assert subjects.subjects_of("sign_in", {"call": "c1"}) == ()
    assert subjects.subjects_of("call_created", {"call": 7}) == ()
    assert subjects.subjects_of("call_created", {"call": ""}) == ()
    assert subjects.subjects_of("call_created", {"call": "x" * 201}) == ()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.sampled_from([*sorted(subjects.INDEXED_KINDS), "sign_in", "position"]),
    st.dictionaries(st.sampled_from(["call", "conference", "evidence_id", "user"]), JSON),
)
def test_any_record_is_filed_under_exactly_the_string_ids_it_names(
    kind: str, data: dict[str, object]
) -> None:
    filed = subjects.subjects_of(kind, data)
    expected = tuple(
        f"{what}:{data[field]}"
        for what, field in subjects.FIELDS
        if kind in subjects.INDEXED_KINDS
        and isinstance(data.get(field), str)
        and 0 < len(str(data[field])) <= subjects.MAX_ID_CHARS
        and "\x00" not in str(data[field])
    )
    assert filed == expected


# --- the stores ----------------------------------------------------------------------------


def events() -> list[TraceEvent]:
    """Two calls, a conference and an evidence item, interleaved with unindexed records."""
    out = []
    for i in range(30):
        out.append(TraceEvent("position", T0 + i, {"user": "o1", "lat": 30.0, "lon": 120.0}))
        out.append(TraceEvent("call_ringing", T0 + i, {"call": f"c{i % 2}", "users": ["op1"]}))
    out.append(TraceEvent("site_joined", T0 + 40, {"conference": "k1", "user": "op1"}))
    out.append(TraceEvent("call_shared", T0 + 41, {"call": "c0", "conference": "k1"}))
    out.append(TraceEvent("evidence_read", T0 + 42, {"evidence_id": "ev-1", "user": "s1"}))
    return out


async def check_index(store: TraceStore) -> None:
    c0 = await store.records_about("call:c0")
    assert [r.data.get("call") for r in c0] == ["c0"] * 16
    assert [r.seq for r in c0] == sorted(r.seq for r in c0)
    assert c0[-1].kind == "call_shared"
    k1 = await store.records_about("conference:k1")
    assert [r.kind for r in k1] == ["site_joined", "call_shared"]
    assert [r.kind for r in await store.records_about("evidence:ev-1")] == ["evidence_read"]
    assert await store.records_about("call:nothing") == []
    assert len(await store.records_about("call:c1", limit=3)) == 3


async def test_each_store_files_records_on_append(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.append(events())
        await check_index(store)
    finally:
        await store.close()


async def test_the_memory_store_files_and_reindexes_alike() -> None:
    store = MemoryTraceStore()
    await store.append(events())
    await check_index(store)
    seen: list[int] = []
    assert await store.reindex(seen.append) == 63
    assert seen == [63]
    await check_index(store)


def config_file(tmp_path: Path, backend: Backend) -> Path:
    path = tmp_path / "config.toml"
    lines = [f'[server]\ndata_dir = "{tmp_path / "var"}"\n[recorder]\n']
    if isinstance(backend, PostgresBackend):
        lines.append(
            f'backend = "postgres"\npostgres_dsn = "{backend.dsn}"\n'
            f'postgres_schema = "{backend.schema}"\n'
        )
    else:
        lines.append(f'sqlite_path = "{tmp_path / "trace.sqlite3"}"\n')
    path.write_text("".join(lines), encoding="utf-8")
    return path


async def test_trace_reindex_rebuilds_a_lost_index_with_a_progress_bar(
    backend: Backend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("COMMANDCENTER_"):
            monkeypatch.delenv(name)
    store = await backend.open()
    try:
        await store.append(events())
    finally:
        await store.close()
    # A trace written before the index existed: opened, it gets an empty index and says so.
    await backend.sql("DROP TABLE {t}_subjects", "DROP TABLE {t}_reindex")
    with capture_logs() as logs:
        store = await backend.open()
    try:
        assert await store.records_about("conference:k1") == []
    finally:
        await store.close()
    warned = [e for e in logs if e["event"].startswith("trace subject index is new")]
    assert len(warned) == 1, logs
    assert warned[0]["log_level"] == "warning"
    with capture_logs() as logs:
        await (await backend.open()).close()
    assert not [e for e in logs if e["event"].startswith("trace subject index is new")]
    config = str(config_file(tmp_path, backend))
    code = await asyncio.to_thread(main, ["trace", "reindex", "--config", config, "--progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["records"] == 63
    assert err.startswith("\rreindexing [")
    assert err.endswith("] 100% 63/63 records\n")
    store = await backend.open()
    try:
        await check_index(store)
        # The server's background reindex, pending since the open above, has nothing left.
        assert (await store.reindex_state()).remaining == 0
        # Run again (or with the server appending): nothing is filed twice.
        assert await store.reindex() == 63
        await check_index(store)
    finally:
        await store.close()


def test_trace_reindex_of_a_missing_trace_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[recorder]\nbackend = "postgres"\npostgres_dsn = "postgresql://nobody@127.0.0.1:1/x"\n'
        "postgres_timeout_s = 1\n",
        encoding="utf-8",
    )
    code = main(["trace", "reindex", "--config", str(path)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("commandcenter trace reindex: cannot reindex the trace: ")
    assert err.count("\n") == 1
