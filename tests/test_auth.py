"""Token verification, the court hierarchy's scopes, and the JWT secret file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from commandcenter.auth import (
    AuthError,
    Courts,
    Identity,
    Role,
    TokenVerifier,
    bearer_token,
    build_verifier,
    issue_token,
    load_secret,
)
from commandcenter.config import AuthConfig, Config, ConfigError, CourtConfig, replace_section

SECRET = "s" * 64
NOW = 1_800_000_000.0
COURTS = Courts(Config().courts)


def verifier(
    *,
    algorithms: tuple[str, ...] = ("HS256",),
    public_key: str | None = None,
    leeway_s: float = 5.0,
) -> TokenVerifier:
    return TokenVerifier(
        algorithms=algorithms,
        secret=SECRET,
        public_key=public_key,
        leeway_s=leeway_s,
        courts=COURTS,
    )


def signed(claims: dict[str, Any], *, key: Any = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "o1",
        "name": "Officer One",
        "role": "officer",
        "court": "P0101",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def reason(token: str, now: float = NOW, v: TokenVerifier | None = None) -> str:
    with pytest.raises(AuthError) as info:
        (v or verifier()).verify(token, now)
    return info.value.reason


def identity(role: Role, court: str) -> Identity:
    return Identity(user_id="u", name="u", role=role, court=court, expires_at=NOW + 60)


# --- issue and verify --------------------------------------------------------------------


def test_issued_token_verifies_to_the_same_identity() -> None:
    token = issue_token(
        SECRET, user="o1", role=Role.OFFICER, court="P0101", name="Ann", ttl_s=3600, now=NOW
    )
    assert verifier().verify(token, NOW) == Identity(
        user_id="o1", name="Ann", role=Role.OFFICER, court="P0101", expires_at=NOW + 3600
    )


def test_issued_token_carries_the_documented_claims() -> None:
    token = issue_token(
        SECRET, user="o1", role=Role.AUDITOR, court="P", name="o1", ttl_s=60, now=NOW + 0.7
    )
    payload = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert payload == {
        "sub": "o1",
        "name": "o1",
        "role": "auditor",
        "court": "P",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 60,
    }
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_issue_token_refuses_bad_arguments() -> None:
    def issue(**changes: Any) -> str:
        args: dict[str, Any] = {
            "user": "o1",
            "role": Role.OFFICER,
            "court": "P0101",
            "name": "o1",
            "ttl_s": 60.0,
            "now": NOW,
        }
        secret = changes.pop("secret", SECRET)
        args.update(changes)
        return issue_token(secret, **args)

    for bad in (
        {"ttl_s": 0.0},
        {"user": ""},
        {"user": "@server"},
        {"name": "n" * 65},
        {"secret": "short"},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - the message varies by argument
            issue(**bad)


def test_look_alike_ids_are_one_user_and_cannot_pass_for_the_server() -> None:
    """NFKC: a fullwidth "o1" is the user "o1"; a fullwidth "@" is the reserved prefix."""
    assert verifier().verify(signed(claims(sub="\uff4f\uff11")), NOW).user_id == "o1"
    assert verifier().verify(signed(claims(name="\uff21nn")), NOW).name == "Ann"
    assert reason(signed(claims(sub="\uff20server"))) == "invalid claim"


def test_issue_token_mints_the_normal_form_and_refuses_control_characters() -> None:
    token = issue_token(
        SECRET,
        user="\uff4f\uff11",
        role=Role.OFFICER,
        court="P0101",
        name="o1",
        ttl_s=60.0,
        now=NOW,
    )
    assert verifier().verify(token, NOW).user_id == "o1"
    for user in ("o1\x1b[2J", "\uff20server"):
        with pytest.raises(ValueError):  # noqa: PT011 - either reason
            issue_token(
                SECRET,
                user=user,
                role=Role.OFFICER,
                court="P0101",
                name="o1",
                ttl_s=60.0,
                now=NOW,
            )


def test_name_defaults_to_sub_when_absent() -> None:
    token = signed(claims(name=None))
    assert verifier().verify(token, NOW).name == "o1"


# --- rejections, each with its reason -----------------------------------------------------


def test_subject_starting_with_at_is_refused() -> None:
    """ "@..." ids name the server itself (the uploader of recordings); no token may."""
    assert reason(signed(claims(sub="@server"))) == "invalid claim"


def test_expired_token_is_refused_as_expired() -> None:
    token = signed(claims(exp=int(NOW) - 60))
    assert reason(token) == "token expired"


def test_token_not_yet_valid_is_refused() -> None:
    token = signed(claims(nbf=int(NOW) + 60))
    assert reason(token) == "token not yet valid"


def test_leeway_is_honoured_on_both_edges() -> None:
    """Within leeway_s of exp or nbf a token still verifies; beyond it, it does not."""
    v = verifier(leeway_s=5.0)
    expiring = signed(claims(exp=int(NOW)))
    assert v.verify(expiring, NOW + 4.9).user_id == "o1"
    assert reason(expiring, NOW + 5.0, v) == "token expired"
    early = signed(claims(nbf=int(NOW) + 5))
    assert v.verify(early, NOW).user_id == "o1"
    assert reason(early, NOW - 0.1, v) == "token not yet valid"


def test_bad_signature_is_an_invalid_token() -> None:
    token = signed(claims(), key="t" * 48)
    assert reason(token) == "invalid token"


def test_tampered_payload_is_an_invalid_token() -> None:
    header, _, signature = signed(claims()).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(role="admin")).encode())
    token = ".".join([header, forged.decode().rstrip("="), signature])
    assert reason(token) == "invalid token"


def test_unsigned_alg_none_token_is_refused() -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    assert reason(token) == "algorithm not allowed"


def test_algorithm_not_configured_is_refused_even_if_correctly_signed() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    assert reason(token) == "algorithm not allowed"


def test_asymmetric_token_without_a_public_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = signed(claims(), key=key, algorithm="ES256")
    assert reason(token, v=verifier(algorithms=("HS256", "ES256"))) == "algorithm not allowed"


@pytest.mark.parametrize("claim", ["sub", "role", "court", "exp"])
def test_missing_required_claim_is_refused(claim: str) -> None:
    token = signed(claims(**{claim: None}))
    assert reason(token) == "missing claim"


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": ""},
        {"sub": "x" * 65},
        {"sub": 17},
        {"name": ""},
        {"name": "n" * 65},
        {"role": ["officer"]},
        {"court": 101},
        {"exp": "tomorrow"},
        {"exp": True},
        {"exp": 10**400},
        {"exp": -1},
        {"exp": 1e300},
        {"nbf": 10**400},
        {"iat": -(10**400)},
        {"sub": "o1\x1b[31m"},
        {"sub": "o\u202e1"},
        {"sub": "o1\n"},
        {"sub": " o1"},
        {"name": "Ann\x07"},
        {"nbf": "now"},
        {"iat": "then"},
        {"aud": "some-other-service"},
    ],
)
def test_ill_typed_or_oversized_claim_is_refused(changes: dict[str, Any]) -> None:
    assert reason(signed(claims(**changes))) == "invalid claim"


def test_unknown_role_is_refused() -> None:
    assert reason(signed(claims(role="judge"))) == "unknown role"


def test_unknown_court_is_refused() -> None:
    assert reason(signed(claims(court="X99"))) == "unknown court"


def test_oversize_token_is_refused_before_decoding() -> None:
    token = signed(claims(pad="x" * 5000))
    assert reason(token) == "token too large"


def test_empty_token_is_missing() -> None:
    assert reason("") == "token missing"


@pytest.mark.parametrize("garbage", ["abc", "a.b.c", "....", "eyJ.eyJ.x", "é" * 20])
def test_malformed_token_is_an_invalid_token(garbage: str) -> None:
    assert reason(garbage) == "invalid token"


def test_auth_error_never_contains_the_token_or_secret() -> None:
    token = signed(claims(exp=int(NOW) - 60))
    with pytest.raises(AuthError) as info:
        verifier().verify(token, NOW)
    assert token not in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.close_code == 4401


def test_verifier_refuses_a_short_hs256_secret() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier(
            algorithms=("HS256",), secret="short", public_key=None, leeway_s=0, courts=COURTS
        )


# --- asymmetric keys -----------------------------------------------------------------------


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_rs256_token_verifies_with_the_configured_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    v = verifier(algorithms=("RS256",), public_key=public_pem(key))
    token = signed(claims(role="supervisor", court="P01"), key=key, algorithm="RS256")
    who = v.verify(token, NOW)
    assert (who.role, who.court) == (Role.SUPERVISOR, "P01")


def test_es256_token_verifies_and_a_foreign_key_does_not() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    v = verifier(algorithms=("ES256",), public_key=public_pem(key))
    assert v.verify(signed(claims(), key=key, algorithm="ES256"), NOW).user_id == "o1"
    assert reason(signed(claims(), key=other, algorithm="ES256"), v=v) == "invalid token"


def test_hs256_token_signed_with_the_public_key_text_is_refused() -> None:
    """The classic alg-confusion attack: HMAC keyed with the RSA public key must not pass."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = public_pem(key)
    v = verifier(algorithms=("RS256",), public_key=pem)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims()).encode())
    mac = hmac.new(pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert reason(signing_input + "." + b64(mac), v=v) == "algorithm not allowed"


def test_wrong_kind_of_public_key_is_refused_at_construction() -> None:
    rsa_pem = public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ValueError, match="ES256"):
        verifier(algorithms=("ES256",), public_key=rsa_pem)
    with pytest.raises(ValueError, match="PEM"):
        verifier(algorithms=("RS256",), public_key="not a key")


