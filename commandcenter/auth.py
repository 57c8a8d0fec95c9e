"""Token verification at the edges: JWTs in, `identity.Identity` (or `identity.AuthError`) out.

Roles, identities and the court hierarchy live in the bottom-layer `identity` package
(re-exported here for the CLI and the HTTP edge); jwt and cryptography stay in this module.
`TokenVerifier` is pure: the time is an argument, nothing here reads the clock, and
verification never logs. `load_secret` and `build_verifier` are the only parts that
touch files; they run once at start (and in `commandcenter token`).

An `AuthError` carries a short reason that is safe to send to the peer: it never includes
the token, the secret or the library's own message.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from commandcenter.config import MIN_SECRET_BYTES, AuthConfig, Config, ConfigError
from identity import AuthError, AuthReason, Courts, Identity, Role, bearer_token
from identity.names import BadName, normalised

# Longer tokens are refused before any decoding; ours are a few hundred characters.
MAX_TOKEN_CHARS: Final = 4096
RESERVED_USER_PREFIX = "@"
# Bound on sub and name, so an identity is cheap to store, log and fan out.
MAX_ID_CHARS: Final = 64
# Dates in claims lie between 1970 and the end of year 9999 (RFC 7519 NumericDate).
MAX_NUMERIC_DATE: Final = 253_402_300_799
# RSA keys below this are refused (NIST SP 800-131A); PyJWT would only warn per decode.
MIN_RSA_BITS: Final = 2048
SECRET_FILE: Final = "jwt_secret"

_ASYMMETRIC: Final = frozenset({"RS256", "ES256"})
# What a witness token may name: one conference ("conference:<id>").
# What a witness may watch: one conference, or one concentrated enforcement action (a
# conference of kind "action").
_SCOPE: Final = re.compile(r"(conference|action):[A-Za-z0-9_-]{1,64}")


class TokenVerifier:
    """Turns a bearer token into an `Identity`, or raises `AuthError`."""

    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        secret: str,
        public_key: str | None,
        leeway_s: float,
        courts: Courts,
    ) -> None:
        if leeway_s < 0:
            raise ValueError("leeway_s must not be negative")
        # One key per algorithm, fixed here: the token's header only selects among them, so
        # it can never make an RSA public key act as an HMAC secret (RFC 8725 2.1).
        self._keys: dict[str, Any] = {}
        for alg in algorithms:
            if alg == "HS256":
                if len(secret.encode()) < MIN_SECRET_BYTES:
                    raise ValueError(f"HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes")
                self._keys[alg] = secret
            elif alg in _ASYMMETRIC:
                # No public key configured: these tokens are refused, as config.py documents.
                if public_key:
                    self._keys[alg] = _load_public_key(alg, public_key)
            else:
                raise ValueError(f"unsupported algorithm {alg!r}")
        self._leeway_s = leeway_s
        self._courts = courts

    def verify(self, token: str, now: float) -> Identity:
        if not token:
            raise AuthError("token missing")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("token too large")
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        if not isinstance(alg, str) or alg not in self._keys:
            raise AuthError("algorithm not allowed")
        key = self._keys[alg]
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                # exp, nbf and iat are checked below against `now` (PyJWT would read the
                # clock), and sub with the other claims, so each failure gets its reason.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                    "verify_jti": False,
                    "require": ["sub", "role", "court", "exp"],
                },
            )
        except jwt.MissingRequiredClaimError:
            raise AuthError("missing claim") from None
        except jwt.InvalidAudienceError:
            # Meant for some other service: we configure no audience.
            raise AuthError("invalid claim") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        return self._identity(claims, now)

    def _identity(self, claims: Mapping[str, Any], now: float) -> Identity:
        exp = _numeric_date(claims["exp"])
        nbf = _numeric_date(claims.get("nbf", 0))
        if "iat" in claims:
            _numeric_date(claims["iat"])
        if now >= exp + self._leeway_s:
            raise AuthError("token expired")
        if nbf > now + self._leeway_s:
            raise AuthError("token not yet valid")
        user_id = _short_string(claims["sub"])
        if user_id.startswith(RESERVED_USER_PREFIX):
            # Ids starting "@" name the server itself (the uploader of recordings and
            # snapshots); a token must never pass for it.
            raise AuthError("invalid claim")
        name = _short_string(claims.get("name", user_id))
        role_claim = claims["role"]
        if not isinstance(role_claim, str):
            raise AuthError("invalid claim")
        try:
            role = Role(role_claim)
        except ValueError:
            raise AuthError("unknown role") from None
        court = claims["court"]
        if not isinstance(court, str):
            raise AuthError("invalid claim")
        if court not in self._courts:
            raise AuthError("unknown court")
        scope = claims.get("scope")
        if role is Role.WITNESS:
            # A witness token names the one conference it may watch; without it, nothing.
            if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
                raise AuthError("invalid claim")
        elif scope is not None:
            raise AuthError("invalid claim")
        return Identity(
            user_id=user_id, name=name, role=role, court=court, expires_at=exp, scope=scope
        )


def _numeric_date(value: object) -> float:
    # bool is an int subclass; `"exp": true` is not a date. An int beyond float's range
    # (`"exp": 10**400`) would raise OverflowError in isfinite, so ints are bounded first.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError("invalid claim")
    if isinstance(value, int) and not 0 <= value <= MAX_NUMERIC_DATE:
        raise AuthError("invalid claim")
    if not math.isfinite(value) or not 0 <= value <= MAX_NUMERIC_DATE:
        raise AuthError("invalid claim")
    return float(value)


def _short_string(value: object) -> str:
    # NFKC, so a look-alike spelling is the same user (and a fullwidth at sign, U+FF20,
    # the reserved prefix); control and formatting characters refused (identity.names).
    if not isinstance(value, str):
        raise AuthError("invalid claim")
    try:
        return normalised(value, max_chars=MAX_ID_CHARS)
    except BadName:
        raise AuthError("invalid claim") from None


def _load_public_key(alg: str, pem: str) -> RSAPublicKey | EllipticCurvePublicKey:
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ValueError("public key is not a PEM public key") from None
    if alg == "RS256":
        if not isinstance(key, RSAPublicKey):
            raise ValueError("RS256 needs an RSA public key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RS256 needs an RSA key of at least {MIN_RSA_BITS} bits")
        return key
    if not isinstance(key, EllipticCurvePublicKey) or not isinstance(key.curve, SECP256R1):
        raise ValueError("ES256 needs a P-256 elliptic-curve public key")
    return key


def issue_token(
    secret: str,
    *,
    user: str,
    role: Role,
    court: str,
    name: str,
    ttl_s: float,
    now: float,
    scope: str | None = None,
) -> str:
    """An HS256 token for `user`, valid from `now` for `ttl_s` seconds; a witness's names
    the conference it may watch (`scope`, "conference:<id>", or "action:<id>" for a
    concentrated enforcement action)."""
    for field, value in (("user", user), ("name", name), ("court", court)):
        if not value or len(value) > MAX_ID_CHARS:
            raise ValueError(f"{field} must be 1 to {MAX_ID_CHARS} characters")
    # The token carries the spelling the verifier will use (NFKC), so what the CLI prints
    # and what the server logs agree.
    try:
        user = normalised(user, max_chars=MAX_ID_CHARS)
        name = normalised(name, max_chars=MAX_ID_CHARS)
    except BadName as exc:
        raise ValueError(f"user and name: {exc}") from None
    if not ttl_s > 0:
        raise ValueError("ttl_s must be positive")
    if user.startswith(RESERVED_USER_PREFIX):
        raise ValueError(f"user ids starting {RESERVED_USER_PREFIX!r} are reserved for the server")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret must be at least {MIN_SECRET_BYTES} bytes")
    if (Role(role) is Role.WITNESS) != (scope is not None):
        raise ValueError("a witness token, and only one, names a conference (scope)")
    if scope is not None and not _SCOPE.fullmatch(scope):
        raise ValueError("scope must be conference:<id> or action:<id>")
    # Whole seconds, as most JWT consumers expect; flooring nbf keeps the token usable at `now`.
    issued = math.floor(now)
    claims = {
        "sub": user,
        "name": name,
        "role": Role(role).value,
        "court": court,
        "iat": issued,
        "nbf": issued,
        "exp": math.floor(now + ttl_s),
    }
    if scope is not None:
        claims["scope"] = scope
    return jwt.encode(claims, secret, algorithm="HS256")


def load_secret(cfg: AuthConfig, data_dir: Path) -> str:
    """The HS256 secret: `cfg.jwt_secret`, else `<data_dir>/jwt_secret`, created on first use."""
    if cfg.jwt_secret:
        return cfg.jwt_secret
    path = data_dir / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the JWT secret: {exc.strerror}") from None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _create_secret(path)
        return _read_secret(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the JWT secret: {exc.strerror}") from None


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the JWT secret is not UTF-8 text") from None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path}: the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def _create_secret(path: Path) -> None:
    # Written in full to a private temporary file, then linked into place: link() fails if
    # the name exists, so two processes starting together agree on one secret, and nobody
    # ever reads a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_verifier(config: Config) -> TokenVerifier:
    """The verifier for a running server: secret, optional public key and courts from config."""
    auth = config.auth
    # Only generate a secret file when HS256 tokens are accepted at all.
    secret = load_secret(auth, Path(config.server.data_dir)) if "HS256" in auth.algorithms else ""
    public_key: str | None = None
    if auth.public_key_file:
        try:
            public_key = Path(auth.public_key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise ConfigError(f"auth.public_key_file: {auth.public_key_file}: {detail}") from None
    try:
        return TokenVerifier(
            algorithms=auth.algorithms,
            secret=secret,
            public_key=public_key,
            leeway_s=auth.leeway_s,
            courts=Courts(config.courts),
        )
    except ValueError as exc:
        # The messages name no key material, only what is wrong with it.
        raise ConfigError(f"auth: {exc}") from None


__all__ = [
    "MAX_TOKEN_CHARS",
    "AuthError",
    "AuthReason",
    "Courts",
    "Identity",
    "Role",
    "TokenVerifier",
    "bearer_token",
    "build_verifier",
    "issue_token",
    "load_secret",
]
