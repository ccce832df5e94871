"""Durable-engine behaviour the engine-neutral contract suite cannot see: checkpoints and
segment release, the bounded cache, the directory lock, and the fatal write/fsync path."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

import braid
from braid.errors import BraidError
from braid.storage.durable import DurableConfig, DurableEngine

SMALL_SEGMENTS = 1 << 20


def delta(seq: int, text: str = "v") -> braid.Update:
    return braid.Update(seq, seq, redo=f'{{"n":{seq},"t":"{text * 200}"}}', undo='{"n":null}')


async def fill(engine: DurableEngine, key: braid.Key, count: int) -> None:
    await engine.initialize(key, braid.Update(1, 1, redo='{"start":true}'))
    for seq in range(2, count + 1):
        await engine.patch(key, [delta(seq)])


def wal_files(directory: Path) -> list[str]:
    return sorted(path.name for path in (directory / "wal").glob("seg-*.wal"))


async def test_checkpoints_release_segments_and_keep_every_document(tmp_path: Path) -> None:
    """Once checkpoints have applied a segment's records, the segment file is deleted, and
    reopening from the applied state plus the remaining log gives back every delta."""
    config = DurableConfig(segment_bytes=SMALL_SEGMENTS, checkpoint_records=200)
    engine = await DurableEngine.open(tmp_path, config)
    # ~1.5 MB of records: several 1 MiB segments (over three documents: one holds at most
    # limits.document_bytes_max of deltas)
    keys = [braid.Key("space-one", f"doc-{index}") for index in range(3)]
    for key in keys:
        await fill(engine, key, 2000)
    assert engine.checkpoints > 0
    assert len(wal_files(tmp_path)) <= 2, wal_files(tmp_path)
    await engine.close()
    reopened = await DurableEngine.open(tmp_path, config)
    for key in keys:
        change = await reopened.get(key)
        assert change.seq == 2000
        assert change.reads == 2000
        assert '"n":2000' in change.document
    await reopened.close()


async def test_tiny_cache_evicts_yet_serves_every_document(tmp_path: Path) -> None:
    """With a cache far smaller than the data, documents are evicted after checkpoints and
    reloaded from the applied state with identical content."""
    config = DurableConfig(cache_bytes=4096, checkpoint_records=10)
    engine = await DurableEngine.open(tmp_path, config)
    keys = [braid.Key("space-one", f"doc-{index}") for index in range(30)]
    for key in keys:
        await fill(engine, key, 5)
    await engine.inventory()  # forces a checkpoint, unpinning everything
    assert len(engine._documents.cache) < len(keys)
    for key in keys:
        change = await engine.get(key)
        assert change.seq == 5
        assert change.reads == 5
    await engine.close()


async def test_second_open_of_a_directory_is_refused(tmp_path: Path) -> None:
    """Two opens of one store would interleave two logs; the second gets STORE_LOCKED."""
    engine = await DurableEngine.open(tmp_path)
    with pytest.raises(BraidError) as caught:
        await DurableEngine.open(tmp_path)
    assert caught.value.name == "STORE_LOCKED"
    assert caught.value.code == 3003
    await engine.close()
    again = await DurableEngine.open(tmp_path)  # released on close
    await again.close()


async def test_open_without_create_reports_a_missing_store(tmp_path: Path) -> None:
    """Read-only tools must not create a store by accident: STORE_NOT_FOUND instead."""
    with pytest.raises(BraidError) as caught:
        await DurableEngine.open(tmp_path / "absent", create=False)
    assert caught.value.code == 3007
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("reached_file", [True, False], ids=["sync-failed", "write-failed"])
async def test_failed_fsync_is_fatal_and_loses_nothing_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reached_file: bool
) -> None:
    """A log write whose sync fails (segments are written with O_DSYNC, so the write itself
    reports it, whether or not its bytes reached the file) fails the waiting write with
    WAL_FAILED; every later write and read is refused (no retry after fsyncgate), and
    reopening shows exactly the acknowledged writes."""
    engine = await DurableEngine.open(tmp_path)
    key = braid.Key("space-one", "doc")
    await fill(engine, key, 3)
    real_pwrite = os.pwrite

    def failing(fd: int, data: bytes | memoryview, offset: int) -> int:
        if reached_file:
            real_pwrite(fd, data, offset)
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(os, "pwrite", failing)
    with pytest.raises(BraidError) as caught:
        await engine.patch(key, [delta(4)])
    assert caught.value.name == "WAL_FAILED"
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    with pytest.raises(BraidError) as later:
        await engine.patch(key, [delta(4)])
    assert later.value.name == "WAL_FAILED"
    with pytest.raises(BraidError) as read:
        await engine.get(key)
    assert read.value.name == "WAL_FAILED"
    await engine.close()
    reopened = await DurableEngine.open(tmp_path)
    change = await reopened.get(key)
    assert change.seq == (4 if reached_file else 3)  # 4 was written, never acknowledged
    await reopened.close()


async def test_concurrent_writers_share_fsyncs(tmp_path: Path) -> None:
    """Group commit: 32 writers each waiting on their own patch finish with fewer batches
    than writes, and every write is durable after reopening."""
    engine = await DurableEngine.open(tmp_path)
    keys = [braid.Key("space-one", f"w{index}") for index in range(32)]
    for key in keys:
        await engine.initialize(key, braid.Update(1, 1, redo="{}"))
    assert engine._wal is not None
    batches_before = engine._wal._batcher.next_batch

    async def writer(key: braid.Key) -> None:
        for seq in range(2, 22):
            await engine.patch(key, [delta(seq)])

    await asyncio.gather(*(writer(key) for key in keys))
    batches = engine._wal._batcher.next_batch - batches_before
    assert batches < 32 * 20
    await engine.close()
    reopened = await DurableEngine.open(tmp_path)
    for key in keys:
        assert (await reopened.get(key)).seq == 21
    await reopened.close()


async def test_cancelled_writer_does_not_fail_its_batch_mates(tmp_path: Path) -> None:
    """Cancelling one waiting patch must not cancel the others sharing its fsync."""
    engine = await DurableEngine.open(tmp_path)
    first, second = braid.Key("space-one", "a"), braid.Key("space-one", "b")
    for key in (first, second):
        await engine.initialize(key, braid.Update(1, 1, redo="{}"))
    doomed = asyncio.ensure_future(engine.patch(first, [delta(2)]))
    survivor = asyncio.ensure_future(engine.patch(second, [delta(2)]))
    await asyncio.sleep(0)
    doomed.cancel()
    await survivor
    assert (await engine.get(second)).seq == 2
    assert (await engine.get(first)).seq == 2  # logged before the cancel: still applied
    await engine.close()
