"""HTTPS and reverse proxies: the real server over TLS (a self-signed development certificate,
and a configured one), the sign-in cookie marked Secure there, and forwarded headers
believed only from configured proxies."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from commandcenter.account_api import COOKIE
from commandcenter.config import ConfigError, load_config
from commandcenter.proxies import client_address, networks
from commandcenter.tls import dev_certificate, fingerprint
from tests.browser import free_port
from tests.conftest import Serve
from tests.polling import wait_until
from tests.test_accounts import add_account as add

PASSWORD = "a password long enough"


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    return {**env, "COMMANDCENTER_SERVER_DATA_DIR": str(data_dir), **extra}


@pytest.fixture
def serve_tls(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(**extra: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        log = (tmp_path / f"server-{port}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "commandcenter", "serve", "--port", str(port)],
            env=env_for(tmp_path / "var", **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return f"https://127.0.0.1:{port}", proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def healthy(base: str, context: ssl.SSLContext) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/healthz", ssl=context) as resp,
        ):
            return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


def add_account(data_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "commandcenter", "user", "add", "--user", "o-1", "--name",
         "张警官", "--role", "officer", "--court", "P0101", "--password-stdin"],
        input=(PASSWORD + "\n").encode(), env=env_for(data_dir), check=True,
        capture_output=True, timeout=60,
    )  # fmt: skip


async def test_a_development_certificate_is_made_once_and_served_with_secure_cookies(
    serve_tls: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    add_account(data_dir)
    base, proc = serve_tls(COMMANDCENTER_SERVER_TLS_SELF_SIGNED="true")
    cert = data_dir / "tls" / "dev-cert.pem"
    await wait_until(cert.exists, within=20, what="cert made")
    trusting = ssl.create_default_context(cafile=str(cert))
    # The certificate names 127.0.0.1: the default hostname check passes.
    await wait_until(lambda: healthy(base, trusting), within=20, what="https healthy")
    assert oct((data_dir / "tls" / "dev-key.pem").stat().st_mode & 0o777) == "0o600"
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/session", json={"user": "o-1", "password": PASSWORD}, ssl=trusting
        ) as resp:
            assert resp.status == 200
            assert resp.cookies[COOKIE]["secure"]
        # Plain HTTP to the TLS port is not served.
        with pytest.raises(aiohttp.ClientError):
            async with http.get(base.replace("https", "http") + "/healthz") as plain:
                await plain.read()
    before = fingerprint(cert)
    proc.terminate()
    proc.wait(timeout=10)
    base2, _ = serve_tls(COMMANDCENTER_SERVER_TLS_SELF_SIGNED="true")
    await wait_until(lambda: healthy(base2, trusting), within=20, what="restarted")
    assert fingerprint(cert) == before


def make_cert(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_a_configured_certificate_is_served(serve_tls: Any, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    base, _ = serve_tls(
        COMMANDCENTER_SERVER_TLS_CERT_FILE=str(cert), COMMANDCENTER_SERVER_TLS_KEY_FILE=str(key)
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    await wait_until(lambda: healthy(base, trusting), within=20, what="https healthy")


def test_a_missing_certificate_stops_the_server_with_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "commandcenter", "serve", "--port", str(free_port())],
        env=env_for(
            tmp_path / "var",
            COMMANDCENTER_SERVER_TLS_CERT_FILE=str(tmp_path / "none.pem"),
            COMMANDCENTER_SERVER_TLS_KEY_FILE=str(tmp_path / "none-key.pem"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "none.pem: no such file" in done.stderr
    assert "Traceback" not in done.stderr


def test_tls_and_proxy_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="set both, or neither"):
        load_config(None, {"COMMANDCENTER_SERVER_TLS_CERT_FILE": "/x.pem"})
    with pytest.raises(ConfigError, match=r"server.trusted_proxies: 'nope'"):
        load_config(None, {"COMMANDCENTER_SERVER_TRUSTED_PROXIES": "10.0.0.1,nope"})
    cfg = load_config(None, {"COMMANDCENTER_SERVER_TRUSTED_PROXIES": "10.0.0.1, 10.1.0.0/16"})
    assert cfg.server.trusted_proxies == ("10.0.0.1", "10.1.0.0/16")


def test_the_client_is_the_right_most_address_that_is_not_a_proxy() -> None:
    trusted = networks(["10.0.0.0/8"])
    assert client_address("203.0.113.9, 10.0.0.7", trusted) == "203.0.113.9"
    # A client cannot push itself further left: the right-most untrusted hop is the client.
    assert client_address("1.2.3.4, 203.0.113.9, 10.0.0.7", trusted) == "203.0.113.9"
    assert client_address("not-an-ip, 10.0.0.7", trusted) is None
    assert client_address("10.0.0.9", trusted) is None
    assert client_address("x" * 2000, trusted) is None


async def sign_in_address(server: Any, headers: dict[str, str]) -> str:
    """The address the trace records for a failed sign-in sent with `headers`."""
    resp = await server.http.post(
        "/api/session", json={"user": "nobody", "password": "x" * 12}, headers=headers
    )
    assert resp.status == 401
    (failed,) = server.recorder.of_kind("account_sign_in_failed")[-1:]
    return str(failed.data["address"])


async def test_forwarded_headers_count_only_from_a_configured_proxy(serve: Serve) -> None:
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    untrusted = await serve()
    assert await sign_in_address(untrusted, headers) == "127.0.0.1"
    behind = await serve(server={"trusted_proxies": ("127.0.0.1",)})
    assert await sign_in_address(behind, headers) == "203.0.113.9"


async def test_behind_a_tls_proxy_the_sign_in_cookie_is_secure(serve: Serve) -> None:
    server = await serve(server={"trusted_proxies": ("127.0.0.0/8",)})
    await add(server)
    resp = await server.http.post(
        "/api/session",
        json={"user": "o-1", "password": "correct horse battery"},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert resp.status == 200
    assert resp.cookies[COOKIE]["secure"]
    plain = await server.http.post(
        "/api/session", json={"user": "o-1", "password": "correct horse battery"}
    )
    assert not plain.cookies[COOKIE]["secure"]


def test_the_development_certificate_names_the_listen_address(tmp_path: Path) -> None:
    cert, _ = dev_certificate(tmp_path, "192.0.2.10")
    sans = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    ips = {str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "192.0.2.10"} <= ips
