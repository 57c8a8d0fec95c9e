"""A small OpenID Connect provider the tests start on 127.0.0.1: discovery, keys, an
authorize endpoint that signs in whoever the test says (no login page), and a token endpoint
that checks the code, the client and the PKCE verifier before it answers an RS256 ID token.
`tamper` lets a test make the provider misbehave in one named way."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "commandcenter-test"
CLIENT_SECRET = "client-secret-of-the-test"


@dataclass
class IdentityProvider:
    issuer: str = ""
    # The user the next authorization signs in (the preferred_username claim).
    user: str = "o-1"
    # "nonce", "audience", "signature", "expired": what the next ID token gets wrong.
    tamper: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        return app

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        public = self.key.as_dict(private=False)
        return web.json_response({"keys": [{**public, "kid": "k1", "use": "sig"}]})

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        assert q["client_id"] == CLIENT_ID
        assert q["code_challenge_method"] == "S256"
        assert "openid" in q["scope"].split()
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "nonce": q["nonce"],
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
            "user": self.user,
        }
        params = urlencode({"code": code, "state": q["state"]})
        return web.Response(status=302, headers={"Location": f"{q['redirect_uri']}?{params}"})

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        grant = self.codes.pop(str(form.get("code", "")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        if (
            grant is None
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
            or form.get("redirect_uri") != grant["redirect_uri"]
            or challenge != grant["challenge"]
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": f"sub-{grant['user']}",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            "preferred_username": grant["user"],
        }
        key = self.key
        if self.tamper == "nonce":
            claims["nonce"] = "another"
        elif self.tamper == "audience":
            claims["aud"] = "someone-else"
        elif self.tamper == "expired":
            claims["exp"] = now - 3600
        elif self.tamper == "signature":
            key = RSAKey.generate_key(2048, private=True)
        header = {"alg": "RS256", "kid": "k1"}
        return web.json_response(
            {
                "access_token": "x",
                "token_type": "Bearer",
                "id_token": jwt.encode(header, claims, key),
            }
        )
