"""The `commandcenter` command: one subcommand per operator task (`serve`, `token`, ...).

Each subcommand is an `_add_<name>` function that registers its parser and the function that
runs it; adding one (`audit verify`, `stats`, `evidence export`) means writing that pair and
listing it in `_COMMANDS`. Every expected failure is one line on stderr and exit status 2;
stdout carries only the command's result, so `$(commandcenter token ...)` works.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

import msgspec

from commandcenter.auth import Courts, Role, issue_token, load_secret
from commandcenter.config import Config, ConfigError, load_config
from commandcenter.logs import configure_logging

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from sessions.checkpoint import Checkpoint
    from sessions.checkpoint_audit import CheckpointReport
    from sessions.originals import OriginalsReport
    from sessions.store import TraceStore
    from sessions.trace import VerifyResult

PROG = "commandcenter"
EXIT_USAGE = 2
DEFAULT_TOKEN_TTL_S = 3600.0

Run: TypeAlias = Callable[[argparse.Namespace], int]
Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"


class CommandError(Exception):
    """An expected refusal (bad argument, unknown court): printed as one line, exit 2."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage block and calls sys.exit; we want one line and a return
    # value, so `main` stays callable in-process.
    def error(self, message: str) -> NoReturn:
        raise CommandError(self.prog, f"{message} (see --help)")


def _config_option() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: embedded defaults); "
        "COMMANDCENTER_<SECTION>_<KEY> environment variables override it",
    )
    return parent


def _load(args: argparse.Namespace) -> Config:
    path: str | None = args.config
    return load_config(path)


# --- serve -------------------------------------------------------------------------------


def _add_serve(commands: Commands) -> None:
    p = commands.add_parser(
        "serve",
        parents=[_config_option()],
        help="run the server",
        description="Run the command-center server until interrupted.",
    )
    p.add_argument("--host", help="address to listen on (overrides server.host)")
    p.add_argument("--port", type=int, help="TCP port to listen on (overrides server.port)")
    p.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    config = _load(args)
    server = config.server
    if args.host is not None:
        server = msgspec.structs.replace(server, host=args.host)
    if args.port is not None:
        server = msgspec.structs.replace(server, port=args.port)
    # replace() re-validates, so a bad --port is reported like a bad server.port.
    config = msgspec.structs.replace(config, server=server)
    configure_logging(config.logging)
    # Imported here so `token` and `--help` do not pay for (or depend on) the server stack.
    from commandcenter.app import serve

    serve(config)
    return 0


# --- token -------------------------------------------------------------------------------


def _add_token(commands: Commands) -> None:
    p = commands.add_parser(
        "token",
        parents=[_config_option()],
        help="print a signed HS256 token (for development and testing)",
        description="Print a signed HS256 token on stdout, using the server's JWT secret.",
    )
    p.add_argument("--user", metavar="ID", help="user id (the sub claim)")
    p.add_argument("--role", help=f"one of: {', '.join(r.value for r in Role)}")
    p.add_argument("--court", metavar="CODE", help="court code, e.g. P0101")
    p.add_argument(
        "--batch",
        type=Path,
        metavar="CSV",
        help="instead of --user/--role/--court: one token per row of a CSV file (header "
        "user,role,court[,name]; - for stdin), printed as JSON lines in the file's order; "
        "a file with any bad row prints nothing and names every bad line",
    )
    p.add_argument("--name", help="display name (default: the user id)")
    p.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TOKEN_TTL_S,
        metavar="SECONDS",
        help=f"lifetime in seconds (default: {DEFAULT_TOKEN_TTL_S:g}; at most auth.max_ttl_s)",
    )
    watched = p.add_mutually_exclusive_group()
    watched.add_argument(
        "--conference",
        metavar="ID",
        help="for --role witness (and only then): the one conference the witness may watch",
    )
    watched.add_argument(
        "--action",
        metavar="ID",
        help="for --role witness (and only then): the one concentrated enforcement action "
        "(a conference of kind action) the witness may watch",
    )
    p.add_argument(
        "--not-before",
        type=float,
        metavar="UNIX_SECONDS",
        help="start of the token's window (default: now); with --ttl, a witness's time window",
    )
    p.set_defaults(run=_token)


