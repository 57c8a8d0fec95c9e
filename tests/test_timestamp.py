"""RFC 3161 time stamps of checkpoints, against a real TSA the test starts on 127.0.0.1
(tests/tsahelpers.py): a token stamps the checkpoint's digest and verifies with the TSA's
certificate, and nothing else does; the server's checkpoints carry one and `audit verify`
reads its time, and so does an exported bundle's; a TSA that refuses or is gone costs the
token, not the checkpoint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.cli import main
from commandcenter.keys import TRACE
from commandcenter.tsa_client import timestamper
from sessions.checkpoint import Checkpoint
from sessions.errors import TimestampError
from sessions.export import check_bundle
from sessions.timestamp import TsaTrust, request_bytes, token_of_response, verify_token
from tests.conftest import make_config
from tests.evidencehelpers import CASE, start_api, uploaded
from tests.polling import wait_until
from tests.test_serve import free_port
from tests.tsahelpers import KeyAndCert, LocalTsa, make_certificate, make_root, start_tsa

DIGEST = hashlib.sha256(b"a checkpoint's signed bytes").digest()
# The province's time-stamping root; the `tsa` fixture's certificate is issued by it.
ROOT = make_root()
_KEY, CERT = make_certificate()
# A token of a TSA of its own, made once for the property tests.
TOKEN = token_of_response(LocalTsa(_KEY, CERT).respond(request_bytes(DIGEST, 7)), DIGEST, 7)


@pytest.fixture
async def tsa() -> AsyncIterator[LocalTsa]:
    server, runner = await start_tsa(make_certificate(ROOT))
    try:
        yield server
    finally:
        await runner.cleanup()


def fresh_token(tsa: LocalTsa, digest: bytes = DIGEST, nonce: int = 7) -> bytes:
    return token_of_response(tsa.respond(request_bytes(digest, nonce)), digest, nonce)


def test_a_token_verifies_with_the_tsa_certificate_and_gives_its_time() -> None:
    key, cert = make_certificate()
    stamp = verify_token(fresh_token(LocalTsa(key, cert)), DIGEST, cert)
    assert stamp.gen_time.tzinfo is not None
    assert stamp.serial_number == 1


def test_a_changed_token_another_digest_or_another_certificate_is_refused() -> None:
    key, cert = make_certificate()
    token = fresh_token(LocalTsa(key, cert))
    flipped = bytearray(token)
    flipped[-3] ^= 0x01
    with pytest.raises(TimestampError, match="signature does not verify"):
        verify_token(bytes(flipped), DIGEST, cert)
    with pytest.raises(TimestampError, match="another digest"):
        verify_token(token, hashlib.sha256(b"else").digest(), cert)
    _, stranger = make_certificate()
    with pytest.raises(TimestampError, match="signature does not verify"):
        verify_token(token, DIGEST, stranger)
    with pytest.raises(TimestampError, match="not a time-stamp token"):
        verify_token(b"\x30\x03\x02\x01\x01", DIGEST, cert)


def test_a_refusal_or_an_answer_to_another_request_is_refused() -> None:
    key, cert = make_certificate()
    tsa = LocalTsa(key, cert)
    answer = tsa.respond(request_bytes(DIGEST, 1))
    with pytest.raises(TimestampError, match="nonce"):
        token_of_response(answer, DIGEST, 2)
    with pytest.raises(TimestampError, match="another digest"):
        token_of_response(answer, hashlib.sha256(b"else").digest(), 1)
    tsa.refuse = True
    with pytest.raises(TimestampError, match="refused"):
        token_of_response(tsa.respond(request_bytes(DIGEST, 1)), DIGEST, 1)
    with pytest.raises(TimestampError, match="not a time-stamp response"):
        token_of_response(b"not DER", DIGEST, 1)


async def test_the_client_gets_a_verified_token_over_http(tsa: LocalTsa) -> None:
    token = await timestamper(tsa.url, 5.0, TsaTrust(certificate=tsa.cert))(DIGEST)
    assert verify_token(token, DIGEST, tsa.cert).serial_number == 1
    assert len(tsa.requests) == 1


def test_against_roots_the_token_s_own_certificate_is_checked_at_the_token_s_time() -> None:
    """With roots and no pinned certificate, the certificate the token carries must chain
    to a root, be valid when the token was made, and be a TSA's (timeStamping alone)."""
    roots = TsaTrust(roots=(ROOT[1],))
    stamp = verify_token(fresh_token(LocalTsa(*make_certificate(ROOT))), DIGEST, roots)
    assert stamp.serial_number == 1
    # Pinned and chained: both must hold.
    key, cert = make_certificate(ROOT)
    both = TsaTrust(certificate=cert, roots=(ROOT[1],))
    assert verify_token(fresh_token(LocalTsa(key, cert)), DIGEST, both).serial_number == 1


