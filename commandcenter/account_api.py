"""Sign-in with an account: password (argon2), optional one-time code (TOTP), a browser
session kept in an HttpOnly cookie, and the short-lived WebSocket tokens it is exchanged for.

    POST   /api/session        {"user", "password", "code"?} -> 200 {"token", ...} + cookie
    POST   /api/session/token  (cookie)                       -> 200 {"token", ...}
    DELETE /api/session        (cookie)                       -> 204, cookie cleared

The cookie survives F5; the token it buys lives `accounts.token_ttl_s` and is what the
WebSocket and the HTTP API take, exactly like a token minted by `commandcenter token`.
Every sign-in, failure, lockout and sign-out is written to the trace before it is answered
(durable before told). Unknown users and wrong passwords get one answer, after the same
argon2 work, so that names cannot be probed; a locked account is refused without hashing.
Errors become statuses in the one edge of the API, `http_edge.answering`, with `EDGE`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
from typing import Any, Final

import pyotp
import structlog
from aiohttp import hdrs, web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from commandcenter import http_edge, oidc
from commandcenter.auth import issue_token
from commandcenter.bodies import read_at_most
from commandcenter.config import AccountsConfig, OidcConfig
from commandcenter.keys import HUB, RECORDER
from identity.accounts import (
    MAX_PASSWORD_CHARS,
    Account,
    AccountError,
    LockoutPolicy,
    Outcome,
    judge,
    user_id_of,
)
from sessions.account_store import AccountStore, WebSession
from sessions.errors import StoreClosed
from sessions.recorder import TraceEvent
from signalling.ratelimit import TokenBucket

log = structlog.get_logger(__name__)

COOKIE: Final = "cc_session"
COOKIE_PATH: Final = "/api/session"
MAX_BODY_BYTES: Final = 4096
# Addresses whose attempt budget is remembered; beyond this the oldest is forgotten, so a
# spray from many addresses costs memory once, not for ever.
MAX_ADDRESSES: Final = 10_000
# argon2 hashes at once: each takes ~64 MiB and tens of milliseconds of a core.
MAX_HASHING: Final = 2

# Trace kinds, documented in docs/accounts.md.
SIGNED_IN: Final = "account_signed_in"
SIGN_IN_FAILED: Final = "account_sign_in_failed"
LOCKED: Final = "account_locked"
SIGNED_OUT: Final = "account_signed_out"

_STATUS: Final = {
    Outcome.BAD_CREDENTIALS: (401, "wrong user or password"),
    Outcome.CODE_REQUIRED: (401, "a one-time code is required"),
    Outcome.BAD_CODE: (401, "wrong one-time code"),
    Outcome.LOCKED: (429, "too many failed sign-ins; try again later"),
    Outcome.DISABLED: (403, "this account is disabled"),
}


def _bad(reason: str, field: str | None = None) -> http_edge.Refused:
    return http_edge.Refused(400, "bad_request", reason, field)


class Passwords:
    """argon2id hashing off the event loop, a few at a time."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(MAX_HASHING)
        # Verified against when the user does not exist, so that costs what a real check
        # does. Made on first use: a server nobody signs in to never pays for it.
        self._stand_in: str | None = None

    def hash_now(self, password: str) -> str:
        """Blocking: for the CLI."""
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        """For the server: off the event loop, at most MAX_HASHING at once."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        if not password_hash and self._stand_in is None:
            self._stand_in = self._hasher.hash(secrets.token_urlsafe(16))
        try:
            return self._hasher.verify(password_hash or self._stand_in or "", password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False


def code_ok(secret: str | None, code: str, now: float) -> bool:
    """`code` is the TOTP of `secret` at `now` (or one 30 s step either side: phone clocks)."""
    if secret is None or not code:
        return False
    return bool(pyotp.TOTP(secret).verify(code, for_time=int(now), valid_window=1))


def cookie_digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class Attempts:
    """A per-address budget of sign-in attempts (time passed in)."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._burst = per_minute
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, address: str, now: float) -> bool:
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst, now)
            if len(self._buckets) >= MAX_ADDRESSES:
                del self._buckets[next(iter(self._buckets))]
        # Re-inserted last: the dict's order is least recently used first.
        self._buckets[address] = bucket
        return bucket.take(now)


