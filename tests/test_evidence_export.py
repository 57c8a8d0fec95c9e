"""`commandcenter evidence export` and `evidence verify`, run as real processes against the
trace and evidence files a real app wrote; a bundle (format 2) is signed and commits to the
chain head it was cut from, so an item dropped or a correction hidden fails offline."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_aiohttp import AiohttpClient

from commandcenter.config import audit_key_path
from commandcenter.keys import TRACE
from commandcenter.stores import sqlite_path
from sessions import evidence as ev
from sessions.checkpoint import Checkpoint, key_id, public_pem, sign, sign_bytes, signature_ok
from sessions.checkpoint_files import load_public_key, public_key_path
from sessions.export import BUNDLE_FORMAT, check_bundle
from tests.evidencehelpers import CASE, PHOTO, Api, correct, sha, start_api, uploaded

OTHER = os.urandom(3000)


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, tmp_path: Path) -> Api:
    return await start_api(aiohttp_client, tmp_path)


async def cli(api: Api, *argv: str) -> tuple[int, str, str]:
    """Run `python -m commandcenter ARGV` on the app's data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env["COMMANDCENTER_SERVER_DATA_DIR"] = api.config.server.data_dir
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commandcenter",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def case_with_history(api: Api) -> dict[str, str]:
    """Two items in CASE (one corrected, read and downloaded), a refused attempt at CASE, and
    an item of another case that must stay out of the bundle."""
    photo = await uploaded(api, "o1")
    doc = await uploaded(
        api, "o1", OTHER, kind="document", content_type="application/pdf", file_name="a.pdf"
    )
    resp = await correct(
        api,
        photo["evidence_id"],
        "s1",
        "supervisor",
        "P01",
        {"changes": {"file_name": "scene.jpg"}, "reason": "officer's naming"},
    )
    assert resp.status == 201
    assert (await api.get(f"/api/evidence/{photo['evidence_id']}/content", "o1")).status == 200
    refused = await api.upload("o1", sha256=sha(b"not these bytes"))
    assert refused.status == 422
    elsewhere = await uploaded(api, "o1", b"other case", case="C-OTHER")
    return {
        "photo": photo["evidence_id"],
        "doc": doc["evidence_id"],
        "other": elsewhere["evidence_id"],
    }