@pytest.mark.parametrize(
    "certificate",
    [
        pytest.param(lambda: make_certificate(make_root("another CA")), id="another CA's"),
        pytest.param(make_certificate, id="self-signed"),
        pytest.param(
            lambda: make_certificate(ROOT, usage=ExtendedKeyUsageOID.SERVER_AUTH),
            id="not a TSA's",
        ),
        pytest.param(lambda: make_certificate(ROOT, valid=(-10.0, -1.0)), id="expired"),
        pytest.param(lambda: make_certificate(ROOT, valid=(1.0, 30.0)), id="not yet valid"),
    ],
)
def test_against_roots_a_token_of_an_untrusted_certificate_is_refused(
    certificate: Callable[[], KeyAndCert],
) -> None:
    token = fresh_token(LocalTsa(*certificate()))
    with pytest.raises(TimestampError, match="the TSA certificate is not trusted"):
        verify_token(token, DIGEST, TsaTrust(roots=(ROOT[1],)))


def test_a_token_without_its_certificate_verifies_only_against_a_pinned_one() -> None:
    key, cert = make_certificate(ROOT)
    token = token_of_response(
        LocalTsa(key, cert).respond(request_bytes_without_certificate(DIGEST, 3)), DIGEST, 3
    )
    with pytest.raises(TimestampError, match="does not carry its signer's certificate"):
        verify_token(token, DIGEST, TsaTrust(roots=(ROOT[1],)))
    pinned = TsaTrust(certificate=cert, roots=(ROOT[1],))
    assert verify_token(token, DIGEST, pinned).serial_number == 1
    with pytest.raises(TimestampError, match="no TSA certificate or roots"):
        verify_token(token, DIGEST, TsaTrust())


def request_bytes_without_certificate(digest: bytes, nonce: int) -> bytes:
    from asn1crypto import tsp

    req = tsp.TimeStampReq.load(request_bytes(digest, nonce))
    req["cert_req"] = False
    return bytes(req.dump(force=True))


async def test_the_client_verifies_against_roots_alone(tsa: LocalTsa) -> None:
    token = await timestamper(tsa.url, 5.0, TsaTrust(roots=(ROOT[1],)))(DIGEST)
    assert verify_token(token, DIGEST, TsaTrust(roots=(ROOT[1],))).serial_number == 1
    with pytest.raises(TimestampError, match="not trusted"):
        await timestamper(tsa.url, 5.0, TsaTrust(roots=(make_root()[1],)))(DIGEST)


async def test_the_client_reports_an_unreachable_tsa_as_a_timestamp_error() -> None:
    stamp = timestamper(f"http://127.0.0.1:{free_port()}/tsa", 2.0, TsaTrust())
    with pytest.raises(TimestampError, match="could not be reached"):
        await stamp(DIGEST)