class AccountApi:
    """The handlers, over a store opened at startup (`open`)."""

    def __init__(
        self,
        *,
        config: AccountsConfig,
        secret: str,
        passwords: Passwords | None = None,
        sso: OidcConfig | None = None,
    ) -> None:
        self._store: AccountStore | None = None
        self._oidc = oidc.Provider(sso) if sso is not None and sso.issuer else None
        self._flow_key = oidc.flow_key(secret)
        self._config = config
        self._secret = secret
        self._passwords = passwords or Passwords()
        self._policy = LockoutPolicy(config.lockout_failures, config.lockout_s)
        self._attempts = Attempts(config.attempts_per_minute)

    @property
    def store(self) -> AccountStore:
        if self._store is None:
            raise StoreClosed("the account store is not open")
        return self._store

    @property
    def passwords(self) -> Passwords:
        return self._passwords

    @property
    def token_secret(self) -> str:
        """The HS256 secret the sign-in issues tokens with (witness links too, witness_api)."""
        return self._secret

    async def open(self, store: AccountStore) -> None:
        self._store = store

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    # ---- handlers -------------------------------------------------------------------------

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        now = request.app[HUB].clock.now()
        address = request.remote or "unknown"
        if not self._attempts.allow(address, now):
            response = http_edge.error_response(429, "rate_limited", "too many sign-in attempts")
            response.headers[hdrs.RETRY_AFTER] = "60"
            return response
        body = await _json_body(request)
        user = _field(body, "user", 256)
        password = _field(body, "password", MAX_PASSWORD_CHARS)
        code = body.get("code", "")
        if not isinstance(code, str) or len(code) > 10:
            raise _bad("code must be a string of digits", "code")
        try:
            user_id = user_id_of(user)
        except AccountError:
            # Not an id we could have: the same answer as a wrong password.
            user_id = None
        account = await self.store.get(user_id) if user_id is not None else None
        locked = account is not None and account.locked_until > now
        password_ok = False if locked else await self._passwords.verify(_hash_of(account), password)
        verdict = judge(
            account,
            password_ok=password_ok,
            code_given=bool(code),
            code_ok=password_ok and account is not None and code_ok(account.totp_secret, code, now),
            now=now,
            policy=self._policy,
        )
        events = [_attempt_event(verdict.outcome, user_id, account, address, now)]
        if verdict.locked_now and verdict.account is not None:
            events.append(
                TraceEvent(
                    LOCKED,
                    now,
                    {
                        "user": verdict.account.user_id,
                        "court": verdict.account.court,
                        "until": verdict.account.locked_until,
                    },
                )
            )
        # Recorded before anything is kept or answered: durable before told.
        await request.app[RECORDER].record(events)
        if verdict.account is not None and verdict.account != account:
            await self.store.save(verdict.account)
        if verdict.outcome is not Outcome.SIGNED_IN or verdict.account is None:
            log.info("sign-in refused", user_id=user_id, outcome=verdict.outcome.value)
            return _refusal(verdict.outcome, verdict.account, now)
        response = web.json_response(self._token_body(verdict.account, now))
        await self._open_session(verdict.account, request, response, now)
        return response

    async def _open_session(
        self, account: Account, request: web.Request, response: web.StreamResponse, now: float
    ) -> None:
        """A browser session for `account`: kept by the cookie's hash, the cookie set."""
        cookie = secrets.token_urlsafe(32)
        await self.store.open_session(
            WebSession(
                digest=cookie_digest(cookie),
                user_id=account.user_id,
                created_at=now,
                expires_at=now + self._config.session_ttl_s,
            )
        )
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self._config.session_ttl_s),
            path=COOKIE_PATH,
            httponly=True,
            secure=request.secure,
            samesite="Strict",
        )

    # ---- single sign-on (oidc.py) ---------------------------------------------------------

    async def methods(self, request: web.Request) -> web.StreamResponse:
        """How one may sign in here, for the sign-in page (nothing secret)."""
        return web.json_response({"password": True, "oidc": self._oidc is not None})

    async def oidc_start(self, request: web.Request) -> web.StreamResponse:
        if self._oidc is None:
            return http_edge.error_response(404, "not_found", "single sign-on is not configured")
        now = request.app[HUB].clock.now()
        flow = oidc.new_flow(request.query.get("next"), now)
        try:
            target = await self._oidc.authorize_url(
                flow, oidc.redirect_uri(self._oidc.config, request)
            )
        except oidc.OidcFailure as exc:
            log.warning("single sign-on unavailable", reason=exc.code, detail=exc.detail)
            return _to_signin(exc.code)
        response = _redirect(target)
        response.set_cookie(
            oidc.FLOW_COOKIE,
            oidc.seal(flow, self._flow_key),
            max_age=oidc.FLOW_TTL_S,
            path="/api/session/oidc",
            httponly=True,
            secure=request.secure,
            # Lax: the provider sends the browser back with a top-level GET from its site.
            samesite="Lax",
        )
        return response

    async def oidc_callback(self, request: web.Request) -> web.StreamResponse:
        if self._oidc is None:
            return http_edge.error_response(404, "not_found", "single sign-on is not configured")
        now = request.app[HUB].clock.now()
        address = request.remote or "unknown"
        user_id: str | None = None
        try:
            flow = oidc.unseal(request.cookies.get(oidc.FLOW_COOKIE, ""), self._flow_key, now)
            if "error" in request.query:
                raise oidc.OidcFailure("oidc_refused", request.query.get("error", "")[:64])
            if not hmac.compare_digest(request.query.get("state", ""), flow.state):
                raise oidc.OidcFailure("oidc_no_flow", "state does not match")
            code = request.query.get("code", "")
            if not code or len(code) > 2048:
                raise oidc.OidcFailure("oidc_code", "no code")
            claims = await self._oidc.id_claims(
                code, flow, oidc.redirect_uri(self._oidc.config, request), now
            )
            user_id = oidc.user_of(claims, self._oidc.config.user_claim)
            account = await self.store.get(user_id)
            if account is None:
                raise oidc.OidcFailure("oidc_no_account", "no account for this user")
            if account.disabled:
                raise oidc.OidcFailure("disabled", "the account is disabled")
        except oidc.OidcFailure as exc:
            data: dict[str, Any] = {"user": user_id, "reason": exc.code, "address": address}
            data["method"] = "oidc"
            await request.app[RECORDER].record([TraceEvent(SIGN_IN_FAILED, now, data)])
            log.info("sign-in refused", user_id=user_id, outcome=exc.code, detail=exc.detail)
            response = _to_signin(exc.code)
            response.del_cookie(oidc.FLOW_COOKIE, path="/api/session/oidc")
            return response
        event = _attempt_event(Outcome.SIGNED_IN, user_id, account, address, now)
        await request.app[RECORDER].record(
            [TraceEvent(event.kind, now, {**event.data, "method": "oidc"})]
        )
        response = _redirect(flow.next)
        await self._open_session(account, request, response, now)
        response.del_cookie(oidc.FLOW_COOKIE, path="/api/session/oidc")
        return response

    async def token(self, request: web.Request) -> web.StreamResponse:
        now = request.app[HUB].clock.now()
        session = await self._session_of(request)
        if session is None or session.expires_at <= now:
            return _signed_out("not signed in, or the sign-in has expired")
        account = await self.store.get(session.user_id)
        # An account without a password may have signed in through the province's provider.
        if account is None or account.disabled:
            await self.store.close_session(session.digest)
            return _signed_out("this account can no longer sign in")
        return web.json_response(self._token_body(account, now))

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        now = request.app[HUB].clock.now()
        session = await self._session_of(request)
        if session is not None:
            await request.app[RECORDER].record(
                [TraceEvent(SIGNED_OUT, now, {"user": session.user_id})]
            )
            await self.store.close_session(session.digest)
        response = web.Response(status=204)
        response.del_cookie(COOKIE, path=COOKIE_PATH)
        return response

    # ---- helpers --------------------------------------------------------------------------

    async def _session_of(self, request: web.Request) -> WebSession | None:
        cookie = request.cookies.get(COOKIE, "")
        if not cookie or len(cookie) > 128:
            return None
        return await self.store.session(cookie_digest(cookie))

    def _token_body(self, account: Account, now: float) -> dict[str, Any]:
        ttl = self._config.token_ttl_s
        token = issue_token(
            self._secret,
            user=account.user_id,
            role=account.role,
            court=account.court,
            name=account.name,
            ttl_s=ttl,
            now=now,
        )
        return {
            "token": token,
            "expires_at": math.floor(now + ttl),
            "user": {
                "id": account.user_id,
                "name": account.name,
                "role": account.role.value,
                "court": account.court,
            },
        }


