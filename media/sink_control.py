"""Bench-only: the Unix socket through which a benchmark adds pre-keyed sinks (media.sink) to
a conference, when the server was started with `media.bench_sink_socket` (off by default:
then nothing of this exists, no socket, no record, no route).

The socket is made with mode 0600 (bound in a private directory, then moved into place), and
a connecting process must run as the server's own user (SO_PEERCRED), so it is the
benchmark on the same machine, never the network. One JSON request per line, one JSON answer
per line:

- `{"type": "add", "conference_id": c, "sinks": [{"name", "host", "port", "key"}]}`: `key`
  the SRTP master key and salt as 60 hex digits; each sink is placed as the pool spreads a
  conference's sites (`{"ok": true, "placed": {name: worker}}`).
- `{"type": "remove", "conference_id": c, "names": [...]}`.
- `{"type": "status", "conference_id": c}`: the workers (index, pid, up), the conference's
  home and members' workers, and per sink its worker and the packets it was sent.

Errors: `{"ok": false, "error": "..."}`; a line that is not a request closes nothing, a line
over 1 MiB closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
import tempfile
from pathlib import Path
from typing import Annotated, Any, Final, Protocol

import msgspec
import structlog

from media.sink import SinkError, SinkSpec

log = structlog.get_logger(__name__)

MAX_LINE_BYTES: Final = 1 << 20
MAX_SINKS_PER_REQUEST: Final = 1024
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class SinkJson(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: _Name
    host: Annotated[str, msgspec.Meta(max_length=64)]
    port: int
    key: Annotated[str, msgspec.Meta(min_length=60, max_length=60, pattern="^[0-9a-fA-F]+$")]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    conference_id: _Id


class Add(_Request, tag="add", frozen=True):
    sinks: Annotated[list[SinkJson], msgspec.Meta(max_length=MAX_SINKS_PER_REQUEST)]


class Remove(_Request, tag="remove", frozen=True):
    names: Annotated[list[_Name], msgspec.Meta(max_length=MAX_SINKS_PER_REQUEST)]


class Status(_Request, tag="status", frozen=True):
    pass


Request = Add | Remove | Status
_decoder: msgspec.json.Decoder[Request] = msgspec.json.Decoder(Request)


class RequestRefused(Exception):
    """A request the pool cannot carry out (no such conference, a worker refused it)."""


class SinkPort(Protocol):
    """What carries the requests out: media.pool.WorkerPool."""

    async def add_sinks(self, conference_id: str, sinks: list[SinkSpec]) -> dict[str, int]: ...

    async def remove_sinks(self, conference_id: str, names: list[str]) -> None: ...

    async def sink_status(self, conference_id: str) -> dict[str, Any]: ...


def decode(line: bytes) -> Request:
    """One request; RequestRefused saying what is wrong with it."""
    try:
        return _decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RequestRefused(f"bad request: {exc}") from None


def specs(request: Add) -> list[SinkSpec]:
    try:
        return [SinkSpec(s.name, s.host, s.port, bytes.fromhex(s.key)) for s in request.sinks]
    except (SinkError, ValueError) as exc:
        raise RequestRefused(str(exc)) from None


async def answer(port: SinkPort, request: Request) -> dict[str, Any]:
    match request:
        case Add():
            placed = await port.add_sinks(request.conference_id, specs(request))
            return {"ok": True, "placed": placed}
        case Remove():
            await port.remove_sinks(request.conference_id, list(request.names))
            return {"ok": True}
        case Status():
            return {"ok": True, **await port.sink_status(request.conference_id)}


def _same_user(sock: socket.socket) -> bool:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


class SinkControl:
    """The listening socket and its connections."""

    def __init__(self, path: str, port: SinkPort) -> None:
        self.path = Path(path)
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen at `path` (mode 0600). A socket left there by a previous run is replaced;
        anything else there is an error (OSError)."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise FileExistsError(f"{self.path} exists and is not a socket")
            self.path.unlink()
        private = tempfile.mkdtemp(prefix=".sinks-", dir=self.path.parent)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            bound = os.path.join(private, "s")
            sock.bind(bound)
            os.chmod(bound, 0o600)
            os.rename(bound, self.path)
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=MAX_LINE_BYTES
            )
        except BaseException:
            sock.close()
            raise
        finally:
            os.rmdir(private)
        log.warning("bench-only sink socket listening", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if sock is None or not _same_user(sock):
                log.warning("sink socket: a process of another user refused")
                return
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    writer.write(b'{"ok": false, "error": "request over 1 MiB"}\n')
                    return
                writer.write(msgspec.json.encode(await self._answer(line)) + b"\n")
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        """The one place where what a request raises becomes an answer."""
        try:
            return await answer(self.port, decode(line))
        except RequestRefused as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:
            log.exception("sink request failed")
            return {"ok": False, "error": "internal error"}


__all__ = ["MAX_LINE_BYTES", "RequestRefused", "SinkControl", "SinkPort", "decode"]