def _role(prog: str, value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise CommandError(prog, f"unknown role {value!r} (one of: {choices})") from None


def _court(prog: str, courts: Courts, value: str) -> str:
    if value not in courts:
        known = ", ".join(sorted(courts.all()))
        raise CommandError(prog, f"unknown court {value!r} (known: {known})")
    return value


def _token(args: argparse.Namespace) -> int:
    prog = f"{PROG} token"
    config = _load(args)
    if args.batch is not None:
        if args.user or args.role or args.court or args.name:
            raise CommandError(
                prog, "--batch takes the users from the file: no --user/--role/--court/--name"
            )
    else:
        missing = [f"--{n}" for n in ("user", "role", "court") if not getattr(args, n)]
        if missing:
            raise CommandError(
                prog, f"the following arguments are required: {', '.join(missing)} (see --help)"
            )
    courts = Courts(config.courts)
    ttl_s: float = args.ttl
    if not 0 < ttl_s <= config.auth.max_ttl_s:
        raise CommandError(
            prog, f"--ttl must be more than 0 and at most {config.auth.max_ttl_s} (auth.max_ttl_s)"
        )
    if "HS256" not in config.auth.algorithms:
        raise CommandError(prog, "auth.algorithms excludes HS256, so the server would refuse it")
    scope = (
        f"conference:{args.conference}"
        if args.conference is not None
        else f"action:{args.action}"
        if args.action is not None
        else None
    )
    now = time.time() if args.not_before is None else args.not_before
    faults: list[str] = []
    if args.batch is not None:
        rows, faults = _token_rows(prog, args.batch, courts)
    else:
        role = _role(prog, args.role)
        court = _court(prog, courts, args.court)
        rows = [(0, args.user, role, court, args.user if args.name is None else args.name)]
    secret = load_secret(config.auth, Path(config.server.data_dir))
    tokens: list[dict[str, object]] = []
    for line, user, role, court, name in rows:
        try:
            token = issue_token(
                secret,
                user=user,
                role=role,
                court=court,
                name=name,
                ttl_s=ttl_s,
                now=now,
                scope=scope,
            )
        except ValueError as exc:
            if args.batch is None:
                raise CommandError(prog, str(exc)) from None
            faults.append(f"line {line}: {exc}")
            continue
        tokens.append(
            {"user": user, "role": role.value, "court": court, "token": token,
             "expires_at": math.floor(now + ttl_s)}
        )  # fmt: skip
    if faults:
        faults.sort(key=lambda f: int(f.split()[1].rstrip(":")))
        for fault in faults[:50]:
            print(f"{prog}: {args.batch}: {fault}", file=sys.stderr)
        raise CommandError(prog, f"{args.batch}: {len(faults)} bad rows; no token printed")
    if args.batch is None:
        print(tokens[0]["token"])
        return 0
    for entry in tokens:
        print(json.dumps(entry, ensure_ascii=False))
    return 0


MAX_BATCH_ROWS = 100_000


def _token_rows(
    prog: str, path: Path, courts: Courts
) -> tuple[list[tuple[int, str, Role, str, str]], list[str]]:
    """(line, user, role, court, name) of every good row of a batch file, and a "line N:
    ..." fault for every bad one."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CommandError(prog, f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(prog, f"{path}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if header not in (["user", "role", "court"], ["user", "role", "court", "name"]):
        raise CommandError(prog, f"{path}: line 1: the header must be user,role,court[,name]")
    rows: list[tuple[int, str, Role, str, str]] = []
    faults: list[str] = []
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(rows) + len(faults) >= MAX_BATCH_ROWS:
            faults.append(f"line {line}: more than {MAX_BATCH_ROWS} rows")
            break
        if len(fields) != len(header):
            faults.append(f"line {line}: expected {len(header)} fields, found {len(fields)}")
            continue
        user, role_text, court = (f.strip() for f in fields[:3])
        name = fields[3].strip() if len(fields) == 4 and fields[3].strip() else user
        try:
            role = _role(prog, role_text)
            _court(prog, courts, court)
        except CommandError as exc:
            faults.append(f"line {line}: {exc}")
            continue
        rows.append((line, user, role, court, name))
    return rows, faults


# --- audit verify ------------------------------------------------------------------------

EXIT_TAMPERED = 1
PROGRESS_WIDTH = 30


def _add_audit(commands: Commands) -> None:
    p = commands.add_parser(
        "audit",
        help="check the recorded trace",
        description="Check the hash-chained trace of sign-ins, calls and evidence.",
    )
    actions = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    v = actions.add_parser(
        "verify",
        parents=[_config_option()],
        help="recompute the hash chain and name the first record that was tampered with",
        description="Recompute the hash chain of the trace named by the configuration. "
        "Prints one JSON line (ok, records, head_seq, head_hash, the problem if any, and "
        "the checkpoint block: the trace's end against its latest signed checkpoint); "
        "exit status 0 when intact, 1 when a record was edited, deleted, inserted or "
        "reordered, records were cut off the end or appended after a clean stop, or a "
        "checkpoint does not verify; 2 when the trace cannot be read. Keep the printed head: "
        "passing it back as --anchor later also detects records cut off the end or a "
        "rewritten log.",
    )
    v.add_argument(
        "--progress",
        action="store_true",
        help="draw a progress bar on stderr even when it is not a terminal",
    )
    v.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="a head printed by an earlier run; the record SEQ must still have HASH (repeatable)",
    )
    v.add_argument(
        "--files",
        action="store_true",
        help="also re-hash every evidence original against its record (reads every byte); "
        "a missing or changed original makes the exit status 1",
    )
    _add_checkpoint_options(v)
    v.set_defaults(run=_audit_verify)
    _add_audit_keygen(actions)


def _anchors(prog: str, texts: Sequence[str]) -> dict[int, str]:
    anchors: dict[int, str] = {}
    for text in texts:
        seq, _, digest = text.partition(":")
        if not seq.isdigit() or int(seq) < 1 or len(digest) != 64:
            raise CommandError(prog, f"--anchor {text!r}: expected SEQ:HASH (64 hex digits)")
        anchors[int(seq)] = digest.lower()
    return anchors


class _ProgressBar:
    """A one-line bar redrawn in place on stderr, at most ten times a second."""

    def __init__(self, total: int, what: str = "records", label: str = "verifying") -> None:
        self.total = total
        self.what = what
        self.label = label
        self._drawn_at = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        share = min(done / self.total, 1.0) if self.total else 1.0
        filled = round(share * PROGRESS_WIDTH)
        bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {share:4.0%} {done}/{self.total} {self.what}")
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        sys.stderr.write("\n")
        sys.stderr.flush()


def _audit_verify(args: argparse.Namespace) -> int:
    prog = f"{PROG} audit verify"
    config = _load(args)
    anchors = _anchors(prog, args.anchor)
    show = bool(args.progress) or sys.stderr.isatty()
    # Imported here so `token` and `--help` do not pay for the database drivers.
    from commandcenter.stores import open_store
    from sessions.durable import verify_store
    from sessions.errors import RecorderError

    async def run() -> tuple[VerifyResult, OriginalsReport | None, CheckpointReport, float]:
        started = time.monotonic()
        store = await open_store(config, readonly=True)
        originals = None
        try:
            bar = _ProgressBar(await store.count()) if show else None
            result = await verify_store(
                store, anchors=anchors, progress=None if bar is None else bar.update
            )
            if bar is not None:
                bar.finish(result.records)
            checkpoints = await _check_checkpoints(prog, args, config, store)
            if args.files:
                originals = await _check_originals(config, store, show)
        finally:
            await store.close()
        return result, originals, checkpoints, time.monotonic() - started

    try:
        result, originals, checkpoints, seconds = asyncio.run(run())
    except RecorderError as exc:
        raise CommandError(prog, f"cannot read the trace: {exc.reason}") from None
    summary: dict[str, object] = {
        "ok": result.ok,
        "records": result.records,
        "head_seq": result.head.seq,
        "head_hash": result.head.hash,
        "seconds": round(seconds, 3),
    }
    bad = result.tampering
    if bad is not None:
        summary |= {"seq": bad.seq, "problem": bad.problem, "detail": bad.detail}
    summary["ok"] = result.ok and checkpoints.ok
    summary["checkpoint"] = checkpoints.to_json()
    if originals is not None:
        summary["ok"] = summary["ok"] and originals.ok
        summary["files"] = {
            "checked": originals.files,
            "bytes": originals.bytes,
            "problems": [p.to_json() for p in originals.problems],
        }
    print(json.dumps(summary))
    if bad is not None:
        print(f"{prog}: {bad.message()}", file=sys.stderr)
    _print_checkpoint_lines(prog, checkpoints)
    for problem in originals.problems if originals is not None else ():
        ids = ", ".join(problem.evidence_ids)
        print(
            f"{prog}: original {problem.sha256} ({ids}) is {problem.problem}: {problem.detail}",
            file=sys.stderr,
        )
    return 0 if summary["ok"] else EXIT_TAMPERED


async def _check_originals(config: Config, store: TraceStore, show: bool) -> OriginalsReport:
    from commandcenter.stores import evidence_dir
    from sessions.evidence_store import ContentFiles
    from sessions.originals import check_originals

    files = ContentFiles(evidence_dir(config))
    bar = _ProgressBar(0, "bytes of originals") if show else None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done)

    report = await check_originals(store, files.path, progress=progress)
    if bar is not None:
        bar.total = max(bar.total, report.bytes)
        bar.finish(report.bytes)
    return report


# --- audit: checkpoints (issue 15) ---------------------------------------------------------


def _add_checkpoint_options(v: _Parser) -> None:
    v.add_argument(
        "--public-key",
        metavar="PEM",
        type=Path,
        help="the checkpoint public key (default: the .pub beside audit.checkpoint_key_file, "
        "or that key itself)",
    )
    v.add_argument(
        "--checkpoints",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="a checkpoint log (JSON lines) to check as well (repeatable; "
        "audit.checkpoint_log is read when it exists)",
    )
    v.add_argument(
        "--tsa-certificate",
        metavar="FILE",
        type=Path,
        help="the time-stamp authority's certificate (default: audit.tsa_certificate_file)",
    )
    v.add_argument(
        "--tsa-roots",
        metavar="FILE",
        type=Path,
        help="roots (PEM) the TSA's certificate must chain to (default: audit.tsa_roots_file)",
    )


def _add_audit_keygen(actions: Commands) -> None:
    k = actions.add_parser(
        "keygen",
        parents=[_config_option()],
        help="make the Ed25519 key pair that signs checkpoints",
        description="Write a new checkpoint key (PEM, mode 0600) and its public half (.pub) "
        "to --out, default audit.checkpoint_key_file (<data_dir>-audit/"
        "checkpoint_ed25519.pem). An existing key is never overwritten. Prints one JSON line.",
    )
    k.add_argument("--out", metavar="PATH", type=Path, help="where to write the private key")
    k.set_defaults(run=_audit_keygen)


def _audit_keygen(args: argparse.Namespace) -> int:
    prog = f"{PROG} audit keygen"
    config = _load(args)
    from commandcenter.config import audit_key_path
    from sessions.checkpoint import key_id
    from sessions.checkpoint_files import KeyFileError, public_key_path, write_key_pair

    path: Path = args.out if args.out is not None else audit_key_path(config)
    try:
        key = write_key_pair(path)
    except KeyFileError as exc:
        raise CommandError(prog, str(exc)) from None
    print(
        json.dumps(
            {
                "key_file": str(path),
                "public_key_file": str(public_key_path(path)),
                "key_id": key_id(key.public_key()),
            }
        )
    )
    return 0


def _public_key(prog: str, args: argparse.Namespace, config: Config) -> Ed25519PublicKey | None:
    from commandcenter.config import audit_key_path
    from sessions.checkpoint_files import KeyFileError, load_public_key, public_key_path

    given: Path | None = args.public_key
    if given is not None:
        try:
            return load_public_key(given)
        except KeyFileError as exc:
            raise CommandError(prog, f"--public-key: {exc}") from None
    private = audit_key_path(config)
    for path in (public_key_path(private), private):
        if path.exists():
            try:
                return load_public_key(path)
            except KeyFileError:
                continue
    return None


def _checkpoint_sources(
    prog: str, args: argparse.Namespace, config: Config, table: list[Checkpoint]
) -> list[tuple[str, Checkpoint]]:
    from sessions.checkpoint import CheckpointError
    from sessions.checkpoint_files import read_log

    sources = [("checkpoints table", cp) for cp in table]
    logs: list[Path] = list(args.checkpoints)
    configured = config.audit.checkpoint_log
    if configured and Path(configured).exists() and Path(configured) not in logs:
        logs.append(Path(configured))
    for path in logs:
        try:
            for n, entry in read_log(path):
                if isinstance(entry, CheckpointError):
                    raise CommandError(prog, f"{path} line {n}: not a checkpoint ({entry})")
                sources.append((f"{path} line {n}", entry))
        except OSError as exc:
            raise CommandError(prog, f"{path}: {exc.strerror}") from None
    return sources


async def _check_checkpoints(
    prog: str, args: argparse.Namespace, config: Config, store: TraceStore
) -> CheckpointReport:
    from commandcenter.tsa_client import load_tsa_trust
    from sessions.checkpoint import CheckpointError
    from sessions.checkpoint_audit import CheckpointReport, audit_checkpoints
    from sessions.errors import TimestampError

    try:
        table = await store.checkpoints()
    except CheckpointError as exc:
        report = CheckpointReport()
        report.problems.append(f"checkpoints table: an unreadable checkpoint ({exc})")
        return report
    sources = _checkpoint_sources(prog, args, config, table)
    public = _public_key(prog, args, config) if sources else None
    if sources and public is None:
        raise CommandError(
            prog,
            f"{len(sources)} checkpoint(s) but no public key to check them: pass --public-key",
        )
    cert_path = args.tsa_certificate or config.audit.tsa_certificate_file
    roots_path = args.tsa_roots or config.audit.tsa_roots_file
    try:
        trust = load_tsa_trust(str(cert_path or ""), str(roots_path or ""))
    except TimestampError as exc:
        raise CommandError(prog, f"TSA certificate: {exc.reason}") from None
    return await audit_checkpoints(store, sources, public, trust)


def _print_checkpoint_lines(prog: str, report: CheckpointReport) -> None:
    for problem in report.problems:
        print(f"{prog}: {problem}", file=sys.stderr)
    tail = report.tail
    if tail is None or tail.status == "ok":
        return
    if tail.ok:
        print(f"{prog}: note: {tail.detail}", file=sys.stderr)
    else:
        line = f"{prog}: checkpoint: record {tail.seq} {tail.status}: {tail.detail}"
        print(line, file=sys.stderr)


# --- stats -------------------------------------------------------------------------------


def _add_stats(commands: Commands) -> None:
    p = commands.add_parser(
        "stats",
        parents=[_config_option()],
        help="print the platform's figures for a period and a court",
        description="Print the figures (officers signed in, sign-ins, evidence, command "
        "connections, conferences, answered and missed calls) for the period [FROM, TO), "
        "counted from the trace. Dates are midnight in recorder.time_zone; "
        "docs/statistics.md says what each figure counts.",
    )
    p.add_argument("--from", dest="start", required=True, metavar="DATE", help="first day")
    p.add_argument("--to", dest="end", required=True, metavar="DATE", help="day after the last")
    p.add_argument(
        "--court", metavar="CODE", help="count this court and those below it (default: all)"
    )
    p.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="default: table"
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="also say how each figure is counted: which records, which fields (table, json)",
    )
    p.set_defaults(run=_stats)


def _stats(args: argparse.Namespace) -> int:
    prog = f"{PROG} stats"
    config = _load(args)
    from commandcenter.stores import open_store
    from sessions.durable import statistics_report, zone_of
    from sessions.errors import BadQuery, RecorderError
    from sessions.statistics import Report, explained, parse_period, render_csv, render_table

    courts = Courts(config.courts)
    court: str | None = args.court
    if court is not None and court not in courts:
        known = ", ".join(sorted(courts.all()))
        raise CommandError(prog, f"unknown court {court!r} (known: {known})")
    try:
        period = parse_period(args.start, args.end, zone_of(config.recorder.time_zone))
    except BadQuery as exc:
        raise CommandError(prog, f"--{exc.field}: {exc.reason}") from None

    async def run() -> Report:
        store = await open_store(config, readonly=True)
        try:
            return await statistics_report(store, courts, period, court)
        finally:
            await store.close()

    try:
        report = asyncio.run(run())
    except RecorderError as exc:
        raise CommandError(prog, f"cannot read the trace: {exc.reason}") from None
    if args.format == "json":
        print(json.dumps(explained(report) if args.explain else report.as_json()))
    elif args.format == "csv":
        if args.explain:
            raise CommandError(prog, "--explain goes with --format table or json")
        sys.stdout.write(render_csv(report))
    else:
        sys.stdout.write(render_table(report, explain=args.explain))
    return 0


# --- evidence ----------------------------------------------------------------------------


def _add_evidence(commands: Commands) -> None:
    p = commands.add_parser(
        "evidence",
        help="export a case's evidence with its proof, and check such exports",
        description="Export one case's evidence as a bundle that can be verified on its own "
        "and against the trace (docs/evidence.md), or check a bundle.",
    )
    actions = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    e = actions.add_parser(
        "export",
        parents=[_config_option()],
        help="write a case's originals, metadata and trace records to a directory",
        description="Write the bundle of one case into DIR (created; must be empty): the "
        "originals, their metadata, the trace records concerning them and VERIFY.txt. The "
        "export is recorded in the trace. Prints one JSON line.",
    )
    e.add_argument("--case", required=True, metavar="NUMBER", help="the case number")
    e.add_argument("--out", required=True, metavar="DIR", type=Path, help="target directory")
    e.set_defaults(run=_evidence_export)
    v = actions.add_parser(
        "verify",
        parents=[_config_option()],
        help="check a bundle: originals, record hashes, metadata (and --chain)",
        description="Check a bundle made by `evidence export`. Prints one JSON line; exit "
        "status 0 when everything checks, 1 when something does not.",
    )
    v.add_argument("bundle", metavar="DIR", type=Path, help="the bundle's directory")
    v.add_argument(
        "--chain",
        action="store_true",
        help="also verify the configured trace, with every bundled record as an anchor",
    )
    v.add_argument(
        "--public-key",
        metavar="PEM",
        type=Path,
        help="the checkpoint public key the bundle must be signed with (default: the "
        "bundle's own checkpoint.pub, whose key_id is printed for comparison)",
    )
    v.set_defaults(run=_evidence_verify)


def _evidence_export(args: argparse.Namespace) -> int:
    prog = f"{PROG} evidence export"
    config = _load(args)
    from commandcenter.checkpoints import open_checkpointer
    from commandcenter.stores import evidence_store, open_store
    from sessions.checkpoint_files import KeyFileError
    from sessions.durable import DurableRecorder
    from sessions.errors import RecorderError
    from sessions.evidence import BadRequest, parse_case_number
    from sessions.export import ExportSummary, export_case, exported_by_default

    try:
        case_number = parse_case_number(args.case, "--case")
    except BadRequest as exc:
        raise CommandError(prog, f"--case: {exc.reason}") from None
    out: Path = args.out
    # Log lines go to stderr, stdout being the result's; only what needs the operator (a
    # checkpoint key made now, an alarm), not each checkpoint.
    configure_logging(msgspec.structs.replace(config.logging, level="warning"), cache=False)

    async def run() -> ExportSummary:
        store = await open_store(config)
        try:
            evidence = evidence_store(config, trace=store, recorder=DurableRecorder.over(store))
            who = exported_by_default()
            # The bundle is signed with the checkpoint key, at a checkpoint of its own.
            checkpointer = await open_checkpointer(config, store, node=who, clock=time.time)
            return await export_case(
                evidence, store, case_number, out, exported_by=who, checkpointer=checkpointer
            )
        finally:
            await store.close()

    try:
        summary = asyncio.run(run())
    except RecorderError as exc:
        raise CommandError(prog, exc.reason) from None
    except KeyFileError as exc:
        raise CommandError(prog, f"checkpoint key: {exc}") from None
    print(
        json.dumps(
            {
                "case_number": summary.case_number,
                "out": str(summary.out),
                "items": summary.items,
                "records": summary.records,
                "head_seq": summary.head.seq,
                "head_hash": summary.head.hash,
                "key_id": summary.key_id,
            },
            ensure_ascii=False,
        )
    )
    return 0


def _evidence_verify(args: argparse.Namespace) -> int:
    prog = f"{PROG} evidence verify"
    from commandcenter.stores import open_store
    from sessions.errors import RecorderError
    from sessions.export import check_against_chain, check_bundle

    public = None
    if args.public_key is not None:
        from sessions.checkpoint_files import KeyFileError, load_public_key

        try:
            public = load_public_key(args.public_key)
        except KeyFileError as exc:
            raise CommandError(prog, f"--public-key: {exc}") from None
    check = check_bundle(args.bundle, public)
    problems = list(check.problems)
    summary: dict[str, object] = {
        "items": check.items,
        "records": check.records,
        "key_id": check.key_id,
        "head_seq": None if check.head is None else check.head.seq,
    }
    if args.chain and public is None:
        # Against the chain, the bundle must be signed with this server's key.
        server_key = _public_key(prog, args, _load(args))
        if server_key is not None:
            check = check_bundle(args.bundle, server_key)
            problems = list(check.problems)
            summary["key_id"] = check.key_id
    if args.chain and check.ok:
        config = _load(args)

        async def run() -> VerifyResult:
            store = await open_store(config, readonly=True)
            try:
                return await check_against_chain(store, check)
            finally:
                await store.close()

        try:
            result = asyncio.run(run())
        except RecorderError as exc:
            raise CommandError(prog, f"cannot read the trace: {exc.reason}") from None
        summary["chain"] = {
            "ok": result.ok,
            "records": result.records,
            "head_seq": result.head.seq,
            "head_hash": result.head.hash,
        }
        if result.tampering is not None:
            problems.append(f"trace: {result.tampering.message()}")
    print(json.dumps({"ok": not problems, **summary, "problems": problems}, ensure_ascii=False))
    for problem in problems:
        print(f"{prog}: {problem}", file=sys.stderr)
    return EXIT_TAMPERED if problems else 0


# -----------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[Commands], None], ...] = (
    _add_serve,
    _add_token,
    _add_audit,
    _add_stats,
    _add_evidence,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Real-time command-center server for court enforcement officers."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    # Imported here: user_cli and trace_cli build on this module's parser and errors.
    from commandcenter.trace_cli import add_trace
    from commandcenter.user_cli import add_user

    for add in (*_COMMANDS, add_user, add_trace):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the process exit status."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            # --help and --version exit through argparse; keep main() returning.
            return exc.code if isinstance(exc.code, int) else 0
        run: Run = args.run
        return run(args)
    except CommandError as exc:
        print(f"{exc.prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE


__all__ = ["build_parser", "main"]
