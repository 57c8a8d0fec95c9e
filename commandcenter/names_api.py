"""`GET /api/users/names?id=…&id=…`: display names for the user ids a records view shows.

The trace keeps ids; people read names. The console's audit views ask for the names of the
ids they show, at most MAX_IDS at a time. Names come from the account store (`source`
"account"), each only when the user's court is in the caller's scope (`identity.courts`).
A user who is not an account (a token minted for an integration, or on a server without
an account store) is named as they last signed in over the WebSocket: the display name the
trace's latest `sign_in` of theirs recorded (`source` "sign_in"), when its court is in the
scope. An id that is unknown, of a court outside the scope, or whose sign-in recorded no
name of its own is left out alike, so the answer tells nothing of who exists elsewhere, and
the view labels the id as unnamed. For operators, supervisors, admins and auditors, with the
same bearer JWT as the WebSocket.

Its errors become statuses in the one edge of the API, `http_edge.answering`, with this
module's `EDGE`: 401 for the token, 403 for the role, 400 naming the bad parameter, 503
while the account store or the trace cannot be read (refused where each is read).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Final

import structlog
from aiohttp import web

from commandcenter.account_api import ACCOUNTS
from commandcenter.auth import Role
from commandcenter.http_edge import Edge, Refused, answering, identity_of
from commandcenter.keys import COURTS, TRACE
from sessions.facets import SIGN_IN

log = structlog.get_logger(__name__)

PATH: Final = "/api/users/names"
NAME_ROLES: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR})
# Ids in one request at most: a call's audit view names a handful, an evidence page 50.
MAX_IDS: Final = 100
MAX_ID_CHARS: Final = 64


def parse_ids(pairs: list[tuple[str, str]]) -> list[str]:
    """The ids asked for, each once, in the order first asked; Refused (400) for another
    parameter, none, too many, or an id out of its bounds."""
    ids: list[str] = []
    for key, value in pairs:
        if key != "id":
            raise Refused(400, "bad_request", "unknown parameter", key)
        if not 1 <= len(value) <= MAX_ID_CHARS:
            raise Refused(400, "bad_request", f"each id is 1-{MAX_ID_CHARS} characters", "id")
        if value not in ids:
            ids.append(value)
    if not ids:
        raise Refused(400, "bad_request", "give at least one id", "id")
    if len(ids) > MAX_IDS:
        raise Refused(400, "bad_request", f"at most {MAX_IDS} ids at a time", "id")
    return ids


async def _names(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    if who.role not in NAME_ROLES:
        raise Refused(403, "forbidden", f"a {who.role.value} may not look up names")
    ids = parse_ids(list(request.query.items()))
    accounts = request.app.get(ACCOUNTS)
    trace = request.app.get(TRACE)
    found: dict[str, dict[str, str]] = {}
    scope = request.app[COURTS].scope(who)
    not_accounts = list(ids)
    if accounts is not None:
        not_accounts = []
        try:
            for user_id in ids:
                account = await accounts.store.get(user_id)
                if account is None:
                    not_accounts.append(user_id)
                elif account.court in scope:
                    found[user_id] = {
                        "name": account.name,
                        "role": account.role.value,
                        "court": account.court,
                        "source": "account",
                    }
        except Exception:
            log.exception("account store unreadable", path=request.path)
            raise Refused(
                503, "unavailable", "the accounts cannot be read now, retry later"
            ) from None
    if trace is not None:
        try:
            for user_id in not_accounts:
                # The latest sign-in only, read from the end of the trace's user index.
                signed = await trace.find(kinds=[SIGN_IN], subject=user_id, last=1)
                named = signed_in_name(signed[0].data if signed else {}, user_id, scope)
                if named is not None:
                    found[user_id] = named
        except Exception:
            log.exception("trace unreadable", path=request.path)
            raise Refused(503, "unavailable", "the trace cannot be read now, retry later") from None
    return web.json_response({"names": found})


def signed_in_name(
    data: Mapping[str, object], user_id: str, scope: Set[str]
) -> dict[str, str] | None:
    """Who a `sign_in` record says `user_id` was, if it recorded a name of its own (a token
    without a `name` claim is named by its id, which names nobody) and its court is in
    `scope`."""
    name, role, court = data.get("name"), data.get("role"), data.get("court")
    if not (isinstance(name, str) and isinstance(role, str) and isinstance(court, str)):
        return None
    if data.get("user") != user_id or not name.strip() or name == user_id or court not in scope:
        return None
    return {"name": name, "role": role, "court": court, "source": "sign_in"}


# What this endpoint answers besides what every route does (http_edge.answering): nothing;
# its stores out of reach are refused 503 where they are read, each with its own reason.
EDGE: Final = Edge(failed="names request failed")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, answering(EDGE)(_names))


__all__ = ["MAX_IDS", "PATH", "add_routes", "parse_ids"]
