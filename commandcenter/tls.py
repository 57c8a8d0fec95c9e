"""HTTPS: a phone's browser gives camera, microphone and position only to a secure page.

Three ways to run, chosen by `[server]`:
- `tls_cert_file` and `tls_key_file` set: served over TLS with that certificate (production
  without a proxy);
- `tls_self_signed = true`: a development certificate is made on first start under
  `<data_dir>/tls/` (kept for the next starts) naming localhost, this host's name and its
  addresses, so that a phone on the same network can try the pages after accepting it once
  (its SHA-256 fingerprint is logged, to compare with what the phone shows);
- neither: plain HTTP, for loopback and for running behind a TLS-terminating reverse proxy
  (`trusted_proxies` then says whose forwarded headers count: `proxies.py`).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Final

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from commandcenter.config import Config, ConfigError

log = structlog.get_logger(__name__)

DEV_DIR: Final = "tls"
DEV_CERT: Final = "dev-cert.pem"
DEV_KEY: Final = "dev-key.pem"
DEV_DAYS: Final = 365


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context `config.server` asks for, or None for plain HTTP. Raises ConfigError
    naming the setting when a file cannot be used."""
    server = config.server
    if server.tls_cert_file:
        return _context(Path(server.tls_cert_file), Path(server.tls_key_file))
    if server.tls_self_signed:
        cert, key = dev_certificate(Path(server.data_dir), server.host)
        return _context(cert, key)
    return None


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl's own error names no file: say which one is missing.
    for setting, path in (("tls_cert_file", cert), ("tls_key_file", key)):
        if not path.is_file():
            raise ConfigError(f"server.{setting}: {path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        # The message names what is wrong (a key that does not match), never the key.
        raise ConfigError(
            f"server.tls_cert_file/tls_key_file: {cert}, {key}: cannot be used ({exc})"
        ) from None
    return context


def dev_certificate(data_dir: Path, host: str) -> tuple[Path, Path]:
    """The development certificate and key under `data_dir`, made now if missing."""
    folder = data_dir / DEV_DIR
    cert, key = folder / DEV_CERT, folder / DEV_KEY
    if not (cert.exists() and key.exists()):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _make(cert, key, _names(host))
        log.warning(
            "self-signed certificate made",
            cert_file=str(cert),
            fingerprint_sha256=fingerprint(cert),
            note="for development: a browser asks once to accept it",
        )
    return cert, key


def fingerprint(cert: Path) -> str:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    return loaded.fingerprint(hashes.SHA256()).hex(":").upper()


def _names(host: str) -> list[x509.GeneralName]:
    """localhost, this host's name, its addresses, and the listen address if it is one."""
    dns = {"localhost", socket.gethostname()}
    ips: set[str] = {"127.0.0.1", "::1"}
    with contextlib.suppress(OSError):
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(sockaddr[0]))
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(host).is_unspecified:
            ips.add(host)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(dns) if d]
    for ip in sorted(ips):
        with contextlib.suppress(ValueError):
            names.append(x509.IPAddress(ipaddress.ip_address(ip.split("%")[0])))
    return names


def _make(cert_path: Path, key_path: Path, names: list[x509.GeneralName]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "commandcenter development")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DEV_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is written private from its first byte.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


__all__ = ["dev_certificate", "fingerprint", "ssl_context"]