def read_records(bundle: Path) -> list[dict[str, Any]]:
    lines = (bundle / "records.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


async def test_an_exported_bundle_holds_the_case_and_verifies_alone_and_against_the_chain(
    api: Api, tmp_path: Path
) -> None:
    ids = await case_with_history(api)
    bundle = tmp_path / "bundle"
    code, out, err = await cli(api, "evidence", "export", "--case", CASE, "--out", str(bundle))
    assert (code, err) == (0, "")
    summary = json.loads(out)
    assert (summary["case_number"], summary["items"]) == (CASE, 2)

    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == BUNDLE_FORMAT
    assert manifest["case_number"] == CASE
    items = {i["evidence_id"]: i for i in manifest["items"]}
    assert set(items) == {ids["photo"], ids["doc"]}
    # Current metadata: the correction applied.
    assert items[ids["photo"]]["metadata"]["file_name"] == "scene.jpg"
    assert items[ids["photo"]]["metadata"]["sha256"] == sha(PHOTO)
    assert sorted(p.name for p in (bundle / "originals").iterdir()) == sorted(
        [sha(PHOTO), sha(OTHER)]
    )
    assert (bundle / "originals" / sha(PHOTO)).read_bytes() == PHOTO
    assert (bundle / "VERIFY.txt").read_text(encoding="utf-8").count("--anchor") == len(
        manifest["anchors"]
    )

    records = read_records(bundle)
    kinds = [r["kind"] for r in records]
    assert kinds.count(ev.STORED) == 2
    assert kinds.count(ev.CORRECTED) == 1
    assert kinds.count(ev.DOWNLOADED) == 1
    assert kinds.count(ev.REJECTED) == 1
    assert kinds.count(ev.EXPORTED) == 2
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert all(ids["other"] not in r["data"] for r in records)
    # The export itself is in the trace, once per item.
    exported = await api.app[TRACE].find(kinds=[ev.EXPORTED])
    assert {r.data["evidence_id"] for r in exported} == {ids["photo"], ids["doc"]}

    code, out, err = await cli(api, "evidence", "verify", str(bundle), "--chain")
    assert (code, err) == (0, ""), out
    result = json.loads(out)
    assert result["ok"] is True
    assert (result["items"], result["records"]) == (2, len(records))
    assert result["chain"]["ok"] is True


def tamper(bundle: Path, what: str) -> None:
    if what == "original":
        path = bundle / "originals" / sha(PHOTO)
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[10] ^= 1
        path.write_bytes(bytes(data))
    elif what == "record":
        lines = (bundle / "records.jsonl").read_text(encoding="utf-8").splitlines()
        record = json.loads(lines[0])
        record["data"] = record["data"].replace("o1", "o2")
        lines[0] = json.dumps(record, ensure_ascii=False)
        (bundle / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif what == "metadata":
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
        manifest["items"][0]["metadata"]["capture_time"] += 3_600_000
        (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    elif what == "missing":
        (bundle / "originals" / sha(PHOTO)).unlink()


@pytest.mark.parametrize(
    ("what", "problem"),
    [
        ("original", "original does not match its sha256"),
        ("record", "content does not match its hash"),
        ("metadata", "metadata differs from its records"),
        ("missing", "is missing"),
    ],
)
async def test_a_tampered_bundle_fails_verification_naming_what(
    api: Api, tmp_path: Path, what: str, problem: str
) -> None:
    await case_with_history(api)
    bundle = tmp_path / "bundle"
    code, _, _ = await cli(api, "evidence", "export", "--case", CASE, "--out", str(bundle))
    assert code == 0
    assert check_bundle(bundle).ok
    tamper(bundle, what)
    check = check_bundle(bundle)
    assert not check.ok
    assert any(problem in p for p in check.problems), check.problems


async def test_verify_with_chain_detects_a_bundled_record_edited_in_the_trace(
    api: Api, tmp_path: Path
) -> None:
    """The bundle is intact, but the trace no longer holds what it vouched for."""
    await case_with_history(api)
    bundle = tmp_path / "bundle"
    code, _, _ = await cli(api, "evidence", "export", "--case", CASE, "--out", str(bundle))
    assert code == 0
    (stored,) = [r for r in read_records(bundle) if r["kind"] == ev.STORED][:1]
    db = sqlite3.connect(sqlite_path(api.config))
    with db:
        db.execute(
            "UPDATE trace SET data = replace(data, '\"o1\"', '\"o7\"') WHERE seq = ?",
            (stored["seq"],),
        )
    db.close()
    code, out, err = await cli(api, "evidence", "verify", str(bundle), "--chain")
    assert code == 1
    result = json.loads(out)
    assert result["chain"]["ok"] is False
    assert f"record {stored['seq']}" in err


async def test_export_refuses_an_unknown_case_and_a_non_empty_directory(
    api: Api, tmp_path: Path
) -> None:
    await uploaded(api, "o1")
    code, out, err = await cli(
        api, "evidence", "export", "--case", "NOPE", "--out", str(tmp_path / "b1")
    )
    assert (code, out) == (2, "")
    assert "has no evidence" in err
    assert not (tmp_path / "b1").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, out, err = await cli(api, "evidence", "export", "--case", CASE, "--out", str(full))
    assert (code, out) == (2, "")
    assert "not an empty directory" in err
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]


def test_hashes_in_the_bundle_use_the_documented_rule() -> None:
    """VERIFY.txt's rule, followed by hand, gives the hash the chain stores."""
    from sessions.trace import GENESIS_HASH, canonical, chain_hash

    content = canonical(1, 5, "evidence_stored", '{"a":1}')
    assert content == b'{"at_us":5,"data":{"a":1},"kind":"evidence_stored","seq":1}'
    by_hand = hashlib.sha256(bytes.fromhex(GENESIS_HASH) + content).hexdigest()
    assert chain_hash(GENESIS_HASH, content) == by_hand


# --- bundle format 2: signed, complete (issue 15) -------------------------------------------


async def exported(api: Api, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    ids = await case_with_history(api)
    bundle = tmp_path / "bundle"
    code, _, err = await cli(api, "evidence", "export", "--case", CASE, "--out", str(bundle))
    assert (code, err) == (0, "")
    assert check_bundle(bundle).ok, check_bundle(bundle).problems
    return bundle, ids


def manifest_of(bundle: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return data


def write_manifest(bundle: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (bundle / "manifest.json").write_text(text, encoding="utf-8")


def write_records(bundle: Path, records: list[dict[str, Any]]) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    (bundle / "records.jsonl").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")


async def test_the_manifest_commits_to_the_head_and_checkpoint_it_was_cut_from(
    api: Api, tmp_path: Path
) -> None:
    bundle, _ = await exported(api, tmp_path)
    manifest = manifest_of(bundle)
    head = await api.app[TRACE].head()
    # The export's own records come last before its checkpoint; the server may add more.
    assert manifest["chain"]["head_seq"] <= head.seq
    cp = Checkpoint.from_json(manifest["checkpoint"])
    assert (cp.seq, cp.hash, cp.reason) == (
        manifest["chain"]["head_seq"],
        manifest["chain"]["head_hash"],
        "export",
    )
    assert any(c == cp for c in await api.app[TRACE].checkpoints())
    public = load_public_key(bundle / "checkpoint.pub")
    assert signature_ok(cp, public)
    assert manifest["key_id"] == key_id(public)
    assert manifest["record_seqs"] == [r["seq"] for r in read_records(bundle)]
    assert f"{cp.seq}:{cp.hash}" in manifest["anchors"]


async def test_an_item_dropped_from_the_bundle_fails_offline(api: Api, tmp_path: Path) -> None:
    bundle, ids = await exported(api, tmp_path)
    records = read_records(bundle)
    kept = [r for r in records if ids["doc"] not in r["data"]]
    write_records(bundle, kept)
    (bundle / "originals" / sha(OTHER)).chmod(0o644)
    (bundle / "originals" / sha(OTHER)).unlink()
    check = check_bundle(bundle)
    assert not check.ok
    dropped = sorted({r["seq"] for r in records} - {r["seq"] for r in kept})
    assert f"record {dropped[0]}: listed in the manifest, missing from records.jsonl" in (
        check.problems
    )
    # Dropped from the manifest as well: the manifest no longer has its signature.
    manifest = manifest_of(bundle)
    manifest["items"] = [i for i in manifest["items"] if i["evidence_id"] != ids["doc"]]
    manifest["record_seqs"] = [r["seq"] for r in kept]
    manifest["anchors"] = [a for a in manifest["anchors"] if int(a.split(":")[0]) not in dropped]
    write_manifest(bundle, manifest)
    code, out, err = await cli(api, "evidence", "verify", str(bundle))
    assert code == 1
    assert json.loads(out)["ok"] is False
    assert "manifest.sig: the manifest was changed after export" in err


async def test_a_hidden_correction_fails_offline(api: Api, tmp_path: Path) -> None:
    bundle, ids = await exported(api, tmp_path)
    records = read_records(bundle)
    (correction,) = [r for r in records if r["kind"] == ev.CORRECTED]
    write_records(bundle, [r for r in records if r is not correction])
    check = check_bundle(bundle)
    assert f"record {correction['seq']}: listed in the manifest, missing from records.jsonl" in (
        check.problems
    )
    # And the manifest made to match, the item's metadata as before the correction.
    manifest = manifest_of(bundle)
    (photo,) = [i for i in manifest["items"] if i["evidence_id"] == ids["photo"]]
    photo["correction_seqs"] = []
    photo["metadata"]["file_name"] = "IMG_0001.jpg"
    manifest["record_seqs"].remove(correction["seq"])
    write_manifest(bundle, manifest)
    problems = check_bundle(bundle).problems
    assert any(p.startswith("manifest.sig: the manifest was changed") for p in problems)
    # A correction bundled but left out of the item's metadata is named as well.
    write_records(bundle, records)
    manifest["record_seqs"] = [r["seq"] for r in records]
    write_manifest(bundle, manifest)
    problems = check_bundle(bundle).problems
    assert f"item {ids['photo']}: correction {correction['seq']} is not applied" in (
        " ".join(problems)
    )


async def test_a_tampered_manifest_fails_its_signature_and_another_key_is_refused(
    api: Api, tmp_path: Path
) -> None:
    bundle, _ = await exported(api, tmp_path)
    text = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.json").write_bytes(text.replace(b'"exported_at": ', b'"exported_at": 1'))
    assert any(p.startswith("manifest.sig") for p in check_bundle(bundle).problems)
    (bundle / "manifest.json").write_bytes(text)
    assert check_bundle(bundle).ok
    # Re-signed, checkpoint and all, by someone else's key: only a pinned key tells.
    forger = Ed25519PrivateKey.generate()
    manifest = manifest_of(bundle)
    cp = Checkpoint.from_json(manifest["checkpoint"])
    manifest["checkpoint"] = sign(
        forger, cp.head, now=cp.at_us / 1e6, node=cp.node, reason="export"
    ).to_json()
    write_manifest(bundle, manifest)
    body = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.sig").write_text(sign_bytes(forger, body))
    (bundle / "checkpoint.pub").write_bytes(public_pem(forger.public_key()))
    assert check_bundle(bundle).key_id == key_id(forger.public_key())
    server_key = public_key_path(audit_key_path(api.config))
    code, _, err = await cli(
        api, "evidence", "verify", str(bundle), "--public-key", str(server_key)
    )
    assert code == 1
    assert "checkpoint.pub: not the key given" in err
    assert "checkpoint: signature does not verify" in err
    # With --chain, the server's own key is the one checked against.
    code, _, err = await cli(api, "evidence", "verify", str(bundle), "--chain")
    assert code == 1
    assert "checkpoint.pub: not the key given" in err


async def test_a_format_1_bundle_is_refused_with_a_clear_reason(api: Api, tmp_path: Path) -> None:
    bundle, _ = await exported(api, tmp_path)
    manifest = manifest_of(bundle)
    manifest["format"] = "commandcenter-evidence-bundle/1"
    write_manifest(bundle, manifest)
    (problem,) = check_bundle(bundle).problems
    assert "not signed and cannot show they are complete; export the case again" in problem


BAD_VALUES: list[object] = [None, True, 7, -1.5, "x", "\x00", [], [None], [[1]], {}, {"a": [1]}]


async def test_any_manifest_or_record_content_gives_problems_never_a_crash(
    api: Api, tmp_path: Path
) -> None:
    """A bundle is input from outside: whatever it holds, verification answers problems."""
    bundle, _ = await exported(api, tmp_path)
    manifest = manifest_of(bundle)
    records = read_records(bundle)
    for key in [*manifest, "items.0", "items.0.correction_seqs", "items.0.original"]:
        for value in BAD_VALUES:
            changed = json.loads(json.dumps(manifest))
            if key.startswith("items.0"):
                _, _, field = key.partition("items.0")
                if field:
                    changed["items"][0][field.lstrip(".")] = value
                else:
                    changed["items"][0] = value
            else:
                changed[key] = value
            write_manifest(bundle, changed)
            check = check_bundle(bundle)
            assert not check.ok, (key, value)
    write_manifest(bundle, manifest)
    for key in records[0]:
        for value in [*BAD_VALUES, 1e300, float("inf")]:
            write_records(bundle, [{**records[0], key: value}, *records[1:]])
            assert not check_bundle(bundle).ok, (key, value)
