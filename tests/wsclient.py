"""A small typed WebSocket client for end-to-end tests of the signalling hub.

`Server` wraps a running app (pytest-aiohttp's `TestClient`, the config it was built from and
its `MemoryRecorder`) and opens connections with real tokens. `Client` sends messages and
reads replies with a deadline. Messages that arrive while a test waits for something else stay
in a buffer, so the order in which a test asks for messages need not be the order the server
sent them; `log` keeps every message in arrival order for tests that check ordering.

Every frame the server sends is decoded strictly against `signalling.protocol.ServerMessage`
before a test sees it, so every test also checks that the server only speaks the protocol.

The waiting methods take a `timeout` (ruff's ASYNC109 prefers `asyncio.timeout` around the
call): it is a deadline for a loop of reads that keeps what it has read, which a
cancellation from outside would cut through mid-frame.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from commandcenter.auth import Role, issue_token
from commandcenter.config import Config
from sessions.recorder import MemoryRecorder
from signalling.protocol import ServerMessage
from tests.polling import wait_until

Msg = dict[str, Any]
Encoding = Literal["json", "msgpack"]
Where = Callable[[Msg], bool]

_strict_json = msgspec.json.Decoder(ServerMessage)
_strict_msgpack = msgspec.msgpack.Decoder(ServerMessage)
_ids = itertools.count(1)

# How long a test waits for something that should happen promptly, seconds.
DEFAULT_TIMEOUT = 2.0


class ProtocolViolation(AssertionError):
    """The server sent a frame that is not a valid `ServerMessage`."""


def token_for(
    config: Config,
    user: str,
    role: str,
    court: str,
    *,
    name: str | None = None,
    ttl_s: float = 600,
    scope: str | None = None,
) -> str:
    return issue_token(
        config.auth.jwt_secret,
        user=user,
        role=Role(role),
        court=court,
        name=name or user,
        ttl_s=ttl_s,
        now=time.time(),
        scope=scope,
    )


class Client:
    """One WebSocket connection to the hub."""

    def __init__(self, ws: ClientWebSocketResponse, encoding: Encoding, user: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self.user = user
        self.welcome: Msg = {}
        # Every message received, in arrival order; `_buffer` holds those not yet expected.
        self.log: list[Msg] = []
        self._buffer: list[Msg] = []
        self.text_frames = 0
        self.binary_frames = 0
        self.close_code: int | None = None
        self.close_reason: str | None = None

    # ---- sending --------------------------------------------------------------------------

    async def send(self, type: str, **fields: Any) -> str:
        """Send a message of `type` with a fresh id (unless `id` is given); returns the id."""
        msg_id = str(fields.pop("id", f"m{next(_ids)}"))
        await self.send_obj({"type": type, "id": msg_id, **fields})
        return msg_id

    async def send_obj(self, obj: Mapping[str, Any]) -> None:
        """Send any object, encoded in this client's encoding."""
        if self.encoding == "json":
            await self.ws.send_str(json.dumps(obj))
        else:
            await self.ws.send_bytes(msgspec.msgpack.encode(obj))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as is: str as a text frame, bytes as a binary frame."""
        if isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_bytes(frame)

    # ---- receiving ------------------------------------------------------------------------

    async def _read_one(self, deadline: float) -> Msg | None:
        """The next message, or None once the connection is closed. Raises TimeoutError."""
        if self.close_code is not None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        frame = await self.ws.receive(timeout=remaining)
        if frame.type is WSMsgType.TEXT:
            self.text_frames += 1
            return self._accept(frame.data, json.loads(frame.data))
        if frame.type is WSMsgType.BINARY:
            self.binary_frames += 1
            return self._accept(frame.data, msgspec.msgpack.decode(frame.data))
        # CLOSE (with the code and reason the server sent), CLOSING, CLOSED or ERROR.
        if frame.type is WSMsgType.CLOSE:
            self.close_code = int(frame.data)
            self.close_reason = frame.extra or ""
        else:
            self.close_code = self.ws.close_code if self.ws.close_code is not None else -1
            self.close_reason = self.close_reason or ""
        return None

    def _accept(self, raw: str | bytes, msg: Any) -> Msg:
        try:
            if isinstance(raw, str):
                _strict_json.decode(raw)
            else:
                _strict_msgpack.decode(raw)
        except msgspec.ValidationError as exc:
            raise ProtocolViolation(f"server sent an invalid message {msg!r}: {exc}") from None
        assert isinstance(msg, dict)
        self.log.append(msg)
        return msg

    @staticmethod
    def _matches(msg: Msg, type: str, match: Mapping[str, Any], where: Where | None) -> bool:
        if type != "*" and msg.get("type") != type:
            return False
        if any(msg.get(k) != v for k, v in match.items()):
            return False
        return where is None or where(msg)

    async def expect(
        self,
        type: str,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
        *,
        where: Where | None = None,
        **match: Any,
    ) -> Msg:
        """The first message of `type` whose fields equal `match` (and satisfy `where`),
        from the buffer or read within `timeout`. Other messages are kept for later."""
        for i, msg in enumerate(self._buffer):
            if self._matches(msg, type, match, where):
                del self._buffer[i]
                return msg
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg_or_none = await self._read_one(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"{self.user}: no {type} {match or ''} within {timeout}s; "
                    f"unread: {self._buffer}"
                ) from None
            if msg_or_none is None:
                raise AssertionError(
                    f"{self.user}: closed ({self.close_code} {self.close_reason!r}) while "
                    f"waiting for {type} {match or ''}; unread: {self._buffer}"
                )
            if self._matches(msg_or_none, type, match, where):
                return msg_or_none
            self._buffer.append(msg_or_none)

    async def expect_close(self, code: int, timeout: float = DEFAULT_TIMEOUT) -> str:  # noqa: ASYNC109
        """Read until the server closes the connection; asserts the close code, returns
        the reason. Messages read meanwhile are kept in the buffer."""
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            try:
                msg = await self._read_one(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"{self.user}: not closed within {timeout}s; unread: {self._buffer}"
                ) from None
            if msg is not None:
                self._buffer.append(msg)
        assert self.close_code == code, (self.close_code, self.close_reason)
        return self.close_reason or ""

    async def assert_no(
        self, type: str, within: float = 0.3, *, where: Where | None = None, **match: Any
    ) -> None:
        """No message of `type` (matching) is buffered or arrives within `within` seconds."""
        for msg in self._buffer:
            assert not self._matches(msg, type, match, where), f"{self.user}: unexpected {msg}"
        deadline = time.monotonic() + within
        while True:
            try:
                msg_or_none = await self._read_one(deadline)
            except TimeoutError:
                return
            if msg_or_none is None:
                return
            assert not self._matches(msg_or_none, type, match, where), (
                f"{self.user}: unexpected {msg_or_none}"
            )
            self._buffer.append(msg_or_none)

    def unread(self) -> list[Msg]:
        return list(self._buffer)

    async def request(self, type: str, *, reply: str = "ack", **fields: Any) -> Msg:
        """Send a message and return the reply (`reply` type, ref = its id); fails on an
        error reply to it."""
        msg_id = await self.send(type, **fields)
        got = await self.expect(
            reply, where=lambda m: m.get("ref") == msg_id or m.get("type") == "error"
        )
        assert got["type"] == reply, f"{self.user}: {type} {fields} got {got}"
        return got

    async def reply_to(self, msg_id: str, timeout: float = DEFAULT_TIMEOUT) -> Msg:  # noqa: ASYNC109
        """The reply to message `msg_id`, whatever its type (ack, error, ...)."""
        return await self.expect("*", timeout, ref=msg_id)

    async def error_for(self, msg_id: str, timeout: float = DEFAULT_TIMEOUT) -> Msg:  # noqa: ASYNC109
        return await self.expect("error", timeout, ref=msg_id)

    async def close(self) -> None:
        await self.ws.close()


class Server:
    """A running app under test, with the means to open authenticated connections."""

    def __init__(self, http: TestClient[Any, Any], config: Config, recorder: MemoryRecorder):
        self.http = http
        self.config = config
        self.recorder = recorder
        self.clients: list[Client] = []

    def token(self, user: str, role: str, court: str, **kwargs: Any) -> str:
        return token_for(self.config, user, role, court, **kwargs)

    async def open(
        self,
        user: str,
        *,
        encoding: Encoding = "json",
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Client:
        """Open a WebSocket without waiting for anything (for refused connections)."""
        params = dict(query or {})
        if token is not None:
            params["token"] = token
        ws = await self.http.ws_connect("/ws", params=params, headers=headers)
        client = Client(ws, encoding, user)
        self.clients.append(client)
        return client

    async def connect(
        self,
        user: str,
        role: str,
        court: str,
        *,
        encoding: Encoding = "json",
        name: str | None = None,
        scope: str | None = None,
        **query: str,
    ) -> Client:
        """Connect as `user` and wait for the welcome (kept in `client.welcome`); `scope`
        names a witness's conference."""
        token = self.token(user, role, court, name=name, scope=scope)
        params = dict(query)
        if encoding == "msgpack":
            params.setdefault("encoding", "msgpack")
        client = await self.open(user, encoding=encoding, token=token, query=params)
        client.welcome = await client.expect("welcome")
        return client

    async def wait_for(
        self,
        condition: Callable[[], bool],
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
        what: str = "",
    ) -> None:
        """Poll `condition` until it holds; fails after `timeout` seconds."""
        await wait_until(condition, within=timeout, what=what)

    async def wait_recorded(
        self,
        kind: str,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
        **data: Any,
    ) -> None:
        def found() -> bool:
            return any(
                all(e.data.get(k) == v for k, v in data.items())
                for e in self.recorder.of_kind(kind)
            )

        await self.wait_for(found, timeout, f"recorded {kind} {data}")