async def test_server_checkpoints_carry_a_token_that_audit_verify_checks(
    aiohttp_client: AiohttpClient,
    tsa: LocalTsa,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert = tsa.certificate_file(tmp_path)
    audit = {"tsa_url": tsa.url, "tsa_certificate_file": str(cert)}
    config = make_config(tmp_path / "var", audit=audit, media={"enabled": False})
    app = create_app(config)
    client = await aiohttp_client(app)

    async def stamped() -> bool:
        return any(c.tsa_token for c in await app[TRACE].checkpoints())

    await wait_until(stamped, what="a time-stamped start checkpoint")
    (cp,) = await app[TRACE].checkpoints()
    token = cp.token_der()
    assert token is not None
    verify_token(token, cp.digest(), tsa.cert)
    await client.close()

    for name in list(os.environ):
        if name.startswith("COMMANDCENTER_"):
            monkeypatch.delenv(name)
    conf = tmp_path / "config.toml"
    conf.write_text(
        f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[audit]\ntsa_url = "{tsa.url}"\ntsa_certificate_file = "{cert}"\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["audit", "verify", "--config", str(conf)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["checkpoint"]["timestamped"] is True
    assert summary["checkpoint"]["tsa_time"] is not None
    _, stranger = make_certificate()
    other = tmp_path / "other.pem"
    from cryptography.hazmat.primitives import serialization

    other.write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    code = await asyncio.to_thread(
        main, ["audit", "verify", "--config", str(conf), "--tsa-certificate", str(other)]
    )
    _, err = capsys.readouterr()
    assert code == 1
    assert "time stamp: the token's signature does not verify" in err

    roots = tmp_path / "roots.pem"
    roots.write_bytes(ROOT[1].public_bytes(serialization.Encoding.PEM))
    code = await asyncio.to_thread(
        main, ["audit", "verify", "--config", str(conf), "--tsa-roots", str(roots)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["checkpoint"]["tsa_time"] is not None
    strangers = tmp_path / "strangers.pem"
    strangers.write_bytes(make_root("another CA")[1].public_bytes(serialization.Encoding.PEM))
    code = await asyncio.to_thread(
        main, ["audit", "verify", "--config", str(conf), "--tsa-roots", str(strangers)]
    )
    _, err = capsys.readouterr()
    assert code == 1
    assert "time stamp: the TSA certificate is not trusted" in err


async def test_a_refusing_tsa_costs_the_token_not_the_checkpoint(
    aiohttp_client: AiohttpClient, tsa: LocalTsa, tmp_path: Path
) -> None:
    tsa.refuse = True
    config = make_config(tmp_path / "var", audit={"tsa_url": tsa.url}, media={"enabled": False})
    app = create_app(config)
    await aiohttp_client(app)

    async def written() -> bool:
        return bool(await app[TRACE].checkpoints())

    await wait_until(written, what="the start checkpoint, without a token")
    (cp,) = await app[TRACE].checkpoints()
    assert cp.tsa_token is None
    assert len(tsa.requests) == 1


async def test_a_tsa_that_hangs_is_given_up_after_tsa_timeout_s(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    released = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        # Until the test ends (the runner's cleanup waits for its handlers to finish).
        await released.wait()
        return web.Response()

    slow = web.Application()
    slow.router.add_post("/tsa", hang)
    runner = web.AppRunner(slow)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tsa"
    try:
        audit = {"tsa_url": url, "tsa_timeout_s": 0.3}
        config = make_config(tmp_path / "var", audit=audit, media={"enabled": False})
        app = create_app(config)
        await aiohttp_client(app)

        async def written() -> bool:
            return bool(await app[TRACE].checkpoints())

        await wait_until(written, within=5.0, what="the start checkpoint despite the TSA")
        assert (await app[TRACE].checkpoints())[0].tsa_token is None
    finally:
        released.set()
        await runner.cleanup()


async def test_an_exported_bundle_carries_its_time_stamped_export_checkpoint(
    aiohttp_client: AiohttpClient, tsa: LocalTsa, tmp_path: Path
) -> None:
    api = await start_api(aiohttp_client, tmp_path, audit={"tsa_url": tsa.url})
    await uploaded(api, "o1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env["COMMANDCENTER_SERVER_DATA_DIR"] = api.config.server.data_dir
    env["COMMANDCENTER_AUDIT_TSA_URL"] = tsa.url
    bundle = tmp_path / "bundle"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "commandcenter", "evidence", "export", "--case", CASE, "--out", str(bundle)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, err) == (0, b"")
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    cp = Checkpoint.from_json(manifest["checkpoint"])
    token = cp.token_der()
    assert token is not None
    verify_token(token, cp.digest(), tsa.cert)
    assert check_bundle(bundle).ok


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_any_bytes_are_a_token_or_a_timestamp_error(data: bytes) -> None:
    """A token comes from a TSA or a bundle: reading one never fails any other way."""
    with pytest.raises(TimestampError):
        verify_token(data, DIGEST, CERT)
    with pytest.raises(TimestampError):
        token_of_response(data, DIGEST, 1)


@given(st.integers(0, 2000), st.integers(0, 255))
@settings(max_examples=200)
def test_a_token_with_any_byte_changed_is_refused_or_still_stamps_the_same(
    at: int, value: int
) -> None:
    """Flipping any byte of a real token never makes it vouch for something else."""
    token = bytearray(TOKEN)
    position = at % len(token)
    if token[position] == value:
        return
    token[position] = value
    try:
        stamp = verify_token(bytes(token), DIGEST, CERT)
    except TimestampError:
        return
    # Unsigned parts (the certificates bag, say) may change without consequence.
    assert stamp.serial_number == 1
