"""Runs a node's `Switchboard`: gives it the time, arms one timer at its next deadline, and
hands its actions to the outbox.

This is the one place where what the core raises while carrying out a client's message
becomes a reply: a `ClientError` is the client's fault and is answered with its code; any
other exception is ours, logged with its traceback and the user and call ids, and answered
with `internal_error` (signalling.errors). The same driver serves one node alone
(`signalling.link.LocalCoreLink`) and the cluster's authority (`signalling.cluster`).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from identity import Identity
from signalling import protocol as p
from signalling.clock import Clock, Timer
from signalling.connection import Connection
from signalling.core.actions import Action, Send
from signalling.core.presence import Session, SessionKeys
from signalling.core.switchboard import Switchboard
from signalling.errors import ClientError, error_reply, internal_error_reply
from signalling.outbox import Outbox, attached

log = structlog.get_logger(__name__)


class CoreDriver:
    def __init__(self, core: Switchboard, outbox: Outbox, clock: Clock) -> None:
        self.core = core
        self.outbox = outbox
        self.clock = clock
        self._timer: Timer | None = None
        self._timer_at: float | None = None
        self._stopped = False

    # ---- what happens at the edge -------------------------------------------------------

    def connect(
        self,
        conn: Connection,
        identity: Identity,
        keys: SessionKeys,
        *,
        device: str,
        app_version: str,
        resume_token: str | None,
    ) -> Session:
        """A connection of this node opened: its session is opened or resumed, and the
        connection is attached just before its welcome (under the session's id)."""
        session, actions = self.core.connect(
            identity,
            keys=keys,
            device=device,
            app_version=app_version,
            resume_token=resume_token,
            now=self.clock.now(),
        )
        conn.session_id = session.session_id
        self.outbox.emit(attached(conn, actions))
        self._rearm()
        return session

    def handle(self, user: str, message: p.ClientMessage) -> None:
        """Carry out a client's message; what it cannot is answered to the client. (Not
        through `run`: this is every client message's path, one call less is measurable.)"""
        try:
            actions = self.core.handle(user, message, self.clock.now())
        except ClientError as exc:
            actions = [Send((user,), error_reply(exc, message.id))]
        except Exception:
            actions = self._fault(user, message)
        self.outbox.emit(actions)
        self._rearm()

    def run(
        self,
        step: Callable[[float], list[Action]],
        *,
        user: str | None = None,
        message: p.ClientMessage | None = None,
    ) -> None:
        """Apply `step` to the core at the current time and perform what it returns. When
        it carries out `user`'s `message`, its refusal or failure is answered to them;
        otherwise a failure is logged and nothing is performed."""
        try:
            actions = step(self.clock.now())
        except ClientError as exc:
            # Refused, nothing changed. Without a client to tell, a refusal is our bug.
            if user is None or message is None:
                actions = self._fault(user, message)
            else:
                actions = [Send((user,), error_reply(exc, message.id))]
        except Exception:
            actions = self._fault(user, message)
        self.outbox.emit(actions)
        self._rearm()

    def _fault(self, user: str | None, message: p.ClientMessage | None) -> list[Action]:
        log.exception(
            "core failed",
            user_id=user,
            call_id=getattr(message, "call_id", None),
            message=type(message).__name__ if message is not None else None,
            node_id=self.core.node_id,
        )
        if user is None or message is None:
            return []
        return [Send((user,), internal_error_reply(message.id))]

    def emit(self, actions: list[Action]) -> None:
        """Perform actions the core returned to a caller of its own (the cluster's)."""
        self.outbox.emit(actions)
        self._rearm()

    # ---- the timer ----------------------------------------------------------------------

    def _rearm(self) -> None:
        if self._stopped:
            return
        deadline = self.core.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.run(self.core.handle_timeout)

    @property
    def armed(self) -> bool:
        """A timer is set for the core's next deadline."""
        return self._timer is not None

    def stop(self) -> None:
        """No timer of this core fires any more (the node stops, or is no longer the
        authority running it)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
