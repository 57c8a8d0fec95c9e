"""`commandcenter audit verify` against checkpoints, on a real SQLite trace and a real
PostgreSQL one: records cut off the end, or appended after a clean stop, fail naming the
right seq; records after a periodic checkpoint are reported as not yet covered; a forged
checkpoint is refused; the checkpoint log outlives a checkpoints table cut short;
`audit keygen` makes a key pair."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from commandcenter.checkpoints import open_checkpointer
from commandcenter.cli import main
from commandcenter.config import audit_key_path, load_config
from sessions.checkpoint import Reason, sign
from sessions.recorder import TraceEvent
from sessions.trace import Head
from tests.tracehelpers import Backend, backend, make_backend

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

T0 = 1_773_532_800.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("COMMANDCENTER_"):
            monkeypatch.delenv(name)


def config_file(tmp_path: Path, backend: Backend, extra: str = "") -> Path:
    from tests.test_audit_cli import config_file as base

    path = base(tmp_path, backend)
    if extra:
        path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


async def append(backend: Backend, n: int, kind: str = "position") -> None:
    store = await backend.open()
    try:
        await store.append([TraceEvent(kind, T0 + i, {"user": f"o{i}"}) for i in range(n)])
    finally:
        await store.close()


async def checkpoint(backend: Backend, config: Path, reason: Reason) -> None:
    store = await backend.open()
    try:
        cp = await open_checkpointer(load_config(config), store, node="n1", clock=time.time)
        assert await cp.checkpoint(reason) is not None
    finally:
        await store.close()


async def verify(
    capsys: pytest.CaptureFixture[str], config: Path, *argv: str
) -> tuple[int, dict[str, object], dict[str, object], str]:
    capsys.readouterr()  # what the test's own steps logged
    code = await asyncio.to_thread(main, ["audit", "verify", "--config", str(config), *argv])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    checkpoint: dict[str, object] = summary["checkpoint"]
    return code, summary, checkpoint, err


async def test_a_trace_ending_at_its_stop_checkpoint_verifies(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, backend)
    await append(backend, 10)
    await checkpoint(backend, config, "stop")
    code, summary, cp, err = await verify(capsys, config)
    assert (code, err) == (0, "")
    assert summary["ok"] is True
    assert (cp["status"], cp["seq"], cp["reason"], cp["checkpoints"]) == ("ok", 10, "stop", 1)


async def test_records_cut_off_the_end_fail_naming_the_first_missing_seq(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, backend)
    await append(backend, 10)
    await checkpoint(backend, config, "periodic")
    await backend.sql("DELETE FROM {t} WHERE seq >= 8")
    code, summary, cp, err = await verify(capsys, config)
    assert code == 1
    assert summary["ok"] is False
    # The chain that is left is intact: only the checkpoint shows what is gone.
    assert "problem" not in summary
    assert (cp["status"], cp["problem_seq"], cp["seq"]) == ("truncated", 8, 10)
    assert "record 8 truncated" in err
    assert "8 to 10 were cut off" in err


async def test_a_record_appended_after_a_clean_stop_fails_naming_it(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chained correctly (SHA-256 needs no key), so only the stop checkpoint gives it away."""
    config = config_file(tmp_path, backend)
    await append(backend, 10)
    await checkpoint(backend, config, "stop")
    await append(backend, 1, kind="sign_in")
    code, summary, cp, err = await verify(capsys, config)
    assert code == 1
    assert "problem" not in summary
    assert (cp["status"], cp["problem_seq"], cp["uncovered"]) == ("appended", 11, 1)
    assert "record 11 appended" in err


