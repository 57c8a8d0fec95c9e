"""How an upload's bytes reach the disk: the partial file hashed, written, flushed and
committed (called directly, as the worker threads call it), and the upload pipeline, shrunk to
small batches so that a few MiB cross many batch, writeback and flush boundaries."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from sessions import evidence as ev
from sessions import evidence_store
from sessions.evidence_store import PARTIAL_PREFIX, PartialFile
from tests.evidencehelpers import Api, body_of, sha, start_api, uploaded


def pieces(data: bytes, seed: int) -> list[bytes]:
    """`data` cut at random places, as a network delivers it: some pieces tiny, some large."""
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(data):
        n = rng.choice([1, 7, 4096, 65_536, 300_001])
        out.append(data[at : at + n])
        at += n
    return out


def test_a_partial_file_written_in_uneven_pieces_commits_exactly_those_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evidence_store, "WRITEBACK_EVERY", 100_000)
    data = os.urandom(3 * 1024 * 1024 + 13)
    partial = PartialFile(tmp_path)
    batch: list[bytes] = []
    for i, piece in enumerate(pieces(data, seed=1)):
        batch.append(piece)
        if len(batch) == 5:
            partial.hash(batch)
            partial.write(batch)
            batch = []
        if i % 7 == 0:
            partial.sync()
    partial.hash(batch)
    partial.write(batch)
    assert partial.size == len(data)
    assert partial.sha256() == sha(data)
    final = tmp_path / partial.sha256()
    partial.commit(final)
    assert final.read_bytes() == data
    assert stat.S_IMODE(final.stat().st_mode) == 0o440
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_a_discarded_partial_file_leaves_nothing_and_takes_no_more_writes(
    tmp_path: Path,
) -> None:
    partial = PartialFile(tmp_path)
    partial.write([b"half an upload"])
    partial.discard()
    partial.sync()  # a flush that comes late finds the file closed and does nothing
    with pytest.raises(ValueError, match="closed"):
        partial.write([b"more"])
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
async def small_batches(
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Api:
    """The real app, its pipeline cut to 64 KiB batches, writeback every 256 KiB and a
    flush every 512 KiB."""
    monkeypatch.setattr(evidence_store, "BATCH", 64 * 1024)
    monkeypatch.setattr(evidence_store, "WRITEBACK_EVERY", 256 * 1024)
    monkeypatch.setattr(evidence_store, "SYNC_EVERY", 512 * 1024)
    return await start_api(aiohttp_client, tmp_path)


async def streamed(data: bytes, seed: int) -> AsyncIterator[bytes]:
    for piece in pieces(data, seed):
        yield piece


async def test_uploads_crossing_many_batches_are_stored_byte_for_byte(
    small_batches: Api,
) -> None:
    """One with its length declared, one streamed, and two at once sharing the threads."""
    api = small_batches
    declared = os.urandom(2 * 1024 * 1024 + 5)
    body = await uploaded(
        api, "o1", declared, sha256=sha(declared), kind="video", content_type="video/mp4"
    )
    assert body["size"] == len(declared)

    a, b = os.urandom(3 * 1024 * 1024 + 1), os.urandom(1024 * 1024 - 1)
    bodies = await asyncio.gather(
        *(
            uploaded(
                api, "o1", streamed(d, seed), sha256=sha(d), kind="video", content_type="video/mp4"
            )
            for seed, d in enumerate((a, b))
        )
    )
    assert [x["size"] for x in bodies] == [len(a), len(b)]
    for data in (declared, a, b):
        assert (api.dir / sha(data)).read_bytes() == data
    assert not [n for n in api.files() if n.startswith(PARTIAL_PREFIX)]
    assert len(await api.records(ev.STORED)) == 3


async def test_a_multi_batch_upload_with_the_wrong_hash_is_refused_and_leaves_nothing(
    small_batches: Api,
) -> None:
    api = small_batches
    data = os.urandom(2 * 1024 * 1024)
    wrong = hashlib.sha256(data + b"!").hexdigest()
    resp = await api.upload(
        "o1", streamed(data, seed=3), sha256=wrong, kind="video", content_type="video/mp4"
    )
    reply: dict[str, Any] = await body_of(resp)
    assert resp.status == 422, reply
    (rejected,) = await api.records(ev.REJECTED)
    assert rejected.data["reason"] == "hash_mismatch"
    assert rejected.data["sha256"] == sha(data)
    assert rejected.data["size"] == len(data)
    assert api.files() == []
