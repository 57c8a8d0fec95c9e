"""Evidence bundles: one case's originals, metadata and trace records, in a directory that
can be checked on its own and against the chain.

Layout of a bundle (docs/evidence.md describes it for the people who receive one):

    manifest.json   format, case, export time, the chain head the bundle was cut from and
                    the checkpoint that signs it, the seqs of every bundled record, every
                    item (its current metadata, its original's path, the seqs of its records)
    manifest.sig    Ed25519 signature of manifest.json's exact bytes, hex, with the
                    checkpoint key (sessions/checkpoint.py)
    checkpoint.pub  that key's public half (PEM)
    records.jsonl   every trace record concerning the items, one JSON object per line, as
                    stored: {seq, at_us, kind, data, prev_hash, hash}, `data` the exact
                    canonical JSON text that was hashed (a string, so no re-encoding can
                    change it)
    originals/<sha256>   each item's bytes, named by their SHA-256
    VERIFY.txt      how to check all this, by hand or with `commandcenter evidence verify`

The export first records itself (`evidence_exported`), then writes an `export` checkpoint
of the trace's head, and only then reads the records: so every record of the case up to
that head is in the bundle, and the signed manifest says which they are. Whoever handles
the bundle afterwards cannot drop an item or hide a correction without the manifest failing
its signature or the bundle failing the manifest.

Checking has two halves. Offline (`check_bundle`): the manifest's signature and its
checkpoint's verify with the key; the bundle holds exactly the records the manifest lists,
each item, and every correction of each item applied; each original hashes to its item's
sha256; each record's hash is the SHA-256 of its prev_hash and its canonical content
(`sessions.trace`), so no record was edited; consecutive records chain; each item's
metadata is its `evidence_stored` record with its corrections applied. Against the chain
(`check_against_chain`): the live trace verifies end to end with every bundled record and
the committed head as anchors, so each one is still in the chain, at its seq, unchanged. A
chain hash commits to everything before it, but records of other cases are not in the
bundle (they are not the recipient's business), so this second half needs the trace itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sessions import evidence as ev
from sessions.checkpoint import (
    Checkpoint,
    CheckpointError,
    bytes_signature_ok,
    key_id,
    load_public_pem,
    public_pem,
    signature_ok,
)
from sessions.checkpointer import Checkpointer
from sessions.durable import verify_store
from sessions.errors import RecorderError, TimestampError
from sessions.evidence_store import EvidenceStore
from sessions.store import TraceStore
from sessions.timestamp import check_imprint_only
from sessions.trace import GENESIS_HASH, Head, Link, VerifyResult, canonical, chain_hash

BUNDLE_FORMAT: Final = "commandcenter-evidence-bundle/2"
OLD_FORMATS: Final = ("commandcenter-evidence-bundle/1",)
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
PUBLIC_KEY: Final = "checkpoint.pub"
RECORDS: Final = "records.jsonl"
ORIGINALS: Final = "originals"
INSTRUCTIONS: Final = "VERIFY.txt"
COPY_CHUNK: Final = 1 << 20
HASH_RULE: Final = (
    "hash = SHA-256(bytes.fromhex(prev_hash) || canonical), canonical = the UTF-8 bytes of "
    '{"at_us":<at_us>,"data":<data>,"kind":<kind as a JSON string>,"seq":<seq>} with no '
    "spaces and <data> inserted as stored; record 1 chains from genesis_hash"
)


class ExportError(RecorderError):
    """An export that cannot be made as asked (nothing to export, a non-empty target)."""

    code = "export_refused"
    http_status = 400


@dataclass(frozen=True)
class ExportSummary:
    case_number: str
    out: Path
    items: int
    records: int
    head: Head
    key_id: str


@dataclass
class BundleCheck:
    """What checking a bundle found; `anchors` are the bundled records' seqs and hashes."""

    items: int = 0
    records: int = 0
    anchors: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # The chain head the bundle was cut from, and the key that signed it.
    head: Head | None = None
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


# --- export ------------------------------------------------------------------------------


