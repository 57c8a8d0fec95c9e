"""A tiny RFC 3161 time-stamp authority for the tests: a self-made certificate (EC P-256,
extended key usage timeStamping) and an aiohttp server on 127.0.0.1 that answers
`application/timestamp-query` POSTs with signed tokens, built with asn1crypto. `refuse`
makes it answer `rejection`; every request it got is kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY = "1.3.6.1.4.1.99999.1"


KeyAndCert = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_root(common_name: str = "commandcenter test root CA") -> KeyAndCert:
    """A self-signed CA certificate, as a province's trusted time-stamping root."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_certificate(
    issuer: KeyAndCert | None = None,
    *,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.TIME_STAMPING,
    valid: tuple[float, float] = (-1.0, 30.0),
) -> KeyAndCert:
    """A TSA's certificate (EC P-256, one critical extended key usage, `usage`), valid
    from/until `valid` days around now: self-signed, or issued by `issuer`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("commandcenter test TSA")
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if issuer is None else issuer[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid[0]))
        .not_valid_after(now + dt.timedelta(days=valid[1]))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key()),
            critical=False,
        )
    cert = builder.sign(key if issuer is None else issuer[0], hashes.SHA256())
    return key, cert


@dataclass
class LocalTsa:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    url: str = ""
    refuse: bool = False
    requests: list[bytes] = field(default_factory=list)
    _serials: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def certificate_file(self, directory: Path) -> Path:
        path = directory / "tsa.pem"
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def respond(self, query: bytes) -> bytes:
        self.requests.append(query)
        req = tsp.TimeStampReq.load(query)
        if self.refuse:
            # A TimeStampResp of its status alone: asn1crypto's class insists on the token
            # that RFC 3161 makes optional, so the SEQUENCE is put together by hand.
            status: bytes = tsp.PKIStatusInfo(
                {"status": "rejection", "status_string": ["refused by the test"]}
            ).dump()
            return b"\x30" + bytes([len(status)]) + status
        info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": POLICY,
                "message_imprint": req["message_imprint"],
                "serial_number": next(self._serials),
                "gen_time": dt.datetime.now(dt.UTC).replace(microsecond=0),
                "nonce": req["nonce"].native,
            }
        )
        info_der = info.dump()
        attrs = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                cms.CMSAttribute(
                    {"type": "message_digest", "values": [hashlib.sha256(info_der).digest()]}
                ),
            ]
        )
        signature = self.key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))
        cert = asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                            {"issuer": cert.issuer, "serial_number": cert.serial_number}
                        )
                    }
                ),
                "digest_algorithm": {"algorithm": "sha256"},
                "signed_attrs": attrs,
                "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                "signature": signature,
            }
        )
        signed = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [{"algorithm": "sha256"}],
                "encap_content_info": {"content_type": "tst_info", "content": info},
                "certificates": [cert] if req["cert_req"].native else [],
                "signer_infos": [signer],
            }
        )
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
        resp = tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
        return bytes(resp.dump())

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_type != "application/timestamp-query":
            return web.Response(status=415)
        body = self.respond(await request.read())
        return web.Response(body=body, content_type="application/timestamp-reply")


async def start_tsa(key_and_cert: KeyAndCert | None = None) -> tuple[LocalTsa, web.AppRunner]:
    """A TSA (self-signed, or with the key and certificate given) listening on a free
    loopback port; clean up the runner when done."""
    key, cert = key_and_cert or make_certificate()
    tsa = LocalTsa(key, cert)
    app = web.Application()
    app.router.add_post("/tsa", tsa.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    tsa.url = f"http://127.0.0.1:{port}/tsa"
    return tsa, runner