async def test_a_record_appended_that_does_not_chain_from_the_checkpoint_is_named_forged(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A keyless chain check can only say the pair 10-11 disagrees; the checkpoint vouches
    for 10, so 11 is the forgery."""
    config = config_file(tmp_path, backend)
    await append(backend, 10)
    await checkpoint(backend, config, "periodic")
    await backend.sql(
        "INSERT INTO {t} (seq, at_us, kind, data, prev_hash, hash)"
        " SELECT 11, at_us + 1, kind, data, prev_hash, hash FROM {t} WHERE seq = 10"
    )
    code, summary, cp, err = await verify(capsys, config)
    assert code == 1
    assert summary["ok"] is False
    assert (cp["status"], cp["problem_seq"]) == ("forged", 11)
    assert "record 11 forged: record 11 does not chain on from the checkpointed record 10" in err


async def test_records_after_a_periodic_checkpoint_are_reported_as_not_yet_covered(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, backend)
    await append(backend, 10)
    await checkpoint(backend, config, "periodic")
    await append(backend, 3)
    code, _, cp, err = await verify(capsys, config)
    assert code == 0
    assert (cp["status"], cp["uncovered"], cp["uncovered_seqs"]) == ("extended", 3, [11, 13])
    assert "3 record(s) after the last checkpoint at seq 10 (11 to 13)" in err
    # The next start's records after a stop are as expected, too.
    await checkpoint(backend, config, "stop")
    await append(backend, 1, kind="server_started")
    code, _, cp, _ = await verify(capsys, config)
    assert (code, cp["status"], cp["problem_seq"]) == (0, "extended", None)


async def test_a_checkpoint_not_signed_with_the_key_is_refused(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, backend)
    await append(backend, 10)
    await checkpoint(backend, config, "periodic")
    store = await backend.open()
    try:
        forged = sign(
            Ed25519PrivateKey.generate(), Head(5, "00" * 32), now=T0, node="x", reason="stop"
        )
        await store.add_checkpoint(forged)
    finally:
        await store.close()
    code, _, cp, err = await verify(capsys, config)
    assert code == 1
    assert cp["checkpoints"] == 2
    assert cp["status"] == "ok"  # the genuine one still covers the trace
    assert "checkpoint at seq 5 (checkpoints table): signature does not verify" in err


async def test_a_checkpoint_row_changed_to_nonsense_is_a_problem_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite keeps any value in any column: a seq made text is reported, exit 1."""
    backend = make_backend("sqlite", tmp_path)
    config = config_file(tmp_path, backend)
    await append(backend, 3)
    await checkpoint(backend, config, "stop")
    await backend.sql("UPDATE {c} SET seq = 'three'")
    code, _, cp, err = await verify(capsys, config)
    assert (code, cp["ok"], cp["status"]) == (1, False, "none")
    assert "checkpoints table: an unreadable checkpoint (a field has the wrong type)" in err


async def test_the_checkpoint_log_outlives_a_checkpoints_table_cut_short(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "elsewhere" / "checkpoints.jsonl"
    config = config_file(tmp_path, backend, f'[audit]\ncheckpoint_log = "{log}"\n')
    await append(backend, 6)
    await checkpoint(backend, config, "periodic")
    await append(backend, 4)
    await checkpoint(backend, config, "periodic")
    assert len(log.read_text().splitlines()) == 2
    await backend.sql("DELETE FROM {t} WHERE seq > 6")
    await backend.sql("DELETE FROM {c} WHERE seq > 6")
    code, _, cp, err = await verify(capsys, config)
    assert code == 1
    assert (cp["status"], cp["problem_seq"], cp["checkpoints"]) == ("truncated", 7, 3)
    assert "record 7 truncated" in err


async def test_the_public_key_can_be_given_and_a_wrong_one_fails(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, backend)
    await append(backend, 3)
    await checkpoint(backend, config, "stop")
    pub = Path(f"{audit_key_path(load_config(config))}.pub")
    code, _, cp, _ = await verify(capsys, config, "--public-key", str(pub))
    assert (code, cp["status"]) == (0, "ok")
    assert main(["audit", "keygen", "--out", str(tmp_path / "other.pem")]) == 0
    capsys.readouterr()
    code, _, cp, err = await verify(capsys, config, "--public-key", str(tmp_path / "other.pem"))
    assert (code, cp["status"]) == (1, "none")
    assert "signature does not verify" in err


def test_keygen_writes_a_private_key_0600_and_its_public_half_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "keys" / "cp.pem"
    assert main(["audit", "keygen", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["key_file"] == str(out)
    assert len(printed["key_id"]) == 64
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert Path(printed["public_key_file"]).read_text().startswith("-----BEGIN PUBLIC KEY")
    before = out.read_bytes()
    assert main(["audit", "keygen", "--out", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert out.read_bytes() == before
