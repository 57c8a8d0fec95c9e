"""Evidence storage: content-addressed, write-once files plus their records in the trace.

Theory of operation. An upload streams into a private partial file in the content directory
(`.partial-<random>`). The event loop gathers the body into batches of BATCH bytes and hands
each one to two worker threads at once, one hashing it and one writing it, while it reads
the next: receiving, hashing and writing run side by side on different cores, and only a few
batches per upload are in memory, whatever its size. The disk is kept busy from the first
MiB rather than only at the end: every WRITEBACK_EVERY bytes the writer starts their writeback,
and every SYNC_EVERY bytes a third thread flushes what is written so far, so the fsync before
the answer finds little left to do. When the body ends and its hash equals the client's, the
file is fsynced, made read-only and linked under its SHA-256 (`<dir>/<sha256>`), and the
directory is fsynced. Only then is the `evidence_stored` record appended to the trace, and the
trace record, not the file, is what makes the item exist: a crash before it leaves at most a
partial file (swept at the next start) or a complete but unrecorded file (not an item; a
retried upload adopts it).

Identical bytes are stored once however many items name them. Every other step (rejection,
read, download, correction) is a trace record too, written before the client is answered.
Authorisation is decided here with the pure rules of `sessions.evidence`, so no edge can
forget it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import structlog

from identity import Courts, Identity
from sessions import evidence as ev
from sessions import records, subjects
from sessions.recorder import SessionRecorder, TraceEvent
from sessions.store import MAX_ABOUT, StoredRecord, TraceStore

log = structlog.get_logger(__name__)

PARTIAL_PREFIX: Final = ".partial-"
# Bytes handed to the worker threads at a time. 1 MiB measured best (bench.evidence): with
# 2 MiB or 256 KiB batches an upload cost the server 15-35% more CPU.
BATCH: Final = 1 << 20
# A slow link delivers many small chunks; one writev takes at most this many (IOV_MAX is 1024).
MAX_PARTS: Final = 256
# Every this many bytes written, their writeback starts: the kernel would otherwise leave
# them in the page cache until the final fsync and only then begin writing a whole upload.
WRITEBACK_EVERY: Final = 8 << 20
# Every this many bytes, what is written so far is flushed (the disk's own cache included)
# while the upload goes on.
SYNC_EVERY: Final = 32 << 20
# Worker threads for upload bodies, shared by all uploads: each runs up to three calls at
# once (hash, write, flush), so four go at full speed and more share them.
IO_THREADS: Final = 12


class PartialFile:
    """An upload being written. Blocking methods, called from worker threads: at most one
    call of each of `hash`, `write` and `sync` at a time, in order, the three at once on
    different threads. The locks make `discard` wait for a write or flush in flight, so the
    descriptor is never closed under it."""

    def __init__(self, root: Path) -> None:
        self.path = root / f"{PARTIAL_PREFIX}{secrets.token_hex(16)}"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self.size = 0
        self._written_back = 0

    def hash(self, parts: Sequence[bytes]) -> None:
        for part in parts:
            # hashlib releases the GIL for large buffers, so the other threads go on.
            self._hash.update(part)

    def write(self, parts: Sequence[bytes]) -> None:
        """Append `parts`, in order. Taken as they arrived, not joined: joining would copy
        every byte once more."""
        with self._lock:
            if self._fd < 0:
                raise ValueError("partial file already closed")
            total = sum(len(p) for p in parts)
            written = os.writev(self._fd, parts)
            if written < total:
                rest = memoryview(b"".join(parts))[written:]
                while rest:
                    rest = rest[os.write(self._fd, rest) :]
            self.size += total
            if self.size - self._written_back >= WRITEBACK_EVERY:
                # Start writing these pages out now, not when the final fsync wants them all
                # at once: DONTNEED starts the writeback of the range's dirty pages.
                start, self._written_back = self._written_back, self.size
                os.posix_fadvise(self._fd, start, self.size - start, os.POSIX_FADV_DONTNEED)

    def sync(self) -> None:
        """Flush what is written so far, beside `write`; the final fsync still follows."""
        with self._sync_lock:
            if self._fd >= 0:
                os.fdatasync(self._fd)

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self, final: Path) -> None:
        """Make the bytes durable under `final`, once: if a file of that name exists it holds
        the same bytes (the name is their hash), so it is kept and this copy dropped."""
        with self._lock:
            os.fsync(self._fd)
            # Clean now, so the kernel may drop it: a 4 GiB video nobody reads for weeks
            # should not push the trace database and the hub out of the page cache.
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.fchmod(self._fd, 0o440)
            self._close()
        # link() never replaces: the first complete copy of a content is the one kept.
        with contextlib.suppress(FileExistsError):
            os.link(self.path, final)
        _fsync_dir(final.parent)
        self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        with self._lock:
            self._close()
        self.path.unlink(missing_ok=True)

    def _close(self) -> None:
        with self._sync_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentFiles:
    """Write-once files named by their SHA-256, in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> list[str]:
        """Create the directory and remove partial files left by a crash; returns their names.
        Run once at start, before any upload, so no live upload's file is swept."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        swept = []
        for entry in self.root.iterdir():
            if entry.name.startswith(PARTIAL_PREFIX):
                entry.unlink(missing_ok=True)
                swept.append(entry.name)
        return swept

    def path(self, sha256: str) -> Path:
        # The hash was checked to be 64 hex digits, so it is a plain name, never a path.
        return self.root / sha256

    def new_partial(self) -> PartialFile:
        return PartialFile(self.root)


class EvidenceStore:
    def __init__(
        self,
        *,
        files: ContentFiles,
        trace: TraceStore,
        recorder: SessionRecorder,
        courts: Courts,
        max_upload_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.files = files
        self.trace = trace
        self.recorder = recorder
        self.courts = courts
        self.max_upload_bytes = max_upload_bytes
        self.clock = clock
        # Serialises "is it recorded yet? record it" within this process, so two copies of
        # one upload arriving together make one item. Held for a lookup and one append only;
        # the bytes stream outside it.
        self._recording = asyncio.Lock()
        # Originals found missing or changed since start (`alarm`).
        self.alarms = 0
        self._io: Executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="evidence-io")

    async def start(self) -> None:
        swept = await asyncio.to_thread(self.files.prepare)
        if swept:
            log.warning("swept partial uploads", count=len(swept), dir=str(self.files.root))

    def close(self) -> None:
        self._io.shutdown(wait=False)

    # ---- upload -------------------------------------------------------------------------

    async def receive(
        self,
        who: Identity,
        upload: ev.UploadRequest,
        body: AsyncIterable[bytes],
        *,
        declared_size: int | None,
        clock_check: ev.ClockCheck,
    ) -> tuple[ev.ItemHistory, bool]:
        """Store an upload; returns the item and whether it is new (False: a retry of an
        item this uploader already has). Raises TooLarge, HashMismatch, Conflict, Forbidden,
        NotFound (a case of a court `who` may not bind evidence to)."""
        owner = await self.admit(who, upload, declared_size=declared_size)
        partial = await asyncio.to_thread(self.files.new_partial)
        try:
            try:
                received = await self._write_body(partial, body)
            except ev.TooSlow as exc:
                await self._reject(who, upload, owner, "too_slow", size=exc.received)
                raise
            except (asyncio.CancelledError, ConnectionError):
                # The client went away mid-body: nothing to answer, nothing stored.
                log.info("upload abandoned", user=who.user_id, case_number=upload.case_number)
                raise
            if received > self.max_upload_bytes:
                await self._reject(who, upload, owner, "too_large", size=received)
                raise ev.TooLarge(f"an upload is at most {self.max_upload_bytes} bytes", "body")
            received_at = self.clock()
            if partial.size == 0:
                raise ev.BadRequest("the body is empty", "body")
            sha256 = partial.sha256()
            if sha256 != upload.client_sha256:
                await self._reject(
                    who, upload, owner, "hash_mismatch", size=partial.size, sha256=sha256
                )
                raise ev.HashMismatch("the received bytes do not match sha256", "sha256")
            await asyncio.to_thread(partial.commit, self.files.path(sha256))
        finally:
            # After commit the partial name is gone already; otherwise this drops it.
            await asyncio.to_thread(partial.discard)
        item = ev.new_item(
            upload,
            sha256=sha256,
            size=partial.size,
            uploader=who,
            clock=clock_check,
            received_at=received_at,
            owner=owner,
        )
        return await self._record_new(who, item, upload, owner)

    async def admit(
        self, who: Identity, upload: ev.UploadRequest, *, declared_size: int | None
    ) -> ev.CaseOwner:
        """Refuse, before any byte of the body is read, an upload that cannot succeed;
        returns whose case it is bound to."""
        if not ev.may_upload(who):
            raise ev.Forbidden(f"a {who.role.value} may not upload evidence")
        owner = self._case_owner(who, upload.case_number, who.court, "case")
        if declared_size is not None and declared_size > self.max_upload_bytes:
            await self._reject(who, upload, owner, "too_large", size=declared_size)
            raise ev.TooLarge(f"an upload is at most {self.max_upload_bytes} bytes", "body")
        return owner

    def _case_owner(
        self, who: Identity, case_number: str, item_court: str, field: str
    ) -> ev.CaseOwner:
        try:
            return ev.case_owner(who, case_number, item_court, self.courts, field)
        except ev.NotFound:
            # Logged, not recorded, like any access refused out of scope (docs/evidence.md).
            log.info("evidence case refused", user=who.user_id, court=who.court)
            raise

    async def _write_body(self, partial: PartialFile, body: AsyncIterable[bytes]) -> int:
        """Stream `body` into `partial`; returns the bytes read. More than max_upload_bytes
        means it stopped there: the rest is left unread and the file incomplete."""
        hashing, writing, syncing = (_Lane(self._io) for _ in range(3))
        limit = self.max_upload_bytes
        parts: list[bytes] = []
        buffered = 0
        total = 0
        synced = 0
        try:
            async for chunk in body:
                total += len(chunk)
                if total > limit:
                    return total
                parts.append(chunk)
                buffered += len(chunk)
                if buffered >= BATCH or len(parts) >= MAX_PARTS:
                    await hashing.run(partial.hash, parts)
                    await writing.run(partial.write, parts)
                    parts, buffered = [], 0
                    if total - synced >= SYNC_EVERY and syncing.idle():
                        await syncing.run(partial.sync)
                        synced = total
            if parts:
                await hashing.run(partial.hash, parts)
                await writing.run(partial.write, parts)
            for lane in (hashing, writing, syncing):
                await lane.finish()
            return total
        finally:
            # Let the steps in flight finish before the caller discards the file; their own
            # errors, if any, matter less than the one already on its way out.
            for lane in (hashing, writing, syncing):
                await lane.settle()

    async def _record_new(
        self, who: Identity, item: ev.EvidenceItem, upload: ev.UploadRequest, owner: ev.CaseOwner
    ) -> tuple[ev.ItemHistory, bool]:
        async with self._recording:
            existing = await self.history(item.evidence_id)
            if existing is not None:
                if ev.uploaded_by(existing.original, who):
                    return existing, False
                await self._reject(who, upload, owner, "already_recorded", size=item.size)
                raise ev.Conflict("this case already holds these bytes", "sha256")
            await self._record(ev.STORED, item.to_data())
            return await self._recorded(item.evidence_id), True

    async def _reject(
        self,
        who: Identity,
        upload: ev.UploadRequest,
        owner: ev.CaseOwner,
        reason: str,
        *,
        size: int,
        sha256: str | None = None,
    ) -> None:
        await self._record(
            ev.REJECTED,
            {
                # The item the client meant to create, so its attempts can be followed.
                "evidence_id": upload.evidence_id(owner),
                "case_number": upload.case_number,
                "case_court": owner.court,
                "court": who.court,
                "user": who.user_id,
                "reason": reason,
                "client_sha256": upload.client_sha256,
                "sha256": sha256,
                "size": size,
                "max_upload_bytes": self.max_upload_bytes,
                "kind": upload.kind.value,
                "device": upload.device,
                "file_name": upload.file_name,
            },
        )

    # ---- reads --------------------------------------------------------------------------

    async def read(self, who: Identity, evidence_id: str) -> ev.ItemHistory:
        history = await self._authorised(who, evidence_id, ev.may_read)
        await self._record(ev.READ, self._access_data(who, history, via="item"))
        return history

    async def view(self, who: Identity, evidence_id: str, view_id: str) -> ev.ItemHistory:
        """`who` opens the player on `evidence_id`: recorded once as a read (`via` player,
        with the view's id); the ranges the player then asks for are parts of this view."""
        history = await self._authorised(who, evidence_id, ev.may_read)
        await self._record(ev.READ, self._access_data(who, history, via="player", view=view_id))
        return history

    async def list_case(self, who: Identity, case_number: str) -> list[ev.ItemHistory]:
        """The case's items that `who` may read (others are left out, not refused: whether a
        case holds evidence outside one's scope is itself not one's business)."""
        visible = [
            h
            for h in await self.case_histories(case_number)
            if ev.may_read(who, h.current(), self.courts)
        ]
        if visible:
            await self._record_many(
                ev.READ, [self._access_data(who, h, via="list") for h in visible]
            )
        return visible

    async def search(
        self, who: Identity, search: records.EvidenceSearch, subtree: frozenset[str] | None
    ) -> tuple[list[ev.ItemHistory], int]:
        """The page of items `who` may read that match `search` (newest first), and how
        many match in all. Items out of scope are left out, as for `list_case`; each item
        shown is recorded as read (`via` = search)."""
        # Three reads, not two per item: the originals the terms narrow down to (by case
        # number or uploader, stored in the period), every correction (rare: one read for
        # all of them), and the originals of items moved into the case by a correction.
        key: dict[str, str] = {}
        if search.case_number is not None:
            key["case_number"] = search.case_number
        elif search.officer is not None:
            key["uploader"] = search.officer
        stored = await self.trace.find(
            kinds=[ev.STORED], data_equals=key, since=search.since, until=search.until
        )
        corrections: dict[str, list[StoredRecord]] = {}
        for record in await self.trace.find(kinds=[ev.CORRECTED]):
            corrections.setdefault(record.data["evidence_id"], []).append(record)
        if search.case_number is not None:
            have = {r.data["evidence_id"] for r in stored}
            moved_in = {
                r.data["evidence_id"]
                for rs in corrections.values()
                for r in rs
                if r.data.get("case_number") == search.case_number
            } - have
            for evidence_id in sorted(moved_in):
                stored += await self.trace.find(
                    kinds=[ev.STORED], data_equals={"evidence_id": evidence_id}
                )
        found = [_history(r, corrections.get(r.data["evidence_id"], [])) for r in stored]
        visible = [
            h
            for h in found
            if (search.since is None or h.at >= search.since)
            and (search.until is None or h.at < search.until)
            and records.matches(h.current(), search, subtree)
            and ev.may_read(who, h.current(), self.courts)
        ]
        visible.sort(key=lambda h: h.seq, reverse=True)
        shown = records.page(visible, search)
        if shown:
            await self._record_many(
                ev.READ, [self._access_data(who, h, via="search") for h in shown]
            )
        return shown, len(visible)

    async def audit(self, who: Identity, evidence_id: str) -> tuple[ev.ItemHistory, dict[str, Any]]:
        """The item and its audit trail: every trace record naming it, in seq order. Asking
        is itself a read of the item (recorded after the trail is taken, so the trail shows
        what was there before this look)."""
        history = await self._authorised(who, evidence_id, ev.may_read)
        # By the subject index: one index range, not a scan of every item's records.
        found = await self.trace.records_about(
            subjects.subject(subjects.EVIDENCE, evidence_id), limit=MAX_ABOUT
        )
        trail = records.evidence_trail(found)
        await self._record(ev.READ, self._access_data(who, history, via="audit"))
        return history, trail

    async def download(
        self,
        who: Identity,
        evidence_id: str,
        accept: Callable[[int], bool] | None = None,
    ) -> tuple[ev.ItemHistory, Path]:
        """The item and the path of its bytes; the download is recorded before it starts.
        A file that is gone, or no longer of the recorded size, is refused here (and logged
        as an alarm); one whose bytes changed is caught as it is sent (`DownloadCheck`).
        `accept`, given the original's size, may refuse the request (a range past its end)
        before anything is recorded, and says whether it is to be recorded (false: a part
        of a player's view, recorded when the view was opened)."""
        history = await self._authorised(who, evidence_id, ev.may_read)
        original = history.original
        path = self.files.path(original.sha256)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            # Recorded but gone: someone removed it behind our back.
            self.alarm("evidence original missing", evidence_id, original.sha256)
            raise ev.OriginalMissing(
                "the original of this item is missing from the evidence store"
            ) from None
        if size != original.size:
            self.alarm("evidence original corrupt", evidence_id, original.sha256, size=size)
            raise ev.OriginalCorrupt("the original of this item no longer matches its record")
        recorded = accept(original.size) if accept is not None else True
        if recorded:
            await self._record(ev.DOWNLOADED, self._access_data(who, history))
        return history, path

    def alarm(self, event: str, evidence_id: str, sha256: str, **detail: object) -> None:
        """An original that is not what the trace says: for the operators to act on."""
        self.alarms += 1
        log.error(event, evidence_id=evidence_id, sha256=sha256, alarm=True, **detail)

    async def correct(
        self, who: Identity, evidence_id: str, correction: ev.Correction
    ) -> ev.ItemHistory:
        history = await self._authorised(who, evidence_id, ev.may_correct)
        before = history.current()
        changes = dict(correction.changes)
        if "case_number" in changes:
            # Moving an item into a case is binding it: the same rule as for an upload.
            owner = self._case_owner(
                who, changes["case_number"], before.court, "changes.case_number"
            )
            changes["case_court"] = owner.court
        after = ev.apply_changes(before, changes)
        await self._record(
            ev.CORRECTED,
            {
                "evidence_id": evidence_id,
                # The item's case number once this correction applies, so that finding a
                # case's records by case_number finds an item moved into it.
                "case_number": after.case_number,
                "case_court": after.case_court,
                "court": before.court,
                "user": who.user_id,
                "role": who.role.value,
                "reason": correction.reason,
                "changes": changes,
                "previous": ev.previous_values(before, changes),
            },
        )
        return await self._recorded(evidence_id)

    async def record_export(
        self, histories: Sequence[ev.ItemHistory], *, exported_by: str, bundle: str
    ) -> None:
        """One `evidence_exported` record per item, before the bundle is written."""
        await self._record_many(
            ev.EXPORTED,
            [
                {
                    "evidence_id": h.original.evidence_id,
                    "case_number": h.current().case_number,
                    "court": h.original.court,
                    "user": exported_by,
                    "bundle": bundle,
                }
                for h in histories
            ],
        )

    def _access_data(self, who: Identity, history: ev.ItemHistory, **extra: str) -> dict[str, Any]:
        item = history.current()
        return {
            "evidence_id": item.evidence_id,
            "case_number": item.case_number,
            "court": item.court,
            "user": who.user_id,
            "role": who.role.value,
            "user_court": who.court,
            **extra,
        }

    async def _authorised(
        self,
        who: Identity,
        evidence_id: str,
        allowed: Callable[[Identity, ev.EvidenceItem, Courts], bool],
    ) -> ev.ItemHistory:
        history = await self.history(evidence_id)
        if history is None:
            raise ev.NotFound("no such evidence item")
        current = history.current()
        if not ev.may_read(who, current, self.courts):
            # Answered exactly as a missing item: a 403 would tell someone outside the
            # item's scope that another court holds evidence under this id.
            log.info("evidence access refused", evidence_id=evidence_id, user=who.user_id)
            raise ev.NotFound("no such evidence item")
        if not allowed(who, current, self.courts):
            # Someone who may see the item but not do this (an auditor correcting it).
            log.info("evidence action refused", evidence_id=evidence_id, user=who.user_id)
            raise ev.Forbidden("you may not change this evidence item")
        return history

    # ---- the trace ----------------------------------------------------------------------

    async def history(self, evidence_id: str) -> ev.ItemHistory | None:
        """The item and its corrections, from the trace; None if it was never recorded."""
        key = {"evidence_id": evidence_id}
        stored = await self.trace.find(kinds=[ev.STORED], data_equals=key)
        if not stored:
            return None
        corrections = await self.trace.find(kinds=[ev.CORRECTED], data_equals=key)
        return _history(stored[0], corrections)

    async def case_histories(self, case_number: str) -> list[ev.ItemHistory]:
        """Every item whose current case number is `case_number`, in upload order."""
        key = {"case_number": case_number}
        records = await self.trace.find(kinds=[ev.STORED, ev.CORRECTED], data_equals=key)
        ids = {r.data["evidence_id"] for r in records}
        found = [h for h in [await self.history(i) for i in ids] if h is not None]
        return sorted(
            (h for h in found if h.current().case_number == case_number), key=lambda h: h.seq
        )

    async def _recorded(self, evidence_id: str) -> ev.ItemHistory:
        # Read back from the trace rather than assembled here: what the client is told is
        # then exactly what the record says, seq and time included.
        history = await self.history(evidence_id)
        if history is None:
            raise RuntimeError(f"evidence {evidence_id} not found in the trace after recording")
        return history

    async def _record(self, kind: str, data: Mapping[str, Any]) -> None:
        await self._record_many(kind, [data])

    async def _record_many(self, kind: str, datas: Sequence[Mapping[str, Any]]) -> None:
        # Through the app's recorder, so evidence facts join the one hash chain in order with
        # everything else; it returns once they are durable.
        at = self.clock()
        await self.recorder.record([TraceEvent(kind, at, data) for data in datas])


class _Lane:
    """One step of an upload's pipeline: runs in a worker thread, one call at a time and in
    the order given, while the event loop goes on reading."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._running: asyncio.Future[None] | None = None

    def idle(self) -> bool:
        return self._running is None or self._running.done()

    async def run(self, step: Callable[..., None], *args: Any) -> None:
        """Start `step(*args)` once the previous call is done (raising its error, if any)."""
        await self.finish()
        self._running = asyncio.get_running_loop().run_in_executor(self._executor, step, *args)

    async def finish(self) -> None:
        """Wait for the call in flight, raising its error, if any."""
        if self._running is not None:
            await self._running
            self._running = None

    async def settle(self) -> None:
        """Wait for the call in flight, whatever happens to it or to the caller."""
        running, self._running = self._running, None
        if running is None:
            return
        if not running.done():
            # Shielded: cancelling the caller must not mark the step cancelled while its
            # thread still works on the file.
            with contextlib.suppress(Exception):
                await asyncio.shield(running)
        elif not running.cancelled():
            running.exception()  # retrieved, so asyncio does not log it as lost


def _history(stored: StoredRecord, corrections: Sequence[StoredRecord]) -> ev.ItemHistory:
    history = ev.ItemHistory(
        original=ev.EvidenceItem.from_data(stored.data), seq=stored.seq, at=stored.at
    )
    for record in corrections:
        history = _with_correction(history, record)
    return history


def _with_correction(history: ev.ItemHistory, record: StoredRecord) -> ev.ItemHistory:
    d = record.data
    entry = ev.CorrectionEntry(
        seq=record.seq,
        at=record.at,
        user=d["user"],
        reason=d["reason"],
        changes=d["changes"],
        previous=d["previous"],
    )
    return ev.ItemHistory(
        original=history.original,
        seq=history.seq,
        at=history.at,
        corrections=(*history.corrections, entry),
    )


__all__ = ["PARTIAL_PREFIX", "ContentFiles", "EvidenceStore", "PartialFile"]
