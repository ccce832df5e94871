"""The write-ahead log on disk: recovery on open and the group-commit writer.

Segments live in one directory as `seg-NNNNNNNN.wal`, each preallocated and zero-filled to
`limits.wal_segment_bytes` before it is used (overwriting preallocated blocks makes
fdatasync cheaper than growing a file). The format is in `braid.core.wal.record`.

Group commit: `append` frames a record into the open batch at once and returns that
record's own future. The writer thread (`braid-wal`) takes the whole open batch whenever
the disk is free, adds its commit marker, and writes it with one O_DSYNC write (durable
when it returns, like write + fdatasync); then it hands the acknowledgements to the event
loop and takes the next batch at once. While one batch is being written the next one
fills, so the batch size follows the load, and a busy event loop delays acknowledgements
but never the disk. A lone small record at low load is written by the event loop's own
thread instead (see `_kick`). A failed write is fatal for the log: every waiter gets
WAL_FAILED and the log takes no more writes (a failed sync may have dropped dirty pages;
retrying could report success for data that is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from braid import limits
from braid.core.apply import releasable
from braid.core.wal.batcher import SEAL_BYTES, SEGMENT_ROOM_MIN, Batch, Batcher, Layout
from braid.core.wal.record import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Record,
    RecordType,
    SegmentHeader,
    SegmentHeaderError,
    decode_segment_header,
    encode_segment_header,
    find_later_batch,
    scan_segment,
    written_whole,
)
from braid.errors import (
    DISK_FULL,
    STORE_ACCESS,
    WAL_FAILED,
    BraidError,
)

log = logging.getLogger("braid.store")
_SEGMENT_NAME = re.compile(r"seg-(\d{8})\.wal")
SPARE_NAME = "spare.tmp"
_ZEROS = bytes(1 << 20)
_BLOCK_BYTES = 4096  # a file system block: files are grown in whole ones
# Segments are written with O_DSYNC: each write returns once its data is durable, as a write
# followed by fdatasync would, but in one system call. The writer thread then gives up and
# retakes the interpreter lock once per batch instead of twice (each retake waits for the
# event loop's thread to let go of it).
_SEGMENT_FLAGS = os.O_RDWR | os.O_DSYNC


def segment_path(directory: Path, index: int) -> Path:
    return directory / f"seg-{index:08d}.wal"


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS


def access_error(path: Path, error: OSError, doing: str) -> BraidError:
    """An environmental failure on a store path as a catalogued error naming the path."""
    if is_disk_full(error):
        return BraidError(DISK_FULL, f"{doing} {path}: the disk is full ({error.strerror})")
    reason = {
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.EISDIR: "is a directory, where braid expects a file",
        errno.ENOTDIR: "a path component is a file, where braid expects a directory",
        errno.EEXIST: "exists and is not a directory",
        errno.ENOENT: "does not exist",
    }.get(error.errno or 0, error.strerror or str(error))
    return BraidError(STORE_ACCESS, f"{doing} {path}: {reason}")


def read_file(path: Path) -> bytes:
    """A store file's bytes; an environmental failure becomes STORE_ACCESS naming it."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise access_error(path, error, "cannot read") from None


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    try:
        entries = list(directory.iterdir())
    except OSError as error:
        raise access_error(directory, error, "cannot list") from None
    for path in entries:
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- analysis (read only) and repair -------------------------------------------------------


@dataclass
class SegmentState:
    index: int
    path: Path
    header: SegmentHeader | None
    records: int = 0
    end: int = SEGMENT_HEADER_SIZE
    last_batch: int = 0
    sealed: bool = False  # the log continues in the next segment


class LogVerdict(enum.StrEnum):
    """What the log's own scan concludes (`braid.storage.scan` judges the whole store)."""

    CLEAN = "clean"
    TORN = "torn"  # a crash interrupted the last write: the next open truncates it
    CORRUPT = "corrupt"  # damage the log cannot explain by a crash: refused