async def export_case(
    evidence: EvidenceStore,
    trace: TraceStore,
    case_number: str,
    out: Path,
    *,
    exported_by: str,
    checkpointer: Checkpointer,
) -> ExportSummary:
    """Write the bundle of `case_number` into `out` (created; must be empty or missing).

    The export is recorded first (one `evidence_exported` per item), as downloads are, so a
    bundle never exists without the trace saying who made it; then `checkpointer` signs the
    head, and the bundle holds every record of the case up to that head (module docstring).
    """
    histories = await evidence.case_histories(case_number)
    if not histories:
        raise ExportError(f"case {case_number!r} has no evidence")
    out = await asyncio.to_thread(_prepare_out, out)
    try:
        return await _export(
            evidence, trace, case_number, out, histories, exported_by, checkpointer
        )
    except BaseException:
        # No half-written bundle that could pass for a whole one. `out` was empty before.
        await asyncio.to_thread(shutil.rmtree, out, True)
        raise


async def _export(
    evidence: EvidenceStore,
    trace: TraceStore,
    case_number: str,
    out: Path,
    histories: Sequence[ev.ItemHistory],
    exported_by: str,
    checkpointer: Checkpointer,
) -> ExportSummary:
    await evidence.record_export(histories, exported_by=exported_by, bundle=str(out))
    checkpoint = await checkpointer.checkpoint("export")
    if checkpoint is None:
        raise ExportError(
            "the trace's tail does not chain on from its last checkpoint (see the log); "
            "run `commandcenter audit verify`"
        )
    head = checkpoint.head
    # Read again now that the head is fixed: a correction made since the first reading,
    # up to the head, belongs in the bundle, and nothing after the head does.
    histories = [
        _up_to(h, head.seq)
        for h in await evidence.case_histories(case_number) or histories
        if h.seq <= head.seq
    ]
    ids = [h.original.evidence_id for h in histories]
    concerned = {
        r.seq
        for evidence_id in ids
        for r in await trace.find(kinds=ev.KINDS, data_equals={"evidence_id": evidence_id})
    }
    # Refused attempts at this case, even those that never became an item.
    concerned |= {
        r.seq
        for r in await trace.find(kinds=[ev.REJECTED], data_equals={"case_number": case_number})
    }
    links = [await _link_at(trace, seq) for seq in sorted(concerned) if seq <= head.seq]
    sealed = _Sealed(checkpoint, checkpointer)
    await asyncio.to_thread(
        _write_bundle, evidence, case_number, out, histories, links, head, sealed
    )
    return ExportSummary(case_number, out, len(histories), len(links), head, checkpointer.key_id)


def _up_to(history: ev.ItemHistory, seq: int) -> ev.ItemHistory:
    corrections = tuple(c for c in history.corrections if c.seq <= seq)
    return ev.ItemHistory(history.original, history.seq, history.at, corrections)


@dataclass(frozen=True)
class _Sealed:
    """What signs a bundle: the export checkpoint, and the key that signed it."""

    checkpoint: Checkpoint
    signer: Checkpointer


async def _link_at(trace: TraceStore, seq: int) -> Link:
    (link,) = await trace.links(after_seq=seq - 1, limit=1)
    return link


def _prepare_out(out: Path) -> Path:
    """`out`, absolute, created empty but for `originals/`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: exists and is not an empty directory")
    (out / ORIGINALS).mkdir(parents=True, exist_ok=True)
    return out.resolve()


def _write_bundle(
    evidence: EvidenceStore,
    case_number: str,
    out: Path,
    histories: Sequence[ev.ItemHistory],
    links: Sequence[Link],
    head: Head,
    sealed: _Sealed,
) -> None:
    for sha256 in sorted({h.original.sha256 for h in histories}):
        _copy_checked(evidence.files.path(sha256), out / ORIGINALS / sha256, sha256)
    with open(out / RECORDS, "w", encoding="utf-8") as fh:
        for link in links:
            fh.write(json.dumps(_link_json(link), ensure_ascii=False) + "\n")
    manifest = {
        "format": BUNDLE_FORMAT,
        "case_number": case_number,
        "exported_at": evidence.clock(),
        "chain": {"head_seq": head.seq, "head_hash": head.hash, "genesis_hash": GENESIS_HASH},
        "checkpoint": sealed.checkpoint.to_json(),
        "key_id": sealed.signer.key_id,
        "signature": SIGNATURE,
        "public_key": PUBLIC_KEY,
        "hash_rule": HASH_RULE,
        "records": RECORDS,
        "record_seqs": [link.seq for link in links],
        "items": [_item_json(h) for h in histories],
        "anchors": [f"{link.seq}:{link.hash}" for link in links] + [f"{head.seq}:{head.hash}"],
    }
    text = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    (out / MANIFEST).write_bytes(text)
    (out / SIGNATURE).write_text(sealed.signer.sign_detached(text) + "\n", encoding="ascii")
    (out / PUBLIC_KEY).write_bytes(public_pem(sealed.signer.public_key))
    (out / INSTRUCTIONS).write_text(_instructions(manifest), encoding="utf-8")


def _copy_checked(src: Path, dst: Path, sha256: str) -> None:
    """Copy while hashing: a content file damaged on disk is reported, never exported."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(COPY_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    if digest.hexdigest() != sha256:
        dst.unlink()
        raise ExportError(f"{src}: the stored content no longer matches its recorded hash")
    os.chmod(dst, 0o444)


