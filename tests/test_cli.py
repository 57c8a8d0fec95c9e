"""The `commandcenter` command line, run in-process through `main` and once as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from commandcenter.auth import Role, build_verifier
from commandcenter.cli import main
from commandcenter.config import load_config

TOKEN_ARGS = ["token", "--user", "o1", "--role", "officer", "--court", "P0101"]


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose data_dir is private to the test, with no COMMANDCENTER_* overrides."""
    for name in list(os.environ):
        if name.startswith("COMMANDCENTER_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_token_prints_one_line_that_the_server_verifier_accepts(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *TOKEN_ARGS, "--name", "Ann", "--config", str(config_file))
    assert (code, err) == (0, "")
    assert out.endswith("\n")
    assert out.count("\n") == 1
    token = out.strip()
    verifier = build_verifier(load_config(config_file, environ={}))
    who = verifier.verify(token, time.time())
    assert (who.user_id, who.name, who.role, who.court) == ("o1", "Ann", Role.OFFICER, "P0101")
    assert 3590 < who.expires_at - time.time() <= 3600


def test_token_ttl_sets_the_lifetime(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *TOKEN_ARGS, "--ttl", "120", "--config", str(config_file))
    assert code == 0
    who = build_verifier(load_config(config_file, environ={})).verify(out.strip(), time.time())
    assert 110 < who.expires_at - time.time() <= 120


def test_token_reuses_the_generated_secret(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs sign with the same secret file, so both tokens verify against it."""
    run(capsys, *TOKEN_ARGS, "--config", str(config_file))
    secret_file = config_file.parent / "var" / "jwt_secret"
    before = secret_file.read_text()
    code, out, _ = run(capsys, *TOKEN_ARGS, "--config", str(config_file))
    assert code == 0
    assert secret_file.read_text() == before
    assert build_verifier(load_config(config_file, environ={})).verify(out.strip(), time.time())


@pytest.mark.parametrize(
    ("flag", "scope"), [("--conference", "conference"), ("--action", "action")]
)
def test_a_witness_token_names_what_they_watch_and_when(
    config_file: Path, capsys: pytest.CaptureFixture[str], flag: str, scope: str
) -> None:
    start = time.time() + 60.0
    argv = ["token", "--user", "w1", "--role", "witness", "--court", "P", flag, "m-1"]
    window = ["--not-before", str(start), "--ttl", "600", "--config", str(config_file)]
    code, out, _ = run(capsys, *argv, *window)
    assert code == 0
    who = build_verifier(load_config(config_file, environ={})).verify(out.strip(), start)
    assert (who.role, who.scope) == (Role.WITNESS, f"{scope}:m-1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--conference", "m-1", "--action", "m-2"], "not allowed with argument"),
        (["--role", "judge"], "unknown role 'judge'"),
        (["--court", "X9"], "unknown court 'X9'"),
        (["--ttl", "0"], "--ttl must be more than 0"),
        (["--ttl", "-5"], "--ttl must be more than 0"),
        (["--ttl", "86401"], "at most 86400"),
        (["--ttl", "soon"], "invalid float value"),
        (["--user", "u" * 65], "user must be 1 to 64 characters"),
    ],
)
def test_token_refuses_bad_arguments_with_one_line_and_exit_2(
    config_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, *TOKEN_ARGS, *args, "--config", str(config_file))
    assert code == 2
    assert out == ""
    assert err.startswith("commandcenter token: ")
    assert message in err
    assert err.count("\n") == 1


def test_missing_required_argument_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "token", "--user", "o1")
    assert code == 2
    assert err == (
        "commandcenter token: the following arguments are required: --role, --court (see --help)\n"
    )


def test_no_command_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert err.startswith("commandcenter: ")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "serve" in out
    assert "token" in out


def test_config_error_is_one_line_naming_the_problem_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    code, _, err = run(capsys, *TOKEN_ARGS, "--config", str(bad))
    assert (code, err) == (2, "commandcenter: server.prot: unknown setting\n")
    code, _, err = run(capsys, "serve", "--config", str(tmp_path / "absent.toml"))
    assert code == 2
    assert err == f"commandcenter: {tmp_path / 'absent.toml'}: no such file\n"


def test_bad_environment_override_is_a_config_error(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMMANDCENTER_SERVER_PROT", "9000")
    code, _, err = run(capsys, *TOKEN_ARGS, "--config", str(config_file))
    assert code == 2
    assert "COMMANDCENTER_SERVER_PROT: no such setting" in err


def test_serve_rejects_an_invalid_port_before_starting(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "serve", "--config", str(config_file), "--port", "70000")
    assert (code, err) == (2, "commandcenter: server.port: 70000 is not a TCP port\n")


def test_installed_script_prints_a_verifiable_token(tmp_path: Path) -> None:
    """`.venv/bin/commandcenter token ...` works as a process, using ./var under its cwd."""
    script = Path(sys.executable).parent / "commandcenter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    result = subprocess.run(
        [str(script), *TOKEN_ARGS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert (tmp_path / "var" / "jwt_secret").is_file()
    config = load_config(None, environ={"COMMANDCENTER_SERVER_DATA_DIR": str(tmp_path / "var")})
    who = build_verifier(config).verify(result.stdout.strip(), time.time())
    assert (who.user_id, who.role, who.court) == ("o1", Role.OFFICER, "P0101")


def test_python_dash_m_runs_the_same_command(tmp_path: Path) -> None:
    """`python -m commandcenter` reaches the same parser (and its exit status)."""
    result = subprocess.run(
        [sys.executable, "-m", "commandcenter", *TOKEN_ARGS, "--role", "judge"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("commandcenter token: ")


def test_a_batch_file_prints_one_verifiable_token_per_row_in_order(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    batch = tmp_path / "users.csv"
    batch.write_text(
        "user,role,court,name\no-1,officer,P0101,张警官\nop-1,operator,P0101,\nsv-1,supervisor,P01,李科长\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "token", "--batch", str(batch), "--config", str(config_file))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(t["user"], t["role"], t["court"]) for t in lines] == [
        ("o-1", "officer", "P0101"),
        ("op-1", "operator", "P0101"),
        ("sv-1", "supervisor", "P01"),
    ]
    verifier = build_verifier(load_config(config_file))
    identities = [verifier.verify(t["token"], time.time()) for t in lines]
    assert [i.name for i in identities] == ["张警官", "op-1", "李科长"]
    assert all(t["expires_at"] > time.time() for t in lines)


def test_a_batch_file_with_bad_rows_prints_no_token_and_names_every_line(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "users.csv"
    batch.write_text(
        "user,role,court\no-1,officer,P0101\no-2,pilot,P0101\no-3,officer,NOPE\n@srv,officer,P0101\n"
    )
    code, out, err = run(capsys, "token", "--batch", str(batch), "--config", str(config_file))
    assert code == 2
    assert out == ""
    for line in ("line 3: ", "line 4: ", "line 5: "):
        assert line in err
    assert "no token printed" in err
    code, _, err = run(
        capsys, "token", "--batch", str(batch), "--user", "x", "--config", str(config_file)
    )
    assert code == 2
    assert "--batch takes the users from the file" in err
    code, _, err = run(capsys, "token", "--role", "officer", "--config", str(config_file))
    assert code == 2
    assert "the following arguments are required: --user, --court" in err
