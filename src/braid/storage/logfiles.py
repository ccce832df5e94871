"""The log's files: reading them back (`analyze_log`) and every sequence of file operations
the log makes, through the `braid.ports.Disk` port.

Segments live in one directory as `seg-NNNNNNNN.wal`, each preallocated and zero-filled
before it is used (overwriting preallocated blocks makes a synced write cheaper than growing
a file). The format is in `braid.core.wal.record`. `LogFiles` is everything the log does to
its directory, each sequence ordered so that a crash at any point leaves a log that reads
the same or is repaired on the next open: the first segment, the spare, the rotation to a
new segment (header, name, seal), a batch's write, the repair of a torn tail, the release
of segments the applied state holds. It holds no threads: the writer (`braid.storage.wal`)
runs it on real files, the simulator (`braid.sim.store`) on a simulated disk that crashes
between any two of its operations.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import re
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braid.core.apply import releasable
from braid.core.wal.batcher import SEAL_BYTES, SEGMENT_ROOM_MIN, Batch, Batcher, Layout
from braid.core.wal.record import (
    SEGMENT_HEADER_SIZE,
    Record,
    SegmentHeader,
    SegmentHeaderError,
    decode_segment_header,
    encode_segment_header,
    find_later_batch,
    scan_segment,
    written_whole,
)
from braid.errors import DISK_FULL, STORE_ACCESS, BraidError
from braid.ports import Disk
from braid.runtime.disk import RealDisk

log = logging.getLogger("braid.store")
_SEGMENT_NAME = re.compile(r"seg-(\d{8})\.wal")
SPARE_NAME = "spare.tmp"
SPARE_PART_NAME = SPARE_NAME + ".part"  # a spare being made (never finished: removed)
_ZEROS = bytes(1 << 20)
_BLOCK_BYTES = 4096  # a file system block: files are grown in whole ones
# No segment is smaller: a header and the room a reopened segment needs to be written on.
SPARE_BYTES_MIN = SEGMENT_HEADER_SIZE + SEGMENT_ROOM_MIN


def segment_name(index: int) -> str:
    return f"seg-{index:08d}.wal"


def segment_path(directory: Path, index: int) -> Path:
    return directory / segment_name(index)


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


def _segment_names(disk: Disk, directory: Path) -> list[tuple[int, str]]:
    try:
        names = disk.list("")
    except OSError as error:
        raise access_error(directory, error, "cannot list") from None
    found = []
    for name in names:
        match = _SEGMENT_NAME.fullmatch(name)
        if match:
            found.append((int(match.group(1)), name))
    return sorted(found)


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segments in a real log directory, by index."""
    return [
        (index, directory / name) for index, name in _segment_names(RealDisk(directory), directory)
    ]


def _read(disk: Disk, directory: Path, name: str) -> bytes:
    """A log file's bytes; an environmental failure becomes STORE_ACCESS naming it."""
    try:
        return disk.read(name)
    except OSError as error:
        raise access_error(directory / name, error, "cannot read") from None


# -- analysis (read only) ------------------------------------------------------------------


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