def _hash_of(account: Account | None) -> str | None:
    return None if account is None else account.password_hash or None


def _attempt_event(
    outcome: Outcome, user_id: str | None, account: Account | None, address: str, now: float
) -> TraceEvent:
    if outcome is Outcome.SIGNED_IN and account is not None:
        data: dict[str, Any] = {
            "user": account.user_id,
            "court": account.court,
            "role": account.role.value,
            "second_factor": account.totp_secret is not None,
            "address": address,
        }
        return TraceEvent(SIGNED_IN, now, data)
    data = {"user": user_id, "reason": outcome.value, "address": address}
    if account is not None:
        data["court"] = account.court
    return TraceEvent(SIGN_IN_FAILED, now, data)


def _refusal(outcome: Outcome, account: Account | None, now: float) -> web.Response:
    status, reason = _STATUS[outcome]
    response = http_edge.error_response(status, outcome.value, reason)
    if outcome is Outcome.LOCKED and account is not None:
        response.headers[hdrs.RETRY_AFTER] = str(max(1, math.ceil(account.locked_until - now)))
    # A 401 here is about the password, not a bearer token: no WWW-Authenticate challenge.
    response.headers.popall(hdrs.WWW_AUTHENTICATE, None)
    return response


def _redirect(location: str) -> web.Response:
    # A plain response, not a returned HTTPFound (which aiohttp deprecates returning).
    return web.Response(status=302, headers={hdrs.LOCATION: location})