# --- courts ---------------------------------------------------------------------------------


def test_courts_hierarchy_queries() -> None:
    assert "P0101" in COURTS
    assert "X" not in COURTS
    assert COURTS.name("P01") == "第一中级人民法院"
    assert COURTS.parent("P0101") == "P01"
    assert COURTS.parent("P") is None
    assert COURTS.ancestors("P0101") == ("P01", "P")
    assert COURTS.ancestors("P") == ()
    assert COURTS.subtree("P01") == {"P01", "P0101", "P0102"}
    assert COURTS.subtree("P0201") == {"P0201"}
    assert COURTS.all() == {"P", "P01", "P02", "P0101", "P0102", "P0201"}


def test_officer_and_operator_scope_is_their_own_court_only() -> None:
    for role in (Role.OFFICER, Role.OPERATOR):
        who = identity(role, "P01")
        assert COURTS.scope(who) == {"P01"}
        assert not COURTS.in_scope(who, "P0101")
        assert not COURTS.in_scope(who, "P")


def test_supervisor_and_admin_scope_is_their_court_and_every_court_below() -> None:
    for role in (Role.SUPERVISOR, Role.ADMIN):
        who = identity(role, "P01")
        assert COURTS.scope(who) == {"P01", "P0101", "P0102"}
        assert COURTS.in_scope(who, "P0102")
        assert not COURTS.in_scope(who, "P02")
        assert not COURTS.in_scope(who, "P")