@dataclass
class LogAnalysis:
    """What the log directory holds: every intact record in order, and a verdict."""

    segments: list[SegmentState] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    verdict: LogVerdict = LogVerdict.CLEAN
    problem_segment: Path | None = None
    problem_offset: int = 0
    detail: str = ""
    discard_segments: list[Path] = field(default_factory=list)  # after a torn tail


def analyze_log(directory: Path) -> LogAnalysis:
    """Scan every segment without changing anything.

    Besides each segment's records, the scan checks what the files say of each other: a
    segment's name and header agree, it has the size its header records (segments are
    preallocated before they are named, so a short one was truncated), consecutive segments
    continue each other's lsns and indexes, and a sealed segment's successor exists.
    """
    analysis = LogAnalysis()
    segments = list_segments(directory)
    expected_lsn: int | None = None
    expected_index: int | None = None
    for position, (index, path) in enumerate(segments):
        data = read_file(path)
        try:
            scan = scan_segment(data, expected_lsn)
        except SegmentHeaderError as error:
            return _corrupt(analysis, path, 0, f"segment header: {error}")
        header = scan.header
        problem = _segment_problem(header, index, len(data), expected_index, expected_lsn)
        if problem is not None:
            return _corrupt(analysis, path, 0, problem)
        expected_index = index + 1
        # A segment without records has not finished its first batch (header.first_batch):
        # the writer must write that batch number there next, not the one after it.
        last_batch = header.first_batch - 1
        state = SegmentState(index, path, header, len(scan.records), scan.end, last_batch)
        if scan.records:
            state.last_batch = scan.records[-1].batch
        analysis.segments.append(state)
        analysis.records.extend(scan.records)
        expected_lsn = scan.records[-1].lsn + 1 if scan.records else header.first_lsn
        if scan.damaged_at is not None:
            evidence = _later_batch_anywhere(
                data, scan.damaged_at, scan.damaged_batch, segments[position + 1 :]
            ) or written_whole(data, scan)
            if evidence is not None:
                detail = (
                    f"damage at offset {scan.damaged_at} (batch {scan.damaged_batch}), "
                    f"yet {evidence}"
                )
                return _corrupt(analysis, path, scan.damaged_at, detail)
            analysis.verdict = LogVerdict.TORN
            analysis.problem_segment = path
            analysis.problem_offset = scan.damaged_at
            analysis.detail = f"torn tail at offset {scan.damaged_at} of {path.name}"
            analysis.discard_segments = [later_path for _, later_path in segments[position + 1 :]]
            return analysis
        if scan.seal is not None:
            seal = scan.seal
            following = segments[position + 1] if position + 1 < len(segments) else None
            if following is None or following[0] != seal.next_index:
                detail = (
                    f"sealed at offset {seal.offset}: the log continues in "
                    f"{segment_path(directory, seal.next_index).name} at lsn {seal.lsn}, "
                    "which is missing (the log's tail was removed)"
                )
                return _corrupt(analysis, path, seal.offset, detail)
            state.sealed = True
    return analysis


def _segment_problem(
    header: SegmentHeader,
    index: int,
    size: int,
    expected_index: int | None,
    expected_lsn: int | None,
) -> str | None:
    """What is wrong with a segment's place in the log, judged from its header, or None."""
    if header.index != index:
        return f"the header names segment {header.index}: the file was renamed"
    if header.segment_bytes and size != header.segment_bytes:
        return (
            f"the segment is {size} bytes but was preallocated to {header.segment_bytes}: "
            "it was truncated or extended"
        )
    if expected_index is not None and index != expected_index:
        return f"segment {expected_index} is missing before it"
    if expected_lsn is not None and header.first_lsn != expected_lsn:
        return f"segment starts at lsn {header.first_lsn}, expected {expected_lsn}"
    return None


def _corrupt(analysis: LogAnalysis, path: Path, offset: int, detail: str) -> LogAnalysis:
    analysis.verdict = LogVerdict.CORRUPT
    analysis.problem_segment = path
    analysis.problem_offset = offset
    analysis.detail = f"{path.name}: {detail}"
    return analysis