def _to_signin(code: str) -> web.Response:
    return _redirect(f"{oidc.SIGNIN_PAGE}?error={code}")


def _signed_out(reason: str) -> web.Response:
    response = http_edge.error_response(401, "signed_out", reason)
    response.headers.popall(hdrs.WWW_AUTHENTICATE, None)
    response.del_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _bad(f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = await read_at_most(request.content, MAX_BODY_BYTES)
    if len(raw) > MAX_BODY_BYTES:
        raise _bad(f"the body is larger than {MAX_BODY_BYTES} bytes")
    body = http_edge.json_object(raw)
    unknown = set(body) - {"user", "password", "code"}
    if unknown:
        raise _bad(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    return body


def _field(body: dict[str, Any], name: str, max_chars: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise _bad(f"{name} must be a string of 1 to {max_chars} characters", name)
    return value


# What this module's routes answer besides what every route does (http_edge.answering).
EDGE: Final = http_edge.Edge(
    unavailable=http_edge.Unavailable(
        "sign-in is not possible right now; try again shortly", retry_after=True
    )
)


# Kept here, not in keys.py, which this module's imports would make circular.
ACCOUNTS: Final = web.AppKey("accounts", AccountApi)


def install(app: web.Application, api: AccountApi) -> None:
    app[ACCOUNTS] = api
    answered = http_edge.answering(EDGE)
    app.router.add_post(COOKIE_PATH, answered(api.sign_in))
    app.router.add_post(f"{COOKIE_PATH}/token", answered(api.token))
    app.router.add_delete(COOKIE_PATH, answered(api.sign_out))
    app.router.add_get(f"{COOKIE_PATH}/methods", answered(api.methods))
    app.router.add_get(oidc.START_PATH, answered(api.oidc_start))
    app.router.add_get(oidc.CALLBACK_PATH, answered(api.oidc_callback))


__all__ = [
    "ACCOUNTS",
    "COOKIE",
    "LOCKED",
    "SIGNED_IN",
    "SIGNED_OUT",
    "SIGN_IN_FAILED",
    "AccountApi",
    "Passwords",
    "code_ok",
    "install",
]
