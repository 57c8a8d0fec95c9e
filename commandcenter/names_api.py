"""`GET /api/users/names?id=…&id=…`: display names for the user ids a records view shows.

The trace keeps ids; people read names. The console's audit views ask for the names of the
ids they show, at most MAX_IDS at a time. Names come from the account store, each only when
the user's court is in the caller's scope (`identity.courts`): an id that is unknown, of a
court outside the scope, or not an account at all (a token minted for an integration) is
left out alike, so the answer tells nothing of who exists elsewhere, and the view shows the
id. For operators, supervisors, admins and auditors, with the same bearer JWT as the
WebSocket; a server without an account store (tokens from the province's identity provider
only) knows no names and answers an empty map.

`names` is the one place where this endpoint's errors become statuses: 401 for the token,
403 for the role, 400 naming the bad parameter, 503 while the account store cannot be read.
"""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web

from commandcenter.account_api import ACCOUNTS
from commandcenter.auth import AuthError, Role
from commandcenter.http_edge import (
    auth_error_response,
    error_response,
    identity_of,
    internal_error_response,
    serving,
)
from commandcenter.keys import COURTS

log = structlog.get_logger(__name__)

PATH: Final = "/api/users/names"
NAME_ROLES: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.AUDITOR})
# Ids in one request at most: a call's audit view names a handful, an evidence page 50.
MAX_IDS: Final = 100
MAX_ID_CHARS: Final = 64


class _Refused(Exception):
    def __init__(self, status: int, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.field = status, code, reason, field


def parse_ids(pairs: list[tuple[str, str]]) -> list[str]:
    """The ids asked for, each once, in the order first asked; _Refused (400) for another
    parameter, none, too many, or an id out of its bounds."""
    ids: list[str] = []
    for key, value in pairs:
        if key != "id":
            raise _Refused(400, "bad_request", "unknown parameter", key)
        if not 1 <= len(value) <= MAX_ID_CHARS:
            raise _Refused(400, "bad_request", f"each id is 1-{MAX_ID_CHARS} characters", "id")
        if value not in ids:
            ids.append(value)
    if not ids:
        raise _Refused(400, "bad_request", "give at least one id", "id")
    if len(ids) > MAX_IDS:
        raise _Refused(400, "bad_request", f"at most {MAX_IDS} ids at a time", "id")
    return ids


async def names(request: web.Request) -> web.StreamResponse:
    with serving(request):
        try:
            return await _names(request)
        except AuthError as exc:
            return auth_error_response(exc)
        except _Refused as exc:
            return error_response(exc.status, exc.code, exc.reason, exc.field)
        except Exception as exc:
            return internal_error_response(request, exc, "names request failed")


async def _names(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    if who.role not in NAME_ROLES:
        raise _Refused(403, "forbidden", f"a {who.role.value} may not look up names")
    ids = parse_ids(list(request.query.items()))
    accounts = request.app.get(ACCOUNTS)
    found: dict[str, dict[str, str]] = {}
    if accounts is None:
        return web.json_response({"names": found})
    scope = request.app[COURTS].scope(who)
    try:
        store = accounts.store
        for user_id in ids:
            account = await store.get(user_id)
            if account is not None and account.court in scope:
                found[user_id] = {
                    "name": account.name,
                    "role": account.role.value,
                    "court": account.court,
                }
    except Exception:
        log.exception("account store unreadable", path=request.path)
        raise _Refused(503, "unavailable", "the accounts cannot be read now, retry later") from None
    return web.json_response({"names": found})


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, names)


__all__ = ["MAX_IDS", "PATH", "add_routes", "parse_ids"]