def _link_json(link: Link) -> dict[str, Any]:
    return {
        "seq": link.seq,
        "at_us": link.at_us,
        "kind": link.kind,
        "data": link.data,
        "prev_hash": link.prev_hash,
        "hash": link.hash,
    }


def _item_json(history: ev.ItemHistory) -> dict[str, Any]:
    return {
        "evidence_id": history.original.evidence_id,
        "original": f"{ORIGINALS}/{history.original.sha256}",
        "stored_seq": history.seq,
        "correction_seqs": [c.seq for c in history.corrections],
        "metadata": history.current().to_data(),
    }


def _instructions(manifest: Mapping[str, Any]) -> str:
    chain = manifest["chain"]
    anchors = " ".join(f"--anchor {a}" for a in manifest["anchors"])
    return f"""Evidence bundle for case {manifest["case_number"]} ({BUNDLE_FORMAT})

0. Signature: {SIGNATURE} is the Ed25519 signature (hex) of the exact bytes of {MANIFEST},
   by the key in {PUBLIC_KEY}, whose id (SHA-256 of its 32 raw bytes) is
   {manifest["key_id"]}. Compare that id with the one the court's server publishes
   (`commandcenter audit keygen` printed it); a bundle signed by another key proves nothing.
   With OpenSSL 3:
     xxd -r -p {SIGNATURE} > sig.bin
     openssl pkeyutl -verify -pubin -inkey {PUBLIC_KEY} -rawin -in {MANIFEST} -sigfile sig.bin
   The manifest's "checkpoint" is signed by the same key (its signed bytes are in
   docs/trace.md) and names the same head as "chain".
1. Completeness: {RECORDS} holds exactly the records of "record_seqs"; every item's
   stored_seq and correction_seqs are among them; every evidence_corrected record of an
   item is in its correction_seqs; no record names an item that is not in "items".
2. Originals: for every item in {MANIFEST}, `sha256sum {ORIGINALS}/<sha256>` prints the
   item's metadata.sha256, and the file's size is metadata.size.
3. Records: every line of {RECORDS} is one trace record, and each must satisfy:
   {HASH_RULE}.
   Of two records with consecutive seqs, the later one's prev_hash is the earlier one's hash.
4. Metadata: an item's metadata is the data of its evidence_stored record (stored_seq) with
   the "changes" of its evidence_corrected records (correction_seqs) applied in order.
5. Against the chain, on the server holding the trace:
   commandcenter audit verify {anchors}
   must exit 0: the whole trace is intact and still holds each of these records unchanged,
   and the head the bundle was cut from: seq {chain["head_seq"]}, hash {chain["head_hash"]}.

`commandcenter evidence verify DIR` does 0-4 (pin the key with --public-key), and 5 as well
with --chain.
"""


# --- checking ------------------------------------------------------------------------------


