"""RFC 3161 time stamps for checkpoints: the request, the response, and checking a token.

A time-stamp authority (TSA) signs "this digest existed at this time" with a key of its own,
which a court trusts independently of us. A checkpoint's token stamps SHA-256 of its signed
bytes, so it shows that the trace's head was what the checkpoint says no later than the
token's time, whoever later holds the server's key.

Pure: bytes in, bytes or a verdict out; the HTTP exchange is `commandcenter.tsa_client`.
Only SHA-256 imprints are asked for; a token is accepted when its message imprint is the
digest asked about, its nonce the one sent (when checking a fresh response), the SignedData's
message-digest attribute the hash of its TSTInfo, and its signature verifies with the TSA's
certificate (RSA PKCS#1 v1.5, ECDSA or Ed25519 over SHA-256/384/512).

Whom a signature is trusted from is a `TsaTrust`: a pinned certificate (trusted because it is
configured), roots the signer's certificate must chain to (the pinned one, or the one the token
carries: requests ask for it), or both. Against roots, the chain is built from the token's
certificates, checked at the token's own time (a TSA's certificate outlives none of its
tokens' checks otherwise), and the signer's certificate must carry the one critical extended
key usage RFC 3161 2.3 requires, timeStamping. Revocation is not checked: that needs the
CA's CRL or OCSP responder, which an offline audit cannot reach.
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
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

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


# A certificate file holds at most this many certificates (a roots bundle).
MAX_CERTIFICATES: Final = 64
# A chain longer than this is not a TSA's.
_MAX_CHAIN_DEPTH: Final = 6


@dataclass(frozen=True)
class TsaTrust:
    """Whom a token's signature is trusted from (see the module's docstring)."""

    certificate: x509.Certificate | None = None
    roots: tuple[x509.Certificate, ...] = ()

    @property
    def configured(self) -> bool:
        return self.certificate is not None or bool(self.roots)


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


def load_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle (or the one of a DER file). Raises TimestampError."""
    if b"-----BEGIN" not in data:
        return (load_certificate(data),)
    try:
        found = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise TimestampError(f"not a certificate: {exc}") from None
    if len(found) > MAX_CERTIFICATES:
        raise TimestampError(f"more than {MAX_CERTIFICATES} certificates")
    return found


def verify_token(token: bytes, digest: bytes, trust: TsaTrust | x509.Certificate) -> Stamp:
    """Check that `token` stamps `digest` and was signed by a key `trust` trusts (a bare
    certificate: that one, pinned); what it says. Raises TimestampError."""
    if isinstance(trust, x509.Certificate):
        trust = TsaTrust(certificate=trust)
    if not trust.configured:
        raise TimestampError("no TSA certificate or roots to verify the token with")
    try:
        info_obj = cms.ContentInfo.load(token)
        info = _tst_info(info_obj)
        _check_imprint(info, digest)
        signed = info_obj["content"]
        signers = signed["signer_infos"]
        if len(signers) != 1:
            raise TimestampError("the token has not exactly one signer")
        signer = signers[0]
        # A pinned certificate alone needs none of them.
        needed = trust.roots or trust.certificate is None
        carried = _carried_certificates(signed) if needed else []
        certificate = trust.certificate or _signer_certificate(signer, carried)
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
        stamp = Stamp(
            gen_time=info["gen_time"].native,
            serial_number=int(info["serial_number"].native),
            policy=str(info["policy"].native),
        )
    except TimestampError:
        raise
    except _MALFORMED as exc:
        raise TimestampError(f"not a time-stamp token: {exc}") from None
    if trust.roots:
        _verify_chain(certificate, carried, trust.roots, stamp.gen_time)
    return stamp


def _carried_certificates(signed: Any) -> list[x509.Certificate]:
    """The certificates a token carries (RFC 3161 asks for the signer's with `cert_req`)."""
    found: list[x509.Certificate] = []
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue  # attribute and other certificate formats: not a chain's links
        if len(found) == MAX_CERTIFICATES:
            raise TimestampError(f"the token carries more than {MAX_CERTIFICATES} certificates")
        try:
            found.append(x509.load_der_x509_certificate(bytes(choice.chosen.dump())))
        except ValueError as exc:
            raise TimestampError(f"the token carries a bad certificate: {exc}") from None
    return found


def _signer_certificate(signer: Any, carried: list[x509.Certificate]) -> x509.Certificate:
    """The carried certificate the SignerInfo names (issuer and serial, or key identifier)."""
    sid = signer["sid"]
    for cert in carried:
        if sid.name == "issuer_and_serial_number":
            named = sid.chosen
            if cert.serial_number == named[
                "serial_number"
            ].native and cert.issuer.public_bytes() == bytes(named["issuer"].dump()):
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == bytes(sid.chosen.native):
                return cert
    raise TimestampError("the token does not carry its signer's certificate")


def _only_time_stamping(
    policy: object, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    if eku is None or list(eku) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ValueError("extended key usage is not timeStamping alone")


def _verify_chain(
    certificate: x509.Certificate,
    carried: list[x509.Certificate],
    roots: tuple[x509.Certificate, ...],
    at: dt.datetime,
) -> None:
    """`certificate` chains to one of `roots` through carried ones, all valid at `at`, and
    is a TSA's (RFC 3161 2.3: one critical extended key usage, timeStamping)."""
    ee = ExtensionPolicy.permit_all().require_present(
        x509.ExtendedKeyUsage, Criticality.CRITICAL, _only_time_stamping
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(at)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(ee_policy=ee, ca_policy=ExtensionPolicy.webpki_defaults_ca())
        .build_client_verifier()
    )
    intermediates = [c for c in carried if c != certificate]
    try:
        verifier.verify(certificate, intermediates)
    except VerificationError as exc:
        raise TimestampError(f"the TSA certificate is not trusted: {exc}") from None


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
    "MAX_CERTIFICATES",
    "MAX_RESPONSE_BYTES",
    "MEDIA_TYPE_QUERY",
    "MEDIA_TYPE_REPLY",
    "Stamp",
    "TimestampError",
    "TsaTrust",
    "check_imprint_only",
    "load_certificate",
    "load_certificates",
    "request_bytes",
    "token_of_response",
    "verify_token",
]
