"""The accounts admin API, behind the console's 用户管理 page (docs/accounts.md):

    GET  /api/accounts?q=&court=&role=&disabled=&offset=&limit=   list and search
    POST /api/accounts                    {"user", "name", "role", "court", "password"?, "totp"?}
    POST /api/accounts/{user_id}/disable  ends the account's browser sessions too
    POST /api/accounts/{user_id}/enable   lifts a lockout too
    POST /api/accounts/{user_id}/reset    {"password"?, "totp": "keep" | "new" | "remove"}
    POST /api/accounts/import             text/csv -> application/x-ndjson progress lines

Admins only, and only within their scope: an admin of a court manages the accounts of that
court and of the courts under it. An account outside the scope answers the same 404 as one
that does not exist. The changes themselves (the trace fact first, naming the admin as `by`,
then the save) are `account_changes`', shared with `commandcenter user`; so are the rules of
an import (`identity.accounts.parse_rows`). A password made here and a TOTP secret are in
the one answer that creates them (`Cache-Control: no-store`) and nowhere else: not logged,
not in the trace. Errors become statuses in the one edge of the API, `http_edge.answering`,
with `EDGE`; an import's stream, once begun, reports its end in its last line instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any, Final

import structlog
from aiohttp import hdrs, web

from commandcenter import account_changes, http_edge
from commandcenter.account_api import ACCOUNTS
from commandcenter.auth import Identity, Role
from commandcenter.bodies import read_at_most
from commandcenter.http_edge import Refused, json_object
from commandcenter.keys import CONFIG, COURTS, HUB, RECORDER, REVOCATIONS
from identity.accounts import (
    Account,
    AccountError,
    ImportRefused,
    Row,
    check_password,
    court_of,
    name_of,
    parse_rows,
    role_of,
    user_id_of,
)
from sessions.errors import RecorderError

log = structlog.get_logger(__name__)

PATH: Final = "/api/accounts"
MAX_BODY_BYTES: Final = 4096
# A province's ~3,000 officers are ~150 kB; this allows a national file of 100,000 rows.
MAX_IMPORT_BYTES: Final = 8 * 1024 * 1024
MAX_QUERY_CHARS: Final = 64
MAX_PAGE: Final = 200
DEFAULT_PAGE: Final = 50
MAX_OFFSET: Final = 1_000_000
# Every account is read for a search: enough for a national deployment's tens of thousands.
MAX_ACCOUNTS: Final = 1_000_000
# Passwords hashed between two progress lines of an import.
HASH_CHUNK: Final = 16
_LIST_PARAMS: Final = frozenset({"q", "court", "role", "disabled", "offset", "limit"})
_TOTP_CHOICES: Final = ("keep", "new", "remove")
NDJSON: Final = "application/x-ndjson"


def _bad(reason: str, field: str | None = None) -> Refused:
    return Refused(400, "bad_request", reason, field)


_NOT_FOUND: Final = "no such account"


def matching(
    accounts: Iterable[Account],
    scope: frozenset[str],
    *,
    text: str = "",
    court: str | None = None,
    role: Role | None = None,
    disabled: bool | None = None,
) -> list[Account]:
    """The accounts of `scope` that the search names: `text` in the id or the name (any case),
    of `court`, with `role`, disabled or not; ordered by id."""
    needle = text.casefold()
    return sorted(
        (
            a
            for a in accounts
            if a.court in scope
            and (court is None or a.court == court)
            and (role is None or a.role is role)
            and (disabled is None or a.disabled is disabled)
            and (not needle or needle in a.user_id.casefold() or needle in a.name.casefold())
        ),
        key=lambda a: a.user_id,
    )


class AdminApi:
    """The handlers; one import at a time on a node (it hashes and writes thousands)."""

    def __init__(self) -> None:
        self._importing = asyncio.Lock()

    async def list_accounts(self, request: web.Request) -> web.StreamResponse:
        _, scope = _admin(request)
        query = request.query
        for name, value in query.items():
            if name not in _LIST_PARAMS:
                raise _bad("unknown parameter", name)
            if len(value) > MAX_QUERY_CHARS:
                raise _bad(f"longer than {MAX_QUERY_CHARS} characters", name)
        court = query.get("court") or None
        if court is not None and court not in scope:
            raise _bad("not a court you manage", "court")
        role = _checked(role_of, query["role"]) if query.get("role") else None
        disabled = {"": None, "true": True, "false": False}.get(query.get("disabled", ""), "bad")
        if disabled == "bad":
            raise _bad("must be true or false", "disabled")
        offset = _int_param(query, "offset", 0, 0, MAX_OFFSET)
        limit = _int_param(query, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        found = matching(
            await request.app[ACCOUNTS].store.all(limit=MAX_ACCOUNTS),
            scope,
            text=query.get("q", "").strip(),
            court=court,
            role=role,
            disabled=disabled if isinstance(disabled, bool) else None,
        )
        return web.json_response(
            {
                "accounts": [account_changes.summary_of(a) for a in found[offset : offset + limit]],
                "total": len(found),
                "offset": offset,
                "limit": limit,
            }
        )

    async def add_account(self, request: web.Request) -> web.StreamResponse:
        who, scope = _admin(request)
        body = await _json_body(request, {"user", "name", "role", "court", "password", "totp"})
        user_id = _checked(user_id_of, _string(body, "user"))
        name = _checked(name_of, _string(body, "name"))
        role = _checked(role_of, _string(body, "role"))
        court = _in_scope(request, scope, _string(body, "court"))
        totp = body.get("totp", False)
        if not isinstance(totp, bool):
            raise _bad("must be true or false", "totp")
        config = request.app[CONFIG]
        shown: dict[str, Any] = {"user": user_id, "name": name, "role": role.value, "court": court}
        password = _password(body, shown)
        secret = None
        if totp:
            secret, shown["totp_uri"] = account_changes.new_second_factor(
                config.accounts.totp_issuer, user_id
            )
            shown["totp_secret"] = secret
        api = request.app[ACCOUNTS]
        account = Account(user_id, name, role, court, await api.passwords.hash(password), secret)
        try:
            await account_changes.add(
                api.store, request.app[RECORDER], account, by=who.user_id, now=_now(request)
            )
        except account_changes.AccountExists:
            # Told whichever court it is in: an id is one across the province.
            raise Refused(409, "exists", "this user id is taken", "user") from None
        log.info("account added", user_id=user_id, court=court, by=who.user_id)
        return _secret_response(shown, status=201)

    async def disable(self, request: web.Request) -> web.StreamResponse:
        return await self._set_disabled(request, True)

    async def enable(self, request: web.Request) -> web.StreamResponse:
        return await self._set_disabled(request, False)

    async def _set_disabled(self, request: web.Request, disabled: bool) -> web.StreamResponse:
        who, scope = _admin(request)
        account = await _account(request, scope)
        if disabled and account.user_id == who.user_id:
            raise _bad("you cannot disable your own account", "user_id")
        changed, ended = await account_changes.set_disabled(
            request.app[ACCOUNTS].store,
            request.app[RECORDER],
            account,
            disabled,
            by=who.user_id,
            now=_now(request),
        )
        log.info("account changed", user_id=account.user_id, disabled=disabled, by=who.user_id)
        revocations = request.app.get(REVOCATIONS)
        if revocations is not None:
            # This node at once; the others within accounts.revocation_poll_s.
            if disabled:
                revocations.disabled_now(account.user_id)
            else:
                revocations.enabled_now(account.user_id)
        return web.json_response(
            {"account": account_changes.summary_of(changed), "sessions_ended": ended}
        )

    async def reset(self, request: web.Request) -> web.StreamResponse:
        who, scope = _admin(request)
        body = await _json_body(request, {"password", "totp"})
        totp = body.get("totp", "keep")
        if totp not in _TOTP_CHOICES:
            raise _bad("must be keep, new or remove", "totp")
        account = await _account(request, scope)
        shown: dict[str, Any] = {}
        password = _password(body, shown)
        secret = account.totp_secret if totp == "keep" else None
        if totp == "new":
            secret, shown["totp_uri"] = account_changes.new_second_factor(
                request.app[CONFIG].accounts.totp_issuer, account.user_id
            )
            shown["totp_secret"] = secret
        api = request.app[ACCOUNTS]
        changed, ended = await account_changes.reset(
            api.store,
            request.app[RECORDER],
            account,
            password_hash=await api.passwords.hash(password),
            totp_secret=secret,
            by=who.user_id,
            now=_now(request),
        )
        log.info("account password reset", user_id=account.user_id, by=who.user_id)
        return _secret_response(
            {**shown, "account": account_changes.summary_of(changed), "sessions_ended": ended}
        )

    async def import_accounts(self, request: web.Request) -> web.StreamResponse:
        who, scope = _admin(request)
        if request.content_type not in ("text/csv", "text/plain"):
            raise Refused(415, "unsupported_media_type", "send the file as text/csv")
        raw = await _bounded(request, MAX_IMPORT_BYTES)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _bad("the file is not UTF-8 text") from None
        if self._importing.locked():
            raise Refused(409, "busy", "another import is running; try again when it ends")
        async with self._importing:
            api = request.app[ACCOUNTS]
            existing = {a.user_id: a for a in await api.store.all(limit=MAX_ACCOUNTS)}
            try:
                rows = parse_rows(text, request.app[COURTS], _scope_check(existing, scope))
            except ImportRefused as exc:
                raise Refused(
                    400, "bad_file", "the file has bad rows; nothing imported", faults=exc.faults
                ) from None
            return await self._stream_import(request, who, rows, existing, raw)

    async def _stream_import(
        self,
        request: web.Request,
        who: Identity,
        rows: list[Row],
        existing: dict[str, Account],
        raw: bytes,
    ) -> web.StreamResponse:
        """Hashes and saves, telling the browser how far it got: one JSON object a line,
        `{"phase": "hashing" | "saving", "done", "total"}`, then `{"phase": "done", "summary"}`
        or `{"phase": "failed", "error", "reason"}`."""
        response = web.StreamResponse(headers={hdrs.CACHE_CONTROL: "no-store"})
        response.content_type = NDJSON
        await response.prepare(request)
        listening = True

        async def line(obj: dict[str, Any]) -> None:
            nonlocal listening
            if not listening:
                return
            try:
                await response.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
            except (ConnectionError, RuntimeError):
                # The page went away; the import goes on to its end all the same.
                listening = False

        api = request.app[ACCOUNTS]
        try:
            with_password = [r for r in rows if r.password]
            hash_of: dict[str, str] = {}
            await line({"phase": "hashing", "done": 0, "total": len(with_password)})
            for start in range(0, len(with_password), HASH_CHUNK):
                chunk = with_password[start : start + HASH_CHUNK]
                hashes = await asyncio.gather(*(api.passwords.hash(r.password) for r in chunk))
                hash_of.update(zip((r.user_id for r in chunk), hashes, strict=True))
                await line({"phase": "hashing", "done": len(hash_of), "total": len(with_password)})
            saved: asyncio.Queue[int | None] = asyncio.Queue()

            async def save() -> dict[str, Any]:
                try:
                    return await account_changes.import_rows(
                        api.store,
                        request.app[RECORDER],
                        rows,
                        existing,
                        hash_of,
                        raw,
                        by=who.user_id,
                        now=_now(request),
                        progress=saved.put_nowait,
                    )
                finally:
                    saved.put_nowait(None)

            saving = asyncio.create_task(save())
            await line({"phase": "saving", "done": 0, "total": len(rows)})
            while (done := await saved.get()) is not None:
                await line({"phase": "saving", "done": done, "total": len(rows)})
            summary = await saving
            log.info("accounts imported", accounts=len(rows), by=who.user_id)
            await line({"phase": "done", "summary": summary})
        except RecorderError as exc:
            log.warning("import failed", reason=exc.reason)
            await line(
                {"phase": "failed", "error": "unavailable", "reason": "the store is unavailable"}
            )
        except Exception as exc:
            http_edge.internal_error_response(request, exc, "import failed")
            await line(
                {
                    "phase": "failed",
                    "error": "internal_error",
                    "reason": "internal error",
                    "request_id": http_edge.request_id(request),
                }
            )
        if listening:
            await response.write_eof()
        return response


# ---- helpers ------------------------------------------------------------------------------


def _admin(request: web.Request) -> tuple[Identity, frozenset[str]]:
    who = http_edge.identity_of(request)
    if who.role is not Role.ADMIN:
        raise Refused(403, "forbidden", "only admins manage accounts")
    return who, request.app[COURTS].scope(who)


def _now(request: web.Request) -> float:
    return request.app[HUB].clock.now()


async def _account(request: web.Request, scope: frozenset[str]) -> Account:
    raw = request.match_info["user_id"]
    try:
        user_id = user_id_of(raw)
    except AccountError:
        raise Refused(404, "not_found", _NOT_FOUND) from None
    account = await request.app[ACCOUNTS].store.get(user_id)
    # Another court's account is answered as a missing one: its existence is not told.
    if account is None or account.court not in scope:
        raise Refused(404, "not_found", _NOT_FOUND)
    return account


def _in_scope(request: web.Request, scope: frozenset[str], value: str) -> str:
    court: str = _checked(lambda v: court_of(v, request.app[COURTS]), value)
    if court not in scope:
        raise _bad("not a court you manage", "court")
    return court


def _password(body: dict[str, Any], shown: dict[str, Any]) -> str:
    """The body's password, checked; or one made here and put in `shown`, the answer."""
    given = body.get("password")
    if given is None or given == "":
        shown["password"] = account_changes.new_password()
        return str(shown["password"])
    if not isinstance(given, str):
        raise _bad("must be a string", "password")
    return str(_checked(check_password, given))