def analyze_log(directory: Path, disk: Disk | None = None) -> LogAnalysis:
    """Scan every segment in `directory` without changing anything (through `disk`, rooted
    at the directory, when given: the simulator's; the paths reported are `directory`'s).

    Besides each segment's records, the scan checks what the files say of each other: a
    segment's name and header agree, it has the size its header records (segments are
    preallocated before they are named, so a short one was truncated), consecutive segments
    continue each other's lsns and indexes, and a sealed segment's successor exists.
    """
    disk = RealDisk(directory) if disk is None else disk
    analysis = LogAnalysis()
    segments = _segment_names(disk, directory)
    expected_lsn: int | None = None
    expected_index: int | None = None
    for position, (index, name) in enumerate(segments):
        path = directory / name
        data = _read(disk, directory, name)
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
            later = [name for _, name in segments[position + 1 :]]
            evidence = _later_batch_anywhere(
                disk, directory, data, scan.damaged_at, scan.damaged_batch, later
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
            analysis.detail = f"torn tail at offset {scan.damaged_at} of {name}"
            analysis.discard_segments = [directory / later_name for later_name in later]
            return analysis
        if scan.seal is not None:
            seal = scan.seal
            following = segments[position + 1] if position + 1 < len(segments) else None
            if following is None or following[0] != seal.next_index:
                detail = (
                    f"sealed at offset {seal.offset}: the log continues in "
                    f"{segment_name(seal.next_index)} at lsn {seal.lsn}, "
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
    disk: Disk,
    directory: Path,
    data: bytes,
    damaged_at: int,
    batch: int,
    later_segments: list[str],
) -> str | None:
    """Evidence that `batch` had been made durable (so its damage is corruption), or None.

    Evidence is an intact record of a later batch after the damage, in this segment or a
    later one, or an intact later segment header naming a later batch: the writer creates
    a segment only when it writes a batch, after the batches before it were durable.
    """
    record = find_later_batch(data, damaged_at + 8, batch)
    if record is not None:
        return (
            f"an intact record of later batch {record.batch} (lsn {record.lsn}) follows "
            f"at offset {record.offset}"
        )
    for name in later_segments:
        later_data = _read(disk, directory, name)
        with contextlib.suppress(SegmentHeaderError):
            header = decode_segment_header(later_data)
            if header.first_batch > batch:
                return (
                    f"{name} follows it, created for later batch {header.first_batch} "
                    "after the batches before it were durable"
                )
        # A later segment's records were written after everything in this one was durable,
        # its seal included (a damaged seal carries the batch the next segment starts with).
        record = find_later_batch(later_data, SEGMENT_HEADER_SIZE, batch - 1)
        if record is not None:
            return (
                f"an intact record of later batch {record.batch} (lsn {record.lsn}) follows "
                f"in {name} at offset {record.offset}"
            )
    return None


def spare_problem(
    disk: Disk, name: str = SPARE_NAME, segment_bytes: int | None = None, *, contents: bool = True
) -> str | None:
    """Why the spare segment cannot be used as it is, or None (read only). Damage is a
    spare too small for a segment or holding non-zero bytes; given `segment_bytes`, a spare
    of another size (the configured size changed) is one to make again as well. An
    environmental failure reading it is raised (OSError)."""
    size = disk.size(name)
    if size < SPARE_BYTES_MIN:
        return f"is {size} bytes, too small for a segment"
    if segment_bytes is not None and size != segment_bytes:
        return f"is {size} bytes instead of {segment_bytes}"
    if not contents:
        return None
    for offset in range(0, size, len(_ZEROS)):
        block = disk.read(name, offset, len(_ZEROS))
        if block.count(0) != len(block):
            return "holds non-zero bytes"
    return None


# -- the log's file operations -------------------------------------------------------------


class NothingWritten(Exception):
    """The disk was full before any byte of a batch was written: the batch can be given back
    (its waiters and those appended after it fail with DISK_FULL; nothing else changes)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True, slots=True)
class _Segment:
    index: int
    name: str
    first_lsn: int


class LogFiles:
    """Every sequence of file operations the log makes, on `disk` (rooted at the log
    directory, `directory`), and what it needs to remember between them: the segments in
    order, the active one, an unsealed last one.

    Callers serialize `write` (one batch at a time) and `prepare_spare`; `release_through`
    and `segment_count` may run beside them (the segment list has its own lock).
    """

    def __init__(self, disk: Disk, directory: Path, segment_bytes: int) -> None:
        self.disk = disk
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._segments_lock = threading.Lock()
        self._spare_lock = threading.Lock()
        self._active: str | None = None  # the segment batches are written to
        # An unsealed last segment too full to write on is sealed at the next rotation.
        self._unsealed: tuple[int, int] | None = None

    def analyze(self) -> LogAnalysis:
        return analyze_log(self.directory, self.disk)

    # -- opening --------------------------------------------------------------------------

    def prepare(self, analysis: LogAnalysis) -> LogAnalysis:
        """Make the log writable as the scan found it: drop a spare never finished, create
        a new log's first segment, repair a torn tail. Every step is one a crash may
        interrupt and the next open redo. Returns the analysis of the prepared log."""
        disk = self.disk
        if disk.exists(SPARE_PART_NAME):
            disk.remove(SPARE_PART_NAME)
        if not analysis.segments:
            self._create_first_segment()
            analysis = self.analyze()
        if analysis.verdict is LogVerdict.TORN:
            self._repair_torn_tail(analysis)
        return analysis

    def _create_first_segment(self) -> None:
        """A new log's first segment (lsn 1, batch 1), made whole before it is named, so
        that a store's applied state never exists without a log beside it."""
        disk = self.disk
        size = self.segment_bytes
        disk.create(SPARE_PART_NAME, size, synced=False)  # one sync below covers both
        disk.write(SPARE_PART_NAME, 0, encode_segment_header(SegmentHeader(1, 1, 1, size)))
        disk.sync(SPARE_PART_NAME)
        disk.rename(SPARE_PART_NAME, segment_name(1))
        disk.sync_directory("")

    def _repair_torn_tail(self, analysis: LogAnalysis) -> None:
        """Zero the torn tail and drop the segments after it (they hold nothing durable)."""
        assert analysis.verdict is LogVerdict.TORN
        assert analysis.problem_segment is not None
        disk = self.disk
        name = analysis.problem_segment.name
        data = disk.read(name)
        stop = len(data.rstrip(b"\0"))
        for offset in range(analysis.problem_offset, stop, len(_ZEROS)):
            disk.write(name, offset, _ZEROS[: min(stop - offset, len(_ZEROS))])
        disk.sync(name)
        for discarded in analysis.discard_segments:
            disk.remove(discarded.name)
        disk.sync_directory("")
        analysis.verdict = LogVerdict.CLEAN
        analysis.discard_segments = []

    def start(self, analysis: LogAnalysis, next_lsn: int) -> tuple[int, int, Layout]:
        """Where writing resumes in a clean log: the next lsn (at least `next_lsn`, the one
        after what the applied state holds), the next batch number, and the layout. Raises
        OSError when the segment to write on cannot be written."""
        assert analysis.verdict is LogVerdict.CLEAN
        self._segments = [
            _Segment(state.index, state.path.name, state.header.first_lsn)
            for state in analysis.segments
            if state.header is not None
        ]
        last_record = analysis.records[-1] if analysis.records else None
        first_lsn = max(next_lsn, last_record.lsn + 1 if last_record else 1)
        last_batch = max((state.last_batch for state in analysis.segments), default=0)
        last = analysis.segments[-1] if analysis.segments else None
        layout = Layout(None, 0, 0, last.index if last is not None else 0)
        if last is not None and last.header is not None and not last.sealed:
            size = last.header.segment_bytes or self.segment_bytes
            if last.end + SEGMENT_ROOM_MIN < size:
                self._active = last.path.name
                self.disk.open_synced(self._active)  # an unwritable segment fails the open
                layout = Layout(last.index, last.end, size, last.index)
            elif last.end + SEAL_BYTES <= size:
                self._unsealed = (last.index, last.end)
        return first_lsn, last_batch + 1, layout

    # -- writing --------------------------------------------------------------------------

    def write(
        self, batch: Batch[Any], batcher: Batcher[Any], lock: AbstractContextManager[Any]
    ) -> None:
        """Write a taken batch where the batcher places it, rotating to a new segment first
        when it says so (`lock` guards the batcher while the rotation is recorded in it).
        Durable when this returns. Raises NothingWritten when the disk is full before any of
        its bytes were written (the batch can be given back); anything else is fatal."""
        offset = batcher.placement(batch)
        if offset is None:
            self._rotate(batch, batcher, lock)
            offset = batcher.layout.offset
        active = self._active
        assert active is not None
        write_synced = self.disk.write_synced
        data = batch.data
        try:
            written = write_synced(active, offset, data)
        except OSError as error:
            if is_disk_full(error):  # nothing of it was written
                raise NothingWritten(error) from error
            raise
        if written == len(data):
            return  # the whole batch in one write, as almost always
        view = memoryview(data)[written:]  # a short write: the rest, from where it stopped
        offset += written
        while view:
            written = write_synced(active, offset, view)
            view = view[written:]
            offset += written

    def _rotate(
        self, batch: Batch[Any], batcher: Batcher[Any], lock: AbstractContextManager[Any]
    ) -> None:
        """Move to a new segment as the batcher says: the spare, headed and named, then the
        old segment's seal.

        The new segment exists (its header durable, the directory synced) before the old
        one is sealed, so a crash between the two leaves a log that reads the same. A batch
        larger than a segment (a small configured segment size) gets a spare grown to hold
        it, zero-filled before it is named, and the header records the size it has."""
        disk = self.disk
        try:
            if not disk.exists(SPARE_NAME):
                self.prepare_spare()
            self._grow_spare(Batcher.segment_bytes_needed(batch))
        except OSError as error:
            if is_disk_full(error):
                raise NothingWritten(error) from error
            raise
        rotation = batcher.rotation(batch, disk.size(SPARE_NAME), self._unsealed)
        disk.write_synced(SPARE_NAME, 0, rotation.header)  # a header is one sector
        name = segment_name(rotation.index)
        disk.rename(SPARE_NAME, name)
        disk.sync_directory("")
        if rotation.sealed_index is not None:
            disk.write_synced(
                segment_name(rotation.sealed_index), rotation.seal_offset, rotation.seal
            )
        self._unsealed = None
        self._active = name
        with lock:
            batcher.rotated(rotation)
        with self._segments_lock:
            self._segments.append(_Segment(rotation.index, name, batch.first_lsn))

    def _grow_spare(self, size: int) -> None:
        """Make the zero-filled spare at least `size` bytes (rounded up to a block), writing
        the zeros (so the blocks exist) and syncing them."""
        disk = self.disk
        target = -(-size // _BLOCK_BYTES) * _BLOCK_BYTES
        end = disk.size(SPARE_NAME)
        if end >= target:
            return
        while end < target:
            chunk = _ZEROS[: min(target - end, len(_ZEROS))]
            disk.write(SPARE_NAME, end, chunk)
            end += len(chunk)
        disk.sync(SPARE_NAME)

    def prepare_spare(self) -> None:
        """Make sure a spare segment is ready: a zero-filled file of the segment size.

        A spare that is not exactly that (a crash between writing a header into it and
        renaming it, or damage) is deleted and made again: it holds nothing of the log. A
        spare that cannot be made whole (a full disk) is not left behind holding space."""
        disk = self.disk
        with self._spare_lock:
            if disk.exists(SPARE_NAME):
                problem = spare_problem(disk, SPARE_NAME, self.segment_bytes)
                if problem is None:
                    return
                log.warning(
                    "%s %s: made again (it holds no data)", self.directory / SPARE_NAME, problem
                )
                disk.remove(SPARE_NAME)
            if disk.exists(SPARE_PART_NAME):
                disk.remove(SPARE_PART_NAME)
            disk.create(SPARE_PART_NAME, self.segment_bytes)  # removed again if it fails
            disk.rename(SPARE_PART_NAME, SPARE_NAME)
            disk.sync_directory("")

    # -- segments no longer needed --------------------------------------------------------

    def release_through(self, applied_lsn: int) -> int:
        """Delete the segments whose every record is at or below `applied_lsn` (never the
        last); returns how many."""
        with self._segments_lock:
            count = releasable([segment.first_lsn for segment in self._segments], applied_lsn)
            released = [segment.name for segment in self._segments[:count]]
            del self._segments[:count]
        for name in released:
            self.disk.remove(name)
        if released:
            self.disk.sync_directory("")
        return len(released)

    def segment_count(self) -> int:
        with self._segments_lock:
            return len(self._segments)

    def close(self) -> None:
        self.disk.close()