def check_bundle(directory: Path, public: Ed25519PublicKey | None = None) -> BundleCheck:
    """Check a bundle on its own (steps 0-4 of VERIFY.txt); never raises for bad content.
    `public` pins the key the bundle must be signed with; without it the bundle's own
    `checkpoint.pub` is used (and its id reported, to be compared by whoever relies on it)."""
    result = BundleCheck()
    try:
        text = (directory / MANIFEST).read_bytes()
        manifest = json.loads(text.decode("utf-8"))
        lines = (directory / RECORDS).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        result.problems.append(f"unreadable bundle: {exc}")
        return result
    if isinstance(manifest, dict) and manifest.get("format") in OLD_FORMATS:
        result.problems.append(
            f"{MANIFEST}: {manifest['format']} bundles are not signed and cannot show "
            "they are complete; export the case again"
        )
        return result
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        result.problems.append(f"{MANIFEST}: not a {BUNDLE_FORMAT} manifest")
        return result
    _check_signature(directory, text, manifest, public, result)
    links = _check_records(lines, result)
    by_seq = {link.seq: link for link in links}
    items = manifest.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        result.problems.append(f"{MANIFEST}: items is not a list of objects")
        items = []
    _check_complete(manifest, items, links, result)
    for item in items:
        _check_item(directory, item, by_seq, result)
    return result


def _check_signature(
    directory: Path,
    text: bytes,
    manifest: Mapping[str, Any],
    pinned: Ed25519PublicKey | None,
    result: BundleCheck,
) -> None:
    try:
        bundled = load_public_pem((directory / PUBLIC_KEY).read_bytes())
        signature = (directory / SIGNATURE).read_text(encoding="ascii")
    except (OSError, ValueError, CheckpointError) as exc:
        result.problems.append(f"{SIGNATURE} or {PUBLIC_KEY}: unreadable ({exc})")
        return
    public = pinned if pinned is not None else bundled
    result.key_id = key_id(public)
    if key_id(bundled) != result.key_id:
        result.problems.append(f"{PUBLIC_KEY}: not the key given to check the bundle with")
    if not bytes_signature_ok(public, text, signature):
        result.problems.append(
            f"{SIGNATURE}: the manifest was changed after export, or not signed with the key"
        )
    chain: Any = manifest.get("chain")
    try:
        checkpoint = Checkpoint.from_json(manifest.get("checkpoint"))
        head = Head(int(chain["head_seq"]), str(chain["head_hash"]))
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        result.problems.append(f"{MANIFEST}: no readable chain head and checkpoint ({exc})")
        return
    result.head = head
    if not signature_ok(checkpoint, public):
        result.problems.append("checkpoint: signature does not verify with the key")
    token = checkpoint.token_der()
    if token is not None:
        # Without the TSA's certificate, what the token stamps is what can be checked here.
        try:
            check_imprint_only(token, checkpoint.digest())
        except TimestampError as exc:
            result.problems.append(f"checkpoint: time stamp: {exc.reason}")
    if checkpoint.head != head:
        result.problems.append(
            f"checkpoint: signs seq {checkpoint.seq}, not the bundle's head {head.seq}"
        )


def _check_complete(
    manifest: Mapping[str, Any],
    items_listed: Sequence[Mapping[str, Any]],
    links: Sequence[Link],
    result: BundleCheck,
) -> None:
    """The bundle holds what the signed manifest says it was cut with, and every record of
    an item is accounted for by it."""
    listed = manifest.get("record_seqs")
    if not isinstance(listed, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in listed
    ):
        result.problems.append(f"{MANIFEST}: record_seqs is not a list of seqs")
        return
    present = {link.seq for link in links}
    for seq in sorted(set(listed) - present):
        result.problems.append(f"record {seq}: listed in the manifest, missing from {RECORDS}")
    for seq in sorted(present - set(listed)):
        result.problems.append(f"record {seq}: in {RECORDS} but not listed in the manifest")
    if result.head is not None:
        for link in links:
            if link.seq > result.head.seq:
                result.problems.append(f"record {link.seq}: after the bundle's head")
            elif link.seq == result.head.seq and link.hash != result.head.hash:
                result.problems.append(f"record {link.seq}: not the head the bundle signs")
    items = {str(item.get("evidence_id")): item for item in items_listed}
    case = manifest.get("case_number")
    for link in links:
        try:
            data = msgspec.json.decode(link.data)
            evidence_id = data.get("evidence_id")
        except (msgspec.DecodeError, AttributeError):
            continue  # reported by the item check that needs it
        item = items.get(str(evidence_id))
        if item is None:
            if not (link.kind == ev.REJECTED and data.get("case_number") == case):
                result.problems.append(
                    f"record {link.seq}: names {evidence_id}, which is not an item of the bundle"
                )
            continue
        corrections = item.get("correction_seqs")
        if link.kind == ev.CORRECTED and (
            not isinstance(corrections, list) or link.seq not in corrections
        ):
            result.problems.append(
                f"item {evidence_id}: correction {link.seq} is not applied to its metadata"
            )
        if link.kind == ev.STORED and link.seq != item.get("stored_seq"):
            result.problems.append(f"item {evidence_id}: stored again at {link.seq}")


