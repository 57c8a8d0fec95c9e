"""RFC 3161 time stamps for checkpoints: the request, the response, and checking a token.

A time-stamp authority (TSA) signs "this digest existed at this time" with a key of its own,
which a court trusts independently of us. A checkpoint's token stamps SHA-256 of its signed
bytes, so it shows that the trace's head was what the checkpoint says no later than the
token's time, whoever later holds the server's key.

Pure: bytes in, bytes or a verdict out; the HTTP exchange is `commandcenter.tsa_client`.
Only SHA-256 imprints are asked for; a token is accepted when its message imprint is the
digest asked about, its nonce the one sent (when checking a fresh response), the SignedData's
message-digest attribute the hash of its TSTInfo, and its signature verifies with the TSA's
certificate (RSA PKCS#1 v1.5, ECDSA or Ed25519 over SHA-256/384/512). The certificate's chain
and revocation are not checked here: the certificate is configured, i.e. trusted, explicitly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Final

from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from sessions.errors import TimestampError

# asn1crypto decodes lazily, as fields are read, and malformed DER surfaces as any of these
# (a Void where a value was expected is an AttributeError): all mean "not a token".
_MALFORMED: Final = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)
MEDIA_TYPE_QUERY: Final = "application/timestamp-query"
MEDIA_TYPE_REPLY: Final = "application/timestamp-reply"
MAX_RESPONSE_BYTES: Final = 64 * 1024
_HASHES: Final[dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class Stamp:
    """What a verified token says."""

    gen_time: dt.datetime
    serial_number: int
    policy: str


def request_bytes(digest: bytes, nonce: int) -> bytes:
    """A DER TimeStampReq for a SHA-256 `digest`, asking for the TSA's certificate."""
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    req = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return bytes(req.dump())


def token_of_response(response: bytes, digest: bytes, nonce: int) -> bytes:
    """The token (DER ContentInfo) of a TimeStampResp answering `request_bytes(digest,
    nonce)`. Raises TimestampError when it was refused or answers something else."""
    try:
        # The status first, on its own: asn1crypto's TimeStampResp insists on the token that
        # RFC 3161 leaves out of a refusal.
        outer = core.Sequence.load(response)
        info_of_status = tsp.PKIStatusInfo.load(outer[0].dump())
        status = info_of_status["status"].native
        if status not in ("granted", "granted_with_mods"):
            text = info_of_status["status_string"].native
            raise TimestampError(f"the TSA refused: {status} {' '.join(text or [])}".strip())
        token = tsp.TimeStampResp.load(response)["time_stamp_token"]
        if token.native is None:
            raise TimestampError("the TSA's answer holds no token")
        info = _tst_info(token)
        if info["nonce"].native != nonce:
            raise TimestampError("the token answers another request (nonce)")
        der = bytes(token.dump())
    except TimestampError:
        raise
    except _MALFORMED as exc:
        raise TimestampError(f"not a time-stamp response: {exc}") from None
    _check_imprint(info, digest)
    return der


def _tst_info(token: Any) -> Any:
    if token["content_type"].native != "signed_data":
        raise TimestampError("the token is not CMS SignedData")
    encap = token["content"]["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise TimestampError("the token does not hold a TSTInfo")
    return encap["content"].parsed


def _check_imprint(info: Any, digest: bytes) -> None:
    imprint = info["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].native != "sha256":
        raise TimestampError("the token stamps another hash algorithm than SHA-256")
    if imprint["hashed_message"].native != digest:
        raise TimestampError("the token stamps another digest")


def check_imprint_only(token: bytes, digest: bytes) -> None:
    """Without the TSA's certificate, only what a token stamps can be checked. Raises
    TimestampError."""
    try:
        info = _tst_info(cms.ContentInfo.load(token))
    except _MALFORMED as exc:
        raise TimestampError(f"not a time-stamp token: {exc}") from None
    _check_imprint(info, digest)


def load_certificate(data: bytes) -> x509.Certificate:
    """The TSA's certificate from PEM or DER. Raises TimestampError."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise TimestampError(f"not a certificate: {exc}") from None


def verify_token(token: bytes, digest: bytes, certificate: x509.Certificate) -> Stamp:
    """Check that `token` stamps `digest` and was signed by `certificate`'s key; what it
    says. Raises TimestampError."""
    try:
        info_obj = cms.ContentInfo.load(token)
        info = _tst_info(info_obj)
        _check_imprint(info, digest)
        signed = info_obj["content"]
        signers = signed["signer_infos"]
        if len(signers) != 1:
            raise TimestampError("the token has not exactly one signer")
        signer = signers[0]
        content = bytes(signed["encap_content_info"]["content"].contents)
        algorithm = signer["digest_algorithm"]["algorithm"].native
        if algorithm not in _HASHES:
            raise TimestampError(f"unsupported digest algorithm {algorithm}")
        attrs = signer["signed_attrs"]
        if not attrs:
            raise TimestampError("the token has no signed attributes")
        wanted = hashlib.new(algorithm, content).digest()
        found = [a["values"][0].native for a in attrs if a["type"].native == "message_digest"]
        if found != [wanted]:
            raise TimestampError("the token's message digest does not match its TSTInfo")
        # The signature covers the attributes DER-encoded as a SET (tag 0x31), not with the
        # [0] IMPLICIT tag they carry inside SignerInfo (RFC 5652 5.4).
        attrs_der = b"\x31" + bytes(attrs.dump())[1:]
        _verify_signature(
            certificate,
            bytes(signer["signature"].native),
            attrs_der,
            signer["signature_algorithm"].signature_algo,
            algorithm,
        )
        return Stamp(
            gen_time=info["gen_time"].native,
            serial_number=int(info["serial_number"].native),
            policy=str(info["policy"].native),
        )
    except TimestampError:
        raise
    except _MALFORMED as exc:
        raise TimestampError(f"not a time-stamp token: {exc}") from None


def _verify_signature(
    certificate: x509.Certificate, signature: bytes, data: bytes, kind: str, algorithm: str
) -> None:
    public = certificate.public_key()
    chosen = _HASHES[algorithm]()
    try:
        if isinstance(public, rsa.RSAPublicKey) and kind == "rsassa_pkcs1v15":
            public.verify(signature, data, padding.PKCS1v15(), chosen)
        elif isinstance(public, ec.EllipticCurvePublicKey) and kind == "ecdsa":
            public.verify(signature, data, ec.ECDSA(chosen))
        elif isinstance(public, ed25519.Ed25519PublicKey) and kind == "ed25519":
            public.verify(signature, data)
        else:
            raise TimestampError(f"the token's signature ({kind}) does not fit the certificate")
    except InvalidSignature:
        raise TimestampError(
            "the token's signature does not verify with the TSA certificate"
        ) from None


__all__ = [
    "MAX_RESPONSE_BYTES",
    "MEDIA_TYPE_QUERY",
    "MEDIA_TYPE_REPLY",
    "Stamp",
    "TimestampError",
    "check_imprint_only",
    "load_certificate",
    "request_bytes",
    "token_of_response",
    "verify_token",
]
