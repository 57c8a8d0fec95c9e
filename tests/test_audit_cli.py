"""`commandcenter audit verify`: a JSON summary on stdout, exit 0 for an intact trace and 1
naming the first tampered record, a progress bar on stderr only for a terminal or with
--progress, anchors against a cut-off tail, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from commandcenter.cli import main
from sessions.recorder import TraceEvent
from tests.tracehelpers import TAMPERING, Backend, PostgresBackend, backend, make_backend

# A shared fixture (tests.tracehelpers): each test on SQLite and on PostgreSQL.
__all__ = ["backend"]

REPO = Path(__file__).resolve().parent.parent
T0 = 1_773_532_800.0


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    return make_backend("sqlite", tmp_path)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COMMANDCENTER_* variable of the environment reaches the CLI's config."""
    for name in list(os.environ):
        if name.startswith("COMMANDCENTER_"):
            monkeypatch.delenv(name)


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


async def write_trace(backend: Backend, n: int) -> None:
    store = await backend.open()
    try:
        for start in range(0, n, 5000):
            await store.append(
                [
                    TraceEvent("position", T0 + i, {"user": f"o{i % 50}", "lat": 30.5})
                    for i in range(start, min(n, start + 5000))
                ]
            )
    finally:
        await store.close()


async def verify_cli(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, object], str]:
    # In a thread: the CLI runs its own event loop, as in its own process.
    code = await asyncio.to_thread(main, ["audit", "verify", *argv])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, out
    summary: dict[str, object] = json.loads(lines[0])
    return code, summary, err


async def test_an_intact_trace_verifies_with_exit_0_and_a_json_summary(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await write_trace(backend, 120)
    store = await backend.open(readonly=True)
    head = await store.head()
    await store.close()
    code, summary, err = await verify_cli(capsys, "--config", str(config_file(tmp_path, backend)))
    assert (code, err) == (0, "")
    assert summary["ok"] is True
    assert (summary["records"], summary["head_seq"], summary["head_hash"]) == (
        120,
        120,
        head.hash,
    )


@pytest.mark.parametrize("case", ["edit data", "delete", "reorder", "insert"])
async def test_a_tampered_trace_exits_1_naming_the_record_and_the_problem(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    await write_trace(backend, 10)
    statements, seq, problem = TAMPERING[case]
    await backend.sql(*statements)
    code, summary, err = await verify_cli(capsys, "--config", str(config_file(tmp_path, backend)))
    assert code == 1
    assert (summary["ok"], summary["seq"], summary["problem"]) == (False, seq, problem)
    assert summary["records"] == seq - 1
    assert err.startswith(f"commandcenter audit verify: record {seq} {problem}: ")
    assert err.count("\n") == 1


async def test_a_cut_off_tail_fails_against_the_anchor_printed_earlier(
    sqlite_backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await write_trace(sqlite_backend, 10)
    config = str(config_file(tmp_path, sqlite_backend))
    _, before, _ = await verify_cli(capsys, "--config", config)
    anchor = f"{before['head_seq']}:{before['head_hash']}"
    await sqlite_backend.sql("DELETE FROM {t} WHERE seq >= 9")
    code, summary, _ = await verify_cli(capsys, "--config", config)
    assert code == 0
    code, summary, err = await verify_cli(capsys, "--config", config, "--anchor", anchor)
    assert code == 1
    assert (summary["seq"], summary["problem"]) == (10, "deleted")
    assert "record 10 deleted" in err


def test_a_malformed_anchor_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, make_backend("sqlite", tmp_path))
    assert main(["audit", "verify", "--config", str(config), "--anchor", "5:abc"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--anchor '5:abc': expected SEQ:HASH" in err


def test_a_missing_trace_is_one_line_and_exit_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, make_backend("sqlite", tmp_path))
    assert main(["audit", "verify", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("commandcenter audit verify: cannot read the trace: ")
    assert err.count("\n") == 1
    assert not (tmp_path / "trace.sqlite3").exists()


async def test_progress_is_drawn_on_stderr_when_asked_and_ends_complete(
    sqlite_backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await write_trace(sqlite_backend, 25_000)
    config = str(config_file(tmp_path, sqlite_backend))
    code, summary, err = await verify_cli(capsys, "--config", config, "--progress")
    assert (code, summary["records"]) == (0, 25_000)
    assert err.startswith("\rverifying [")
    assert err.endswith("] 100% 25000/25000 records\n")
    assert err.count("\n") == 1


async def test_progress_is_drawn_when_stderr_is_a_terminal_and_not_otherwise(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    """A real `commandcenter` process: the bar goes to a terminal, never into a pipe."""
    await write_trace(sqlite_backend, 100)
    config = str(config_file(tmp_path, sqlite_backend))
    argv = [sys.executable, "-m", "commandcenter", "audit", "verify", "--config", config]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    piped = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert (piped.returncode, piped.stderr) == (0, "")
    assert json.loads(piped.stdout)["ok"] is True

    controller, terminal = pty.openpty()
    try:
        proc = await asyncio.to_thread(
            subprocess.run,
            argv,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            cwd=REPO,
            env=env,
            timeout=60,
        )
    finally:
        os.close(terminal)
    drawn = b""
    try:
        while chunk := os.read(controller, 4096):
            drawn += chunk
    except OSError:  # EIO: the terminal's other end is closed and everything was read
        pass
    finally:
        os.close(controller)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["records"] == 100
    assert b"100% 100/100 records" in drawn