def test_auditor_scope_is_every_court() -> None:
    assert COURTS.scope(identity(Role.AUDITOR, "P0201")) == COURTS.all()


def test_courts_refuse_a_cycle() -> None:
    cycle = [CourtConfig("P", "p"), CourtConfig("A", "a", "B"), CourtConfig("B", "b", "A")]
    with pytest.raises(ValueError, match="cycle"):
        Courts(cycle)


# --- secret file and build_verifier ---------------------------------------------------------


def test_load_secret_prefers_the_configured_secret(tmp_path: Path) -> None:
    assert load_secret(AuthConfig(jwt_secret=SECRET), tmp_path) == SECRET
    assert not (tmp_path / "jwt_secret").exists()


def test_load_secret_generates_a_private_file_once_and_reuses_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "var"
    first = load_secret(AuthConfig(), data_dir)
    path = data_dir / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_secret(AuthConfig(), data_dir) == first
    assert path.read_text().strip() == first
    assert list(data_dir.iterdir()) == [path], "no temporary file is left behind"


def test_load_secret_refuses_a_short_secret_file(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text("short\n")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_secret(AuthConfig(), tmp_path)


def test_build_verifier_accepts_tokens_signed_with_the_data_dir_secret(tmp_path: Path) -> None:
    config = replace_section(Config(), "server", data_dir=str(tmp_path))
    v = build_verifier(config)
    secret = load_secret(config.auth, tmp_path)
    token = issue_token(
        secret, user="op", role=Role.OPERATOR, court="P02", name="op", ttl_s=60, now=NOW
    )
    assert v.verify(token, NOW).role is Role.OPERATOR


def test_build_verifier_reads_the_public_key_file_and_needs_no_secret(tmp_path: Path) -> None:
    """With ES256 only, the verifier uses the key file and creates no HS256 secret file."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem_path = tmp_path / "pub.pem"
    pem_path.write_text(public_pem(key))
    config = replace_section(Config(), "auth", algorithms=("ES256",), public_key_file=str(pem_path))
    config = replace_section(config, "server", data_dir=str(tmp_path / "var"))
    token = signed(claims(), key=key, algorithm="ES256")
    assert build_verifier(config).verify(token, NOW).user_id == "o1"
    assert not (tmp_path / "var").exists()


def test_build_verifier_reports_a_missing_public_key_file(tmp_path: Path) -> None:
    config = replace_section(
        Config(),
        "auth",
        algorithms=("ES256",),
        public_key_file=str(tmp_path / "absent.pem"),
    )
    with pytest.raises(ConfigError, match=re.escape("auth.public_key_file")):
        build_verifier(config)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer   abc ", "abc"),
        ("Bearer ", None),
        ("Basic dXNlcjpwdw==", None),
        ("", None),
        ("Bearerabc", None),
    ],
)
def test_bearer_token_is_taken_only_from_a_bearer_header(header: str, token: str | None) -> None:
    assert bearer_token(header) == token
