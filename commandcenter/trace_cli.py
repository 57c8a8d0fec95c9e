"""`commandcenter trace reindex`: rebuild the trace's subject index (sessions/subjects.py).

The index (which records are about which call, conference or evidence item) is written with
every append; a trace written before it existed, or one whose index is in doubt, gets it
from this command. It reads every record once (a progress bar on stderr when it is a
terminal, or with `--progress`), files each record of an indexed kind under its subjects, and
prints one JSON line: `{"records": N, "seconds": S}`. The server may run meanwhile: appends go
on and file their own records; an audit view read during the rebuild may miss older records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from commandcenter.cli import PROG, CommandError, Commands, _config_option, _load, _ProgressBar


def add_trace(commands: Commands) -> None:
    p = commands.add_parser(
        "trace",
        help="maintain the recorded trace's indexes",
        description="Maintain the indexes kept beside the hash-chained trace.",
    )
    actions = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    r = actions.add_parser(
        "reindex",
        parents=[_config_option()],
        help="rebuild the subject index of calls, conferences and evidence items",
        description="Rebuild the subject index the audit views read (which records are "
        "about which call, conference or evidence item) from every record of the trace. "
        'Prints one JSON line: {"records": N, "seconds": S}; exit status 2 when the trace '
        "cannot be written.",
    )
    r.add_argument(
        "--progress",
        action="store_true",
        help="draw a progress bar on stderr even when it is not a terminal",
    )
    r.set_defaults(run=_reindex)


def _reindex(args: argparse.Namespace) -> int:
    prog = f"{PROG} trace reindex"
    config = _load(args)
    show = bool(args.progress) or sys.stderr.isatty()
    from commandcenter.stores import open_store
    from sessions.errors import RecorderError

    async def run() -> tuple[int, float]:
        started = time.monotonic()
        store = await open_store(config)
        try:
            bar = _ProgressBar(await store.count(), label="reindexing") if show else None
            done = await store.reindex(None if bar is None else bar.update)
            if bar is not None:
                bar.finish(done)
        finally:
            await store.close()
        return done, time.monotonic() - started

    try:
        done, seconds = asyncio.run(run())
    except RecorderError as exc:
        raise CommandError(prog, f"cannot reindex the trace: {exc.reason}") from None
    print(json.dumps({"records": done, "seconds": round(seconds, 3)}))
    return 0


__all__ = ["add_trace"]