def _later_batch_anywhere(
    data: bytes, damaged_at: int, batch: int, later_segments: list[tuple[int, Path]]
) -> str | None:
    """Evidence that `batch` had been made durable (so its damage is corruption), or None.

    Evidence is an intact record of a later batch after the damage, in this segment or a
    later one, or an intact later segment header naming a later batch: the writer creates
    a segment only when it writes a batch, after the batches before it were fsync'd.
    """
    record = find_later_batch(data, damaged_at + 8, batch)
    if record is not None:
        return (
            f"an intact record of later batch {record.batch} (lsn {record.lsn}) follows "
            f"at offset {record.offset}"
        )
    for _, path in later_segments:
        later_data = read_file(path)
        with contextlib.suppress(SegmentHeaderError):
            header = decode_segment_header(later_data)
            if header.first_batch > batch:
                return (
                    f"{path.name} follows it, created for later batch {header.first_batch} "
                    "after the batches before it were durable"
                )
        # A later segment's records were written after everything in this one was durable,
        # its seal included (a damaged seal carries the batch the next segment starts with).
        record = find_later_batch(later_data, SEGMENT_HEADER_SIZE, batch - 1)
        if record is not None:
            return (
                f"an intact record of later batch {record.batch} (lsn {record.lsn}) follows "
                f"in {path.name} at offset {record.offset}"
            )
    return None


def repair_torn_tail(analysis: LogAnalysis) -> None:
    """Zero the torn tail and drop the segments after it (they hold nothing durable)."""
    assert analysis.verdict is LogVerdict.TORN
    assert analysis.problem_segment is not None
    path = analysis.problem_segment
    with open(path, "r+b") as handle:
        data = handle.read()
        stop = len(data.rstrip(b"\0"))
        handle.seek(analysis.problem_offset)
        remaining = max(0, stop - analysis.problem_offset)
        while remaining > 0:
            chunk = _ZEROS[: min(remaining, len(_ZEROS))]
            handle.write(chunk)
            remaining -= len(chunk)
        handle.flush()
        os.fdatasync(handle.fileno())
    for discarded in analysis.discard_segments:
        discarded.unlink()
    fsync_directory(path.parent)
    analysis.verdict = LogVerdict.CLEAN
    analysis.discard_segments = []


def spare_problem(
    path: Path, segment_bytes: int | None = None, *, contents: bool = True
) -> str | None:
    """Why the spare segment cannot be used as it is, or None (read only). Damage is a
    spare too small for a segment or holding non-zero bytes; given `segment_bytes`, a spare
    of another size (the configured size changed) is one to make again as well."""
    try:
        size = path.stat().st_size
        if size < _SPARE_BYTES_MIN:
            return f"is {size} bytes, too small for a segment"
        if segment_bytes is not None and size != segment_bytes:
            return f"is {size} bytes instead of {segment_bytes}"
        if not contents:
            return None
        with open(path, "rb") as handle:
            while block := handle.read(len(_ZEROS)):
                if block.count(0) != len(block):
                    return "holds non-zero bytes"
    except OSError as error:
        return str(access_error(path, error, "cannot read"))
    return None


