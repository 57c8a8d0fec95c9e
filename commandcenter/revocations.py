"""Disabled accounts, as every node of the province sees them.

Disabling an account ends its browser sessions (commandcenter/account_changes.py), so it
gets no new token; but a token it already holds lives up to `accounts.token_ttl_s`, and a
WebSocket it already has open lives as long as the connection. Each node therefore keeps
the set of disabled account ids, read from the account store every
`accounts.revocation_poll_s` (the store is the one place every node shares, with or
without Redis), and:

- refuses the tokens of those accounts, over the WebSocket and HTTP alike (`verify`
  raises `account disabled`, answered 401 / 4401, which sends a browser to its sign-in page,
  where it can no longer sign in);
- closes an open WebSocket of a newly disabled account (`Hub.revoke`): the session signs out
  at once with reason `account_disabled` (its calls end as for any sign-out) and the
  connection closes 4403.

The node where an admin disables the account applies it at once (`disabled_now`); the others
within one poll. An account enabled again is accepted from the next poll on.

Revoked witness invitations (commandcenter/witness_api.py) are kept in the same store and go
the same way: their token is refused (`witness revoked`) and their open WebSocket closes 4403
with reason `witness_revoked`, at once on the node that revoked it, on the others within a
poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from identity import AuthError, Identity
from sessions.account_store import AccountStore
from signalling.hub import Authenticator, Hub

log = structlog.get_logger(__name__)

# The sign-out reason in the trace, and the close reason on the wire.
REASON: Final = "account_disabled"
WITNESS_REASON: Final = "witness_revoked"


class Revocations:
    def __init__(self, *, hub: Hub, poll_s: float) -> None:
        self._hub = hub
        self._poll_s = poll_s
        self.disabled: frozenset[str] = frozenset()
        self.revoked_witnesses: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._failing = False

    def is_disabled(self, user_id: str) -> bool:
        return user_id in self.disabled

    def disabled_now(self, user_id: str) -> None:
        """An admin of this node disabled `user_id`: refused and closed here at once."""
        self.disabled = self.disabled | {user_id}
        self._hub.revoke(user_id, REASON)

    def enabled_now(self, user_id: str) -> None:
        self.disabled = self.disabled - {user_id}

    def is_revoked_witness(self, user_id: str) -> bool:
        return user_id in self.revoked_witnesses

    def witness_revoked_now(self, user_id: str) -> None:
        """A moderator of this node revoked the witness `user_id`: refused and closed at once."""
        self.revoked_witnesses = self.revoked_witnesses | {user_id}
        self._hub.revoke(user_id, WITNESS_REASON)

    async def refresh(self, store: AccountStore) -> None:
        """Read the disabled accounts and revoked witnesses; close the connections here of
        those newly disabled or revoked."""
        disabled = await store.disabled_ids()
        witnesses = await store.revoked_witnesses(self._hub.clock.now())
        newly = disabled - self.disabled
        newly_revoked = witnesses - self.revoked_witnesses
        self.disabled = disabled
        self.revoked_witnesses = witnesses
        for user_id in sorted(newly):
            self._hub.revoke(user_id, REASON)
        for user_id in sorted(newly_revoked):
            self._hub.revoke(user_id, WITNESS_REASON)

    def start(self, store: AccountStore) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(store))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self, store: AccountStore) -> None:
        while not self._stop.is_set():
            try:
                await self.refresh(store)
            except Exception:
                # The store is down: the set read last stays in force; said once.
                if not self._failing:
                    log.warning("disabled accounts not read; the last set stays", exc_info=True)
                self._failing = True
            else:
                if self._failing:
                    log.info("disabled accounts read again")
                self._failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._poll_s)


class RefusingDisabled:
    """The hub's (and the HTTP API's) `Authenticator`: the token verifier, and then no
    disabled account."""

    def __init__(self, verifier: Authenticator, revocations: Revocations | None = None) -> None:
        self._verifier = verifier
        self.revocations = revocations

    def verify(self, token: str, now: float) -> Identity:
        identity = self._verifier.verify(token, now)
        if self.revocations is not None and self.revocations.is_disabled(identity.user_id):
            raise AuthError("account disabled")
        if self.revocations is not None and self.revocations.is_revoked_witness(identity.user_id):
            raise AuthError("witness revoked")
        return identity


__all__ = ["REASON", "WITNESS_REASON", "RefusingDisabled", "Revocations"]