def _check_records(lines: Iterable[str], result: BundleCheck) -> list[Link]:
    links: list[Link] = []
    for n, line in enumerate(lines, 1):
        try:
            raw = json.loads(line)
            link = Link(
                seq=int(raw["seq"]),
                at_us=int(raw["at_us"]),
                kind=str(raw["kind"]),
                data=str(raw["data"]),
                prev_hash=str(raw["prev_hash"]),
                hash=str(raw["hash"]),
            )
            intact = chain_hash(
                link.prev_hash, canonical(link.seq, link.at_us, link.kind, link.data)
            )
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            result.problems.append(f"{RECORDS} line {n}: unreadable record ({exc})")
            continue
        if intact != link.hash:
            result.problems.append(f"record {link.seq}: content does not match its hash")
            continue
        previous = links[-1] if links else None
        if previous is not None and previous.seq == link.seq - 1:
            if link.prev_hash != previous.hash:
                result.problems.append(
                    f"record {link.seq}: does not chain to record {previous.seq}"
                )
        elif link.seq == 1 and link.prev_hash != GENESIS_HASH:
            result.problems.append("record 1: does not start from the genesis hash")
        links.append(link)
        result.anchors[link.seq] = link.hash
    result.records = len(links)
    return links


def _check_item(
    directory: Path, item: Any, by_seq: Mapping[int, Link], result: BundleCheck
) -> None:
    result.items += 1
    evidence_id = item.get("evidence_id") if isinstance(item, dict) else None
    try:
        stored = by_seq[item["stored_seq"]]
        original = ev.EvidenceItem.from_data(msgspec.json.decode(stored.data))
        changes = [
            msgspec.json.decode(by_seq[seq].data)["changes"] for seq in item["correction_seqs"]
        ]
        current = ev.current_of(original, changes)
    except (KeyError, TypeError, ValueError, ev.EvidenceError) as exc:
        result.problems.append(f"item {evidence_id}: its records are missing or unreadable ({exc})")
        return
    if stored.kind != ev.STORED or original.evidence_id != evidence_id:
        result.problems.append(f"item {evidence_id}: stored_seq is not its evidence_stored record")
        return
    if current.to_data() != item.get("metadata"):
        result.problems.append(f"item {evidence_id}: metadata differs from its records")
    path = directory / str(item.get("original", ""))
    try:
        outside = path.resolve().parent != (directory / ORIGINALS).resolve()
    except (OSError, ValueError):  # a NUL in the name, a symlink loop
        outside = True
    if outside:
        result.problems.append(f"item {evidence_id}: original is not under {ORIGINALS}/")
        return
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(COPY_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, ValueError):
        result.problems.append(f"item {evidence_id}: original {path.name} is missing")
        return
    if (digest.hexdigest(), size) != (original.sha256, original.size):
        result.problems.append(f"item {evidence_id}: original does not match its sha256")


async def check_against_chain(trace: TraceStore, check: BundleCheck) -> VerifyResult:
    """Step 5: verify the whole live chain with every bundled record, and the head the
    bundle was cut from, as anchors."""
    anchors = dict(check.anchors)
    if check.head is not None and check.head.seq > 0:
        anchors[check.head.seq] = check.head.hash
    return await verify_store(trace, anchors=anchors)


def exported_by_default() -> str:
    """Who runs the export, as the trace records it: the operating-system user."""
    with contextlib.suppress(OSError, KeyError):
        return f"cli:{getpass.getuser()}"
    return "cli"


__all__ = [
    "BUNDLE_FORMAT",
    "BundleCheck",
    "ExportError",
    "ExportSummary",
    "check_against_chain",
    "check_bundle",
    "export_case",
    "exported_by_default",
]