def _checked(check: Callable[[str], Any], value: str) -> Any:
    try:
        return check(value)
    except AccountError as exc:
        # The identity layer's messages start with the field they are about ("court: ...").
        field, _, reason = str(exc).partition(": ")
        raise _bad(reason or str(exc), field if reason else None) from None


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _bad("required, a string", name)
    return value


def _int_param(query: Any, name: str, default: int, low: int, high: int) -> int:
    value = query.get(name, "")
    if value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise _bad(f"must be a whole number from {low} to {high}", name)
    return int(value)


async def _bounded(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, "too_large", f"the body is larger than {limit} bytes")
    raw = await read_at_most(request.content, limit)
    if len(raw) > limit:
        raise Refused(413, "too_large", f"the body is larger than {limit} bytes")
    return raw


async def _json_body(request: web.Request, fields: set[str]) -> dict[str, Any]:
    raw = await _bounded(request, MAX_BODY_BYTES)
    if not raw.strip():
        return {}
    body = json_object(raw)
    unknown = sorted(set(body) - fields)
    if unknown:
        raise _bad("unknown field", unknown[0])
    return body


def _scope_check(
    existing: dict[str, Account], scope: frozenset[str]
) -> Callable[[Row], str | None]:
    """What an admin may not import: a court outside their scope, or an id that is an account
    of such a court (which the import would move into theirs)."""

    def refused(r: Row) -> str | None:
        if r.court not in scope:
            return f"court: {r.court!r} is not a court you manage"
        if r.user_id in existing and existing[r.user_id].court not in scope:
            return f"user: {r.user_id!r} is taken"
        return None

    return refused


def _secret_response(body: dict[str, Any], status: int = 200) -> web.Response:
    response = web.json_response(body, status=status)
    # A made password or TOTP secret is shown once: no cache keeps it.
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    return response


# What this module's routes answer besides what every route does (http_edge.answering).
EDGE: Final = http_edge.Edge(
    unavailable=http_edge.Unavailable(
        "accounts cannot be changed right now; try again shortly", retry_after=True
    )
)


def install(app: web.Application) -> None:
    """The routes, beside `account_api.install` (whose store they use)."""
    api = AdminApi()
    answered = http_edge.answering(EDGE)
    app.router.add_get(PATH, answered(api.list_accounts))
    app.router.add_post(PATH, answered(api.add_account))
    app.router.add_post(f"{PATH}/import", answered(api.import_accounts))
    app.router.add_post(PATH + "/{user_id}/disable", answered(api.disable))
    app.router.add_post(PATH + "/{user_id}/enable", answered(api.enable))
    app.router.add_post(PATH + "/{user_id}/reset", answered(api.reset))


__all__ = ["MAX_IMPORT_BYTES", "PATH", "AdminApi", "install", "matching"]
