"""Single sign-on through the province's OpenID Connect provider (authorization code flow with
PKCE), beside passwords: the provider says who the person is, our accounts say what they may
do (an account must exist for them and not be disabled).

    GET /api/session/oidc/start?next=/app/...   -> 302 to the provider
    GET /api/session/oidc/callback?code&state   -> 302 to `next`, signed in (the same cookie
                                                   a password sign-in sets), or to the
                                                   sign-in page with ?error=<code>

What must survive the round trip through the provider (state, nonce, PKCE verifier, next) is
kept in a short-lived cookie signed with the server's secret, so that any node of a cluster
can finish a sign-in another began, and a callback from a browser that did not begin it is
refused. The ID token is checked with joserfc (authlib's JOSE library) against the provider's
published keys: issuer, audience, expiry, nonce. Every success and failure is in the trace.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
import structlog
from aiohttp import web
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from commandcenter.config import OidcConfig
from identity.accounts import AccountError, user_id_of

log = structlog.get_logger(__name__)

START_PATH: Final = "/api/session/oidc/start"
CALLBACK_PATH: Final = "/api/session/oidc/callback"
FLOW_COOKIE: Final = "cc_oidc"
# The person has this long to sign in at the provider.
FLOW_TTL_S: Final = 600
SIGNIN_PAGE: Final = "/app/signin.html"
DEFAULT_NEXT: Final = "/app/index.html"
MAX_COOKIE_CHARS: Final = 2048
ALGORITHMS: Final = ["RS256", "ES256", "PS256"]


class OidcFailure(Exception):
    """The sign-in did not happen; `code` goes to the sign-in page and the trace."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    next: str
    expires_at: float


def safe_next(value: str | None) -> str:
    """Only a page of ours: a sign-in link must not send a fresh sign-in to another site."""
    if value and value.startswith("/app/") and "//" not in value and "\\" not in value:
        return value[:256]
    return DEFAULT_NEXT


def seal(flow: Flow, key: bytes) -> str:
    body = base64.urlsafe_b64encode(json.dumps(flow.__dict__).encode()).decode().rstrip("=")
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def unseal(value: str, key: bytes, now: float) -> Flow:
    if not value or len(value) > MAX_COOKIE_CHARS or "." not in value:
        raise OidcFailure("oidc_no_flow", "no sign-in was begun in this browser")
    body, mac = value.rsplit(".", 1)
    if not hmac.compare_digest(mac, hmac.new(key, body.encode(), hashlib.sha256).hexdigest()):
        raise OidcFailure("oidc_no_flow", "the sign-in cookie was changed")
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        flow = Flow(**data)
    except (ValueError, TypeError):
        raise OidcFailure("oidc_no_flow", "the sign-in cookie is unreadable") from None
    if flow.expires_at < now:
        raise OidcFailure("oidc_expired", "the sign-in took too long")
    return flow


class Provider:
    """The provider's published configuration and keys, fetched on first use and cached."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._discovery: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def _get(self, http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        try:
            async with http.get(url) as resp:
                if resp.status != 200:
                    raise OidcFailure("oidc_provider", f"{url}: HTTP {resp.status}")
                found: dict[str, Any] = await resp.json(content_type=None)
                return found
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcFailure("oidc_provider", f"{url}: {type(exc).__name__}") from None

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            async with self._session() as http:
                found = await self._get(http, url)
            if found.get("issuer") != self.config.issuer:
                raise OidcFailure("oidc_provider", "the discovery document names another issuer")
            self._discovery = found
        return self._discovery

    async def keys(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            async with self._session() as http:
                jwks = await self._get(http, (await self.discovery())["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError):
                raise OidcFailure("oidc_provider", "the provider's keys are unreadable") from None
        return self._keys

    async def authorize_url(self, flow: Flow, redirect_uri: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.config.scopes,
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": create_s256_code_challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
        endpoint = (await self.discovery())["authorization_endpoint"]
        return f"{endpoint}?{urlencode(params)}"

    async def id_claims(
        self, code: str, flow: Flow, redirect_uri: str, now: float
    ) -> dict[str, Any]:
        """The verified claims of the ID token the code is exchanged for."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "code_verifier": flow.verifier,
        }
        endpoint = (await self.discovery())["token_endpoint"]
        try:
            async with self._session() as http, http.post(endpoint, data=form) as resp:
                answer = await resp.json(content_type=None)
                if resp.status != 200:
                    raise OidcFailure("oidc_code", f"token endpoint: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcFailure("oidc_provider", f"token endpoint: {type(exc).__name__}") from None
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str) or len(id_token) > 16384:
            raise OidcFailure("oidc_token", "no ID token in the answer")
        return await self._verified(id_token, flow, now)

    async def _verified(self, id_token: str, flow: Flow, now: float) -> dict[str, Any]:
        for refresh in (False, True):
            try:
                token = jwt.decode(id_token, await self.keys(refresh), algorithms=ALGORITHMS)
                break
            except JoseError:
                # A key the provider rotated in since we fetched: fetch once more.
                if refresh:
                    raise OidcFailure(
                        "oidc_token", "the ID token's signature does not verify"
                    ) from None
        registry = JWTClaimsRegistry(
            now=int(now),
            leeway=30,
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": flow.nonce},
        )
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            raise OidcFailure("oidc_token", f"ID token: {exc.error}") from None
        return dict(token.claims)


def user_of(claims: dict[str, Any], claim: str) -> str:
    value = claims.get(claim)
    if not isinstance(value, str):
        raise OidcFailure("oidc_no_user", f"the ID token has no {claim}")
    try:
        return user_id_of(value)
    except AccountError:
        raise OidcFailure("oidc_no_user", f"{claim} is not a user id we can have") from None


def new_flow(next_page: str | None, now: float) -> Flow:
    return Flow(
        state=generate_token(32),
        nonce=generate_token(32),
        verifier=generate_token(64),
        next=safe_next(next_page),
        expires_at=now + FLOW_TTL_S,
    )


def redirect_uri(config: OidcConfig, request: web.Request) -> str:
    if config.redirect_url:
        return config.redirect_url
    return f"{request.scheme}://{request.host}{CALLBACK_PATH}"


def flow_key(secret: str) -> bytes:
    # Its own key, derived: a flow cookie can never pass for a token, nor the reverse.
    return hmac.new(secret.encode(), b"commandcenter oidc flow", hashlib.sha256).digest()


__all__ = [
    "CALLBACK_PATH",
    "FLOW_COOKIE",
    "START_PATH",
    "Flow",
    "OidcFailure",
    "Provider",
    "flow_key",
    "new_flow",
    "redirect_uri",
    "safe_next",
    "seal",
    "unseal",
    "user_of",
]