def _grow_zeroed(path: Path, size: int) -> None:
    """Make the zero-filled file at `path` at least `size` bytes (rounded up to 4 KiB),
    writing the zeros (so the blocks exist) and syncing them."""
    target = -(-size // _BLOCK_BYTES) * _BLOCK_BYTES
    if path.stat().st_size >= target:
        return
    with open(path, "r+b") as handle:
        end = handle.seek(0, os.SEEK_END)
        while end < target:
            end += handle.write(_ZEROS[: min(target - end, len(_ZEROS))])
        handle.flush()
        os.fdatasync(handle.fileno())


def create_first_segment(directory: Path, segment_bytes: int) -> None:
    """Create a new store's first segment (lsn 1, batch 1) before anything else of it, so
    that a store's applied state never exists without a log beside it."""
    temporary = directory / (SPARE_NAME + ".part")
    with open(temporary, "wb") as handle:
        handle.write(encode_segment_header(SegmentHeader(1, 1, 1, segment_bytes)))
        remaining = segment_bytes - SEGMENT_HEADER_SIZE
        while remaining > 0:
            remaining -= handle.write(_ZEROS[: min(remaining, len(_ZEROS))])
        handle.flush()
        os.fdatasync(handle.fileno())
    os.rename(temporary, segment_path(directory, 1))
    fsync_directory(directory)


# -- the writer ----------------------------------------------------------------------------

# No segment is smaller: a header and the room a reopened segment needs to be written on.
_SPARE_BYTES_MIN = SEGMENT_HEADER_SIZE + SEGMENT_ROOM_MIN


class _NothingWritten(Exception):
    """The disk was full before any byte of a batch was written: the batch can be given back
    (its waiters and those appended after it fail with DISK_FULL; nothing else changes)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.dropped: list[asyncio.Future[None]] = []


class _Fatal(Exception):
    """A write or sync failed otherwise: the log is closed for writing; `waiters` (the open
    batch's and every barrier) fail with the batch's own."""

    def __init__(self, cause: BaseException, waiters: list[asyncio.Future[None]]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.waiters = waiters


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _fail_all(futures: list[asyncio.Future[None]], failure: BraidError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(failure)
            future.exception()  # retrieved here: an abandoned waiter must not log it


@dataclass
class _Segment:
    index: int
    path: Path
    first_lsn: int


class WalWriter:
    """Appends records to the log with group commit: the driver of the pure `Batcher`.

    `append`, `sync`, `wait_for_room` and `close` are for the event loop's thread. The
    writes and fsyncs happen in the writer thread (`braid-wal`), which takes whatever the
    open batch holds whenever the disk is free: it goes from one fsync straight to the
    next without waiting for the event loop, so a busy loop delays acknowledgements but
    never leaves the disk idle. The batcher, shared with the writer thread, is guarded by
    `_lock`; the active segment's file descriptor belongs to whoever is writing a batch.
    """

    def __init__(
        self,
        directory: Path,
        analysis: LogAnalysis,
        next_lsn: int,
        segment_bytes: int = limits.wal_segment_bytes,
    ) -> None:
        assert analysis.verdict is LogVerdict.CLEAN
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._spare_lock = threading.Lock()
        self._spare_thread: threading.Thread | None = None
        self._segments_lock = threading.Lock()
        self._segments = [
            _Segment(state.index, state.path, state.header.first_lsn)
            for state in analysis.segments
            if state.header is not None
        ]
        last_record = analysis.records[-1] if analysis.records else None
        first_lsn = max(next_lsn, last_record.lsn + 1 if last_record else 1)
        last_batch = max((state.last_batch for state in analysis.segments), default=0)
        self._fd = -1
        # An unsealed last segment too full to write on is sealed at the next rotation.
        self._unsealed: tuple[int, int] | None = None
        last = analysis.segments[-1] if analysis.segments else None
        layout = Layout(None, 0, 0, last.index if last is not None else 0)
        if last is not None and last.header is not None and not last.sealed:
            size = last.header.segment_bytes or segment_bytes
            if last.end + SEGMENT_ROOM_MIN < size:
                self._fd = os.open(last.path, _SEGMENT_FLAGS)
                layout = Layout(last.index, last.end, size, last.index)
            elif last.end + SEAL_BYTES <= size:
                self._unsealed = (last.index, last.end)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        # Guarded by _lock (shared with the writer thread):
        self._batcher: Batcher[asyncio.Future[None]] = Batcher(first_lsn, last_batch + 1, layout)
        self._idle = False  # the writer thread is waiting for work
        # Called on the event loop's thread when a batch the full disk refused was given
        # back, with its first lsn: the engine reverts what it applied from there on.
        self.on_rollback: Callable[[int], None] = lambda first_lsn: None
        # Event-loop thread only:
        self._loop = asyncio.get_running_loop()
        self._kick_scheduled = False
        self._drained = asyncio.Event()
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        self._housekeeping = ThreadPoolExecutor(1, thread_name_prefix="braid-wal-release")
        # Plain counters for metrics (read at scrape time; nothing on the hot path but an add).
        self.records_appended = 0
        self.batches_synced = 0
        self.sync_seconds_total = 0.0
        self.disk_full_total = 0  # batches refused for want of space (then retried later)
        self._thread = threading.Thread(target=self._run, name="braid-wal", daemon=True)
        self._thread.start()
        self._start_spare()

    @property
    def next_lsn(self) -> int:
        return self._batcher.next_lsn

    @property
    def durable_lsn(self) -> int:
        return self._batcher.durable_lsn

    @property
    def failed(self) -> bool:
        return self._batcher.failure is not None

    @property
    def full(self) -> bool:
        """Whether the open batch is at its bound; writers then `await wait_for_room()`."""
        return self._batcher.full

    def check_writable(self) -> None:
        batcher = self._batcher
        if batcher.failure is not None or batcher.rolling_back:
            batcher.check()

    async def wait_for_room(self) -> None:
        """Wait while the open batch is full (bounded memory under overload)."""
        while self.full and not self.failed:
            self._drained.clear()
            await self._drained.wait()
        self.check_writable()

    def append(self, kind: RecordType, payload: bytes) -> tuple[int, asyncio.Future[None]]:
        """Frame a record into the open batch; its own future resolves once it is durable.

        Each record has its own future so that cancelling one waiter cannot disturb the
        others that share its fsync.
        """
        future = self._loop.create_future()
        with self._lock:
            lsn = self._batcher.append(kind, payload, future)
        self.records_appended += 1
        if not self._kick_scheduled:
            # At the end of this loop iteration, so the records appended in it share a batch.
            self._kick_scheduled = True
            self._loop.call_soon(self._kick)
        return lsn, future

    async def sync(self) -> None:
        """Wait until every record appended so far is durable (or the log failed). While a
        batch refused for want of space is being given back, wait until it has been (the
        engine reverts what it applied first), so nothing refused is read in between."""
        future = self._loop.create_future()
        with self._lock:
            if self._batcher.barrier(future):
                return
        await future

    # -- handing batches to the disk -------------------------------------------------------

    def _kick(self) -> None:
        """Start the open batch: wake the writer thread, or write a lone small record here.

        A batch of one record means the load is low; handing it to the writer thread and
        back costs two thread wake-ups, more than the synced write itself on a fast disk.
        Blocking the loop for one write is then the cheaper choice. Larger batches, any
        that would start a new segment, and any once `close` has begun go to the writer
        thread.
        """
        self._kick_scheduled = False
        with self._lock:
            batcher = self._batcher
            if not batcher.ready or batcher.failure is not None:
                return  # the writer picks the open batch up when its current one is done
            inline = (
                self._idle
                and not batcher.closing  # the writer thread, woken by close, must do it
                and batcher.open_records == 1
                and batcher.open_bytes <= limits.wal_inline_sync_bytes_max
                # the batch and its commit marker (a bare record header) fit the segment
                and batcher.fits(batcher.open_bytes + RECORD_HEADER_SIZE)
            )
            if not inline:
                self._wakeup.notify()
                return
            batch = batcher.take()
        seconds, error = self._write_sealed(batch)
        if isinstance(error, _NothingWritten):
            self._rolled_back(batch.first_lsn, error.dropped, error.cause)
        elif error is not None:
            self._fail(error, batch.waiters)
        else:
            self._complete(batch, seconds)

    def _write_sealed(
        self, batch: Batch[asyncio.Future[None]]
    ) -> tuple[float, _NothingWritten | _Fatal | None]:
        """Write a taken batch (either thread): seconds taken, or the error, which is
        recorded in the batcher at once (no more appends, or the batch given back)."""
        started = time.perf_counter()
        try:
            self._write_batch(batch)
        except _NothingWritten as refused:
            with self._lock:  # give the batch back, and every record appended after it
                refused.dropped = self._batcher.refused(batch)
            return 0.0, refused
        except BaseException as error:  # any other failure is fatal for the log
            with self._lock:
                refused_waiters = self._batcher.failed(str(error))
            return 0.0, _Fatal(error, refused_waiters)
        with self._lock:
            self._batcher.written(batch)
        return time.perf_counter() - started, None

    def _rolled_back(
        self, first_lsn: int, dropped: list[asyncio.Future[None]], cause: OSError
    ) -> None:
        """A batch the full disk refused was given back (event-loop thread): the engine
        reverts what it applied from lsn `first_lsn` on, then its writers get DISK_FULL and
        every barrier is met (all that is left in the log is durable)."""
        self.disk_full_total += 1
        try:
            self.on_rollback(first_lsn)
        finally:
            with self._lock:
                released = self._batcher.reverted()
        failure = BraidError(
            DISK_FULL,
            f"the disk is full: the write-ahead log in {self._directory} could not take the "
            f"write ({cause.strerror}); nothing of it was logged",
        )
        _fail_all(dropped, failure)
        _resolve_all(released)
        self._drained.set()

    def _complete(self, batch: Batch[asyncio.Future[None]], seconds: float) -> None:
        """A batch is durable (event-loop thread): release its writers and met barriers."""
        self.sync_seconds_total += seconds
        self.batches_synced += 1
        with self._lock:
            released = self._batcher.completed(batch)
        _resolve_all(released)
        self._drained.set()

    def _fail(self, fatal: _Fatal, batch_waiters: list[asyncio.Future[None]]) -> None:
        """The log failed (event-loop thread): every waiter gets WAL_FAILED."""
        failure = BraidError(WAL_FAILED, f"write or fsync of the log failed: {fatal.cause}")
        _fail_all([*batch_waiters, *fatal.waiters], failure)
        self._drained.set()

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        post = self._loop.call_soon_threadsafe
        try:
            while True:
                with self._lock:
                    batcher = self._batcher
                    while not batcher.ready and not (batcher.closing and not batcher.writing):
                        self._idle = True
                        self._wakeup.wait()
                    self._idle = False
                    if not batcher.ready:  # closing, and everything is written
                        post(self._stopped_ok)
                        return
                    batch = batcher.take()
                seconds, error = self._write_sealed(batch)
                if isinstance(error, _NothingWritten):
                    post(self._rolled_back, batch.first_lsn, error.dropped, error.cause)
                    continue
                if error is not None:
                    post(self._fail, error, batch.waiters)
                    post(self._stopped_ok)
                    return
                post(self._complete, batch, seconds)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            return

    def _stopped_ok(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)

    def _write_batch(self, batch: Batch[asyncio.Future[None]]) -> None:
        """Write a taken batch where the batcher places it. Raises _NothingWritten when the
        disk is full before any of its bytes were written (the batch can be given back);
        anything else is fatal."""
        offset = self._batcher.placement(batch)
        if offset is None:
            self._rotate(batch)
            offset = self._batcher.layout.offset
        start = offset
        view = memoryview(batch.data)
        while view:
            try:
                written = os.pwrite(self._fd, view, offset)  # durable when it returns (O_DSYNC)
            except OSError as error:
                if offset == start and is_disk_full(error):
                    raise _NothingWritten(error) from error
                raise
            view = view[written:]
            offset += written

    def _rotate(self, batch: Batch[asyncio.Future[None]]) -> None:
        """Move to a new segment as the batcher says: the spare, headed and named, then the
        old segment's seal.

        The new segment exists (its header durable, the directory synced) before the old
        one is sealed, so a crash between the two leaves a log that reads the same. A batch
        larger than a segment (a small configured segment size) gets a spare grown to hold
        it, zero-filled before it is named, and the header records the size it has."""
        if self._spare_thread is not None:
            self._spare_thread.join()
        spare = self._directory / SPARE_NAME
        try:
            if not spare.exists():
                self._prepare_spare()
            _grow_zeroed(spare, Batcher.segment_bytes_needed(batch))
        except OSError as error:
            if is_disk_full(error):
                raise _NothingWritten(error) from error
            raise
        fd = os.open(spare, _SEGMENT_FLAGS)
        rotation = self._batcher.rotation(batch, os.fstat(fd).st_size, self._unsealed)
        os.pwrite(fd, rotation.header, 0)  # durable when it returns (O_DSYNC)
        path = segment_path(self._directory, rotation.index)
        os.rename(spare, path)
        fsync_directory(self._directory)
        if self._fd >= 0:
            os.pwrite(self._fd, rotation.seal, rotation.seal_offset)  # durable (O_DSYNC)
            os.close(self._fd)
        elif rotation.sealed_index is not None:
            previous = segment_path(self._directory, rotation.sealed_index)
            with open(previous, "r+b") as handle:
                os.pwrite(handle.fileno(), rotation.seal, rotation.seal_offset)
                os.fdatasync(handle.fileno())
        self._unsealed = None
        self._fd = fd
        with self._lock:
            self._batcher.rotated(rotation)
        with self._segments_lock:
            self._segments.append(_Segment(rotation.index, path, batch.first_lsn))
        self._start_spare()

    def _start_spare(self) -> None:
        self._spare_thread = threading.Thread(
            target=self._prepare_spare_quietly, name="braid-wal-spare", daemon=True
        )
        self._spare_thread.start()

    def _prepare_spare_quietly(self) -> None:
        # A failure here surfaces at the next rotation, which prepares the spare itself.
        with contextlib.suppress(OSError):
            self._prepare_spare()

    def _prepare_spare(self) -> None:
        """Make sure a spare segment is ready: a zero-filled file of the segment size.

        A spare that is not exactly that (a crash between writing a header into it and
        renaming it, or damage) is deleted and made again: it holds nothing of the log."""
        with self._spare_lock:
            final = self._directory / SPARE_NAME
            if final.exists():
                problem = spare_problem(final, self._segment_bytes)
                if problem is None:
                    return
                log.warning("%s %s: made again (it holds no data)", final, problem)
                final.unlink()
            temporary = self._directory / (SPARE_NAME + ".part")
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                remaining = self._segment_bytes
                while remaining > 0:
                    remaining -= os.write(fd, _ZEROS[: min(remaining, len(_ZEROS))])
                os.fdatasync(fd)
            except BaseException:
                os.close(fd)
                temporary.unlink()  # a partial spare must not hold on to a full disk's space
                raise
            os.close(fd)
            os.rename(temporary, final)
            fsync_directory(self._directory)

    # -- segments no longer needed --------------------------------------------------------

    def _release_through(self, applied_lsn: int) -> int:
        with self._segments_lock:
            count = releasable([segment.first_lsn for segment in self._segments], applied_lsn)
            released = [segment.path for segment in self._segments[:count]]
            del self._segments[:count]
        for path in released:
            path.unlink()
        if released:
            fsync_directory(self._directory)
        return len(released)

    async def release_through(self, applied_lsn: int) -> int:
        """Delete segments whose every record is at or below applied_lsn (never the last)."""
        return await self._loop.run_in_executor(
            self._housekeeping, self._release_through, applied_lsn
        )

    def segment_count(self) -> int:
        with self._segments_lock:
            return len(self._segments)

    async def close(self) -> None:
        """Write what is pending, then stop. Safe to call twice."""
        if not self._batcher.closing:
            with self._lock:
                self._batcher.closing = True
                self._wakeup.notify()
            await asyncio.shield(self._stopped)
            self._thread.join()
            if self._spare_thread is not None:
                self._spare_thread.join()
            self._housekeeping.shutdown(wait=True)
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        else:
            await asyncio.shield(self._stopped)
