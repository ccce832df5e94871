"""The log writer's group commit (braid.storage.wal.WalWriter), on real files: who writes
which batch, that the writer thread moves from one batch to the next without waiting for the
event loop, and that `sync` and `close` leave nothing appended behind."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from braid.core.wal.batcher import Batch, Batcher
from braid.core.wal.record import RecordType
from braid.errors import BraidError
from braid.runtime.disk import RealDisk
from braid.storage.logfiles import LogFiles
from braid.storage.wal import WalWriter, analyze_log

SEGMENT_BYTES = 1 << 20


async def new_writer(directory: Path) -> WalWriter:
    directory.mkdir(exist_ok=True)
    files = LogFiles(RealDisk(directory), directory, SEGMENT_BYTES)
    return WalWriter(files, analyze_log(directory), 1)


def payloads_on_disk(directory: Path) -> list[bytes]:
    analysis = analyze_log(directory)
    assert analysis.verdict == "clean", analysis.detail
    return [record.payload for record in analysis.records if record.type is RecordType.PATCH]


class BatchLog:
    """Wraps `LogFiles.write` to note, per batch: the writing thread, record count, start."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay_first: float = 0.0) -> None:
        self.batches: list[tuple[str, int, float]] = []
        original = LogFiles.write
        log = self

        def recording(files: LogFiles, batch: Batch[Any], batcher: Batcher[Any], lock: Any) -> None:
            log.batches.append(
                (threading.current_thread().name, len(batch.waiters), time.monotonic())
            )
            if delay_first and len(log.batches) == 1:
                time.sleep(delay_first)
            original(files, batch, batcher, lock)

        monkeypatch.setattr(LogFiles, "write", recording)


async def test_a_lone_record_is_written_inline_and_a_burst_by_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At low load (one record, the writer thread idle, no new segment needed) the event
    loop's thread writes the record itself; 200 records appended at once are written by
    the `braid-wal` thread in fewer batches than records. Every record is on disk in order
    afterwards."""
    batches = BatchLog(monkeypatch)
    writer = await new_writer(tmp_path)
    for name in (b"lone-1", b"lone-2"):
        await asyncio.sleep(0.05)  # the writer thread (just started) is waiting for work
        _, future = writer.append(RecordType.PATCH, name)
        await future
    loop_thread = threading.current_thread().name
    # The first creates the log's first segment, which is always the writer thread's job.
    assert [batch[:2] for batch in batches.batches] == [("braid-wal", 1), (loop_thread, 1)]
    futures = [writer.append(RecordType.PATCH, b"r%d" % n)[1] for n in range(200)]
    await asyncio.gather(*futures)
    later = batches.batches[2:]
    assert {thread for thread, _, _ in later} == {"braid-wal"}
    assert sum(count for _, count, _ in later) == 200
    assert len(later) < 200
    await writer.close()
    assert payloads_on_disk(tmp_path) == [b"lone-1", b"lone-2"] + [b"r%d" % n for n in range(200)]


async def test_the_writer_takes_the_next_batch_while_the_loop_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the first batch is slow to write (200 ms), 30 more records are appended; then the
    event loop's thread is kept busy for 500 ms. The writer thread starts the second batch
    during that time: a busy loop delays acknowledgements, never the disk."""
    batches = BatchLog(monkeypatch, delay_first=0.2)
    writer = await new_writer(tmp_path)
    first = [writer.append(RecordType.PATCH, b"a%d" % n)[1] for n in range(2)]
    for _ in range(500):  # until the writer thread is in its slow first write (bounded)
        if batches.batches:
            break
        await asyncio.sleep(0.002)
    assert batches.batches, "the first batch never started"
    second = [writer.append(RecordType.PATCH, b"b%d" % n)[1] for n in range(30)]
    busy_from = time.monotonic()
    time.sleep(0.5)  # the loop's thread does not yield
    busy_until = time.monotonic()
    await asyncio.gather(*first, *second)
    assert [count for _, count, _ in batches.batches] == [2, 30]
    started = batches.batches[1][2]
    assert busy_from < started < busy_until, (busy_from, started, busy_until)
    await writer.close()


async def test_sync_returns_once_everything_appended_before_it_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync` after 50 unawaited appends (the first batch slowed down so that the rest
    wait behind it) returns only when every one of them is acknowledged and the durable
    lsn covers the last."""
    BatchLog(monkeypatch, delay_first=0.03)
    writer = await new_writer(tmp_path)
    appended = [writer.append(RecordType.PATCH, b"s%d" % n) for n in range(50)]
    await writer.sync()
    assert all(future.done() and future.exception() is None for _, future in appended)
    assert writer.durable_lsn >= appended[-1][0]
    await writer.sync()  # nothing pending: returns at once
    await writer.close()


async def test_close_writes_what_was_appended_and_is_idempotent(tmp_path: Path) -> None:
    """Records appended but never awaited are written by `close`; a second close is a
    no-op; an append after close is refused with STORE_CLOSED (it would never be written);
    reopening finds every record."""
    writer = await new_writer(tmp_path)
    futures = [writer.append(RecordType.PATCH, b"c%d" % n)[1] for n in range(20)]
    await writer.close()
    await writer.close()
    with pytest.raises(BraidError) as refused:
        writer.append(RecordType.PATCH, b"too late")
    assert refused.value.name == "STORE_CLOSED"
    assert all(future.done() and future.exception() is None for future in futures)
    assert payloads_on_disk(tmp_path) == [b"c%d" % n for n in range(20)]


async def test_close_right_after_a_lone_append_writes_it_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone record appended just before `close` is written by the event loop's thread
    (its kick runs while `close` waits); the writer thread, woken by `close` meanwhile,
    finds that write in progress and waits again. When the write is done it must still
    learn that it may stop: `close` returns and the record is on disk."""
    writer = await new_writer(tmp_path)
    await writer.append(RecordType.PATCH, b"first")[1]  # the segment exists now
    await asyncio.sleep(0.05)  # the writer thread is idle
    original = LogFiles.write

    def slow(files: LogFiles, batch: Batch[Any], batcher: Batcher[Any], lock: Any) -> None:
        time.sleep(0.1)  # lets the woken writer thread look while this write is in progress
        original(files, batch, batcher, lock)

    monkeypatch.setattr(LogFiles, "write", slow)
    _, future = writer.append(RecordType.PATCH, b"last")
    async with asyncio.timeout(5):
        await writer.close()  # runs up to its first wait before the append's kick
    assert future.done() and future.exception() is None
    assert payloads_on_disk(tmp_path) == [b"first", b"last"]
