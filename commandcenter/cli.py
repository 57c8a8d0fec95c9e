"""The `commandcenter` command: one subcommand per operator task (`serve`, `token`, ...).

Each subcommand is an `_add_<name>` function that registers its parser and the function that
runs it; adding one (`audit verify`, `stats`, `evidence export`) means writing that pair and
listing it in `_COMMANDS`. Every expected failure is one line on stderr and exit status 2;
stdout carries only the command's result, so `$(commandcenter token ...)` works.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeAlias

from commandcenter.auth import Courts, Role, issue_token, load_secret
from commandcenter.config import Config, ConfigError, load_config
from commandcenter.logs import configure_logging

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
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    # replace() re-validates, so a bad --port is reported like a bad server.port.
    config = dataclasses.replace(config, server=server)
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
    p.add_argument("--user", required=True, metavar="ID", help="user id (the sub claim)")
    p.add_argument("--role", required=True, help=f"one of: {', '.join(r.value for r in Role)}")
    p.add_argument("--court", required=True, metavar="CODE", help="court code, e.g. P0101")
    p.add_argument("--name", help="display name (default: the user id)")
    p.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TOKEN_TTL_S,
        metavar="SECONDS",
        help=f"lifetime in seconds (default: {DEFAULT_TOKEN_TTL_S:g}; at most auth.max_ttl_s)",
    )
    p.set_defaults(run=_token)


def _token(args: argparse.Namespace) -> int:
    prog = f"{PROG} token"
    config = _load(args)
    try:
        role = Role(args.role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise CommandError(prog, f"unknown role {args.role!r} (one of: {choices})") from None
    courts = Courts(config.courts)
    if args.court not in courts:
        known = ", ".join(sorted(courts.all()))
        raise CommandError(prog, f"unknown court {args.court!r} (known: {known})")
    ttl_s: float = args.ttl
    if not 0 < ttl_s <= config.auth.max_ttl_s:
        raise CommandError(
            prog, f"--ttl must be more than 0 and at most {config.auth.max_ttl_s} (auth.max_ttl_s)"
        )
    if "HS256" not in config.auth.algorithms:
        raise CommandError(prog, "auth.algorithms excludes HS256, so the server would refuse it")
    secret = load_secret(config.auth, Path(config.server.data_dir))
    try:
        token = issue_token(
            secret,
            user=args.user,
            role=role,
            court=args.court,
            name=args.user if args.name is None else args.name,
            ttl_s=ttl_s,
            now=time.time(),
        )
    except ValueError as exc:
        raise CommandError(prog, str(exc)) from None
    print(token)
    return 0


# -----------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[Commands], None], ...] = (_add_serve, _add_token)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Real-time command-center server for court enforcement officers."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in _COMMANDS:
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
