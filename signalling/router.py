"""Delivery of messages to users, wherever they are connected.

`Router` is what the outbox hands "send this to these users" and "close that user's session",
never a socket. `LocalRouter` delivers to the connections of this process; on a node of a
cluster, `signalling.cluster.routing.ClusterRouter` forwards to users on other nodes over
Redis. Each message is encoded once per wire format, however many users receive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from signalling.codec import Encoding, encode
from signalling.connection import Connection
from signalling.protocol import ServerMessage


class Router(Protocol):
    def attach(self, conn: Connection) -> None: ...
    def detach(self, conn: Connection) -> None: ...
    def deliver(self, to: Iterable[str], message: ServerMessage) -> None: ...
    def disconnect(self, user: str, session_id: str, code: int, reason: str) -> None: ...
    def connections(self) -> list[Connection]: ...
    def reply(self, conn: Connection, message: ServerMessage) -> None: ...


class LocalRouter:
    """Every user of this node, one connection each."""

    def __init__(self) -> None:
        self._conns: dict[str, Connection] = {}

    def attach(self, conn: Connection) -> None:
        self._conns[conn.user] = conn

    def detach(self, conn: Connection) -> None:
        if self._conns.get(conn.user) is conn:
            del self._conns[conn.user]

    def connection(self, user: str) -> Connection | None:
        return self._conns.get(user)

    def deliver(self, to: Iterable[str], message: ServerMessage) -> None:
        frames: dict[Encoding, str | bytes] = {}
        conns = self._conns
        for user in to:
            conn = conns.get(user)
            if conn is None:
                continue
            frame = frames.get(conn.encoding)
            if frame is None:
                frame = frames[conn.encoding] = encode(message, conn.encoding)
            conn.send(frame)

    def reply(self, conn: Connection, message: ServerMessage) -> None:
        # To the connection that asked, attached or not: the stream put its welcome first.
        conn.send(encode(message, conn.encoding))

    def disconnect(self, user: str, session_id: str, code: int, reason: str) -> None:
        conn = self._conns.get(user)
        if conn is not None and conn.session_id == session_id:
            self.detach(conn)
            conn.close(code, reason)

    def connections(self) -> list[Connection]:
        return list(self._conns.values())
