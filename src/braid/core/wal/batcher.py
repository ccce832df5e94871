"""Group commit as rules: which records share a batch, each batch's commit marker, where a
batch goes in the segments, and which waiters a finished batch releases.

Pure: no files, threads or clocks. A driver (the real writer in `braid.storage.wal`, or a
simulator) feeds it what happened and does the I/O it asks for:

    append(kind, payload, waiter) -> lsn        a record joins the open batch
    take() -> Batch                             the disk is free: seal the open batch
    placement(batch) -> offset | None           where it goes (None: a new segment first)
    rotation(batch, size) -> Rotation           the new segment's header and the old one's seal
    rotated(rotation)                           ... which the driver wrote (header, name, seal)
    written(batch)                              the batch is durable on disk
    completed(batch) -> [waiter]                release its waiters and the barriers it meets
    refused(batch) -> [waiter]                  the disk was full before any byte was written
    reverted() -> [waiter]                      the engine undid what the refused writes did
    failed(error) -> [waiter]                   any other failure: fatal for the log
    barrier(waiter) -> bool                     wait until everything appended is durable

A waiter is whatever the driver uses to tell a writer (a future, or a name in a scenario).
Only one batch is out at a time: `take` is refused while one is being written, and the next
batch fills meanwhile, so the batch size follows the load.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from braid import limits
from braid.core.wal.record import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordType,
    SegmentHeader,
    encode_record,
    encode_seal,
    encode_segment_header,
)
from braid.errors import DISK_FULL, RECORD_TOO_LARGE, STORE_CLOSED, WAL_FAILED, BraidError

W = TypeVar("W")

_PAYLOAD_BYTES_MAX = limits.wal_record_payload_bytes_max
_BATCH_BYTES_MAX = limits.wal_batch_bytes_max
SEAL_BYTES = RECORD_HEADER_SIZE + 8  # a seal record: its header and the next segment's index
# A segment is written on after a reopen only if at least this much room is left in it.
SEGMENT_ROOM_MIN = limits.wal_segment_room_bytes_min
assert SEGMENT_ROOM_MIN > SEAL_BYTES + RECORD_HEADER_SIZE


@dataclass(slots=True)
class Batch(Generic[W]):
    """A sealed batch: its bytes (records, then the commit marker) and one waiter per record.
    Not changed once taken; not frozen only because a frozen dataclass costs four times as
    much to create, and one is created for every batch (at low load, every record)."""

    number: int
    first_lsn: int
    marker_lsn: int
    data: bytes
    waiters: list[W]


@dataclass(frozen=True, slots=True)
class Rotation:
    """Moving to a new segment: write `header` into the spare (sized `size`), name it
    segment `index`, sync the directory, then write `seal` at `seal_offset` of segment
    `sealed_index` (None: there is no previous segment to seal)."""

    index: int
    size: int
    header: bytes
    seal: bytes
    sealed_index: int | None
    seal_offset: int


@dataclass(slots=True)
class Layout:
    """Where the log is being written: the active segment (None before the first), the
    offset its data ends at and its size, and the newest segment's index."""

    active_index: int | None
    offset: int
    size: int
    last_index: int


@dataclass
class Batcher(Generic[W]):
    """The group-commit state (see the module text). The driver serializes calls."""

    next_lsn: int
    next_batch: int
    layout: Layout
    durable_lsn: int = field(init=False)
    writing: bool = field(default=False, init=False)
    closing: bool = field(default=False, init=False)
    rolling_back: bool = field(default=False, init=False)
    failure: str | None = field(default=None, init=False)
    # The open batch is at its bound: writers wait for room (bounded memory). An attribute,
    # kept by append, take, refused and failed: every write reads it.
    full: bool = field(default=False, init=False)
    _buffer: bytearray = field(default_factory=bytearray, init=False)
    _buffer_first_lsn: int = field(default=0, init=False)
    _waiters: list[W] = field(default_factory=list, init=False)
    _barriers: collections.deque[tuple[int, W]] = field(
        default_factory=collections.deque, init=False
    )

    def __post_init__(self) -> None:
        assert self.next_lsn >= 1
        assert self.next_batch >= 1
        self.durable_lsn = self.next_lsn - 1

    # -- records in ----------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse a write the log cannot take now: failed, giving a batch back, or closing."""
        if self.failure is not None:
            raise BraidError(WAL_FAILED, f"the write-ahead log failed: {self.failure}")
        if self.rolling_back:
            raise BraidError(DISK_FULL, "the log is giving back a batch the full disk refused")
        if self.closing:
            raise BraidError(STORE_CLOSED, "the write-ahead log is closing")

    def append(self, kind: RecordType, payload: bytes, waiter: W) -> int:
        """Frame a record into the open batch; returns its lsn. `waiter` is released when
        the batch is durable, or failed with it."""
        if len(payload) > _PAYLOAD_BYTES_MAX:
            raise BraidError(
                RECORD_TOO_LARGE,
                f"record of {len(payload)} bytes; the limit is "
                f"{limits.wal_record_payload_bytes_max}",
            )
        if self.failure is not None or self.rolling_back or self.closing:
            self.check()  # raises (written out: this runs for every record)
        lsn = self.next_lsn
        self.next_lsn = lsn + 1
        if not self._buffer:
            self._buffer_first_lsn = lsn
        buffer = self._buffer
        buffer += encode_record(lsn, self.next_batch, kind, payload)
        self.full = len(buffer) >= _BATCH_BYTES_MAX
        self._waiters.append(waiter)
        return lsn

    @property
    def open_bytes(self) -> int:
        return len(self._buffer)

    @property
    def open_records(self) -> int:
        return len(self._waiters)

    @property
    def ready(self) -> bool:
        """A batch can be taken: the disk is free and the open batch holds records."""
        return bool(self._buffer) and not self.writing

    # -- batches out ---------------------------------------------------------------------------

    def take(self) -> Batch[W]:
        """Seal the open batch with its commit marker; it is the one being written now."""
        assert self._buffer and not self.writing  # `ready`, written out
        marker_lsn = self.next_lsn
        self.next_lsn += 1
        number = self.next_batch
        self.next_batch += 1
        data = bytes(self._buffer) + encode_record(marker_lsn, number, RecordType.COMMIT, b"")
        batch = Batch(number, self._buffer_first_lsn, marker_lsn, data, self._waiters)
        self._buffer = bytearray()
        self._waiters = []
        self.full = False
        self.writing = True
        return batch

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes fit the active segment, keeping room for its seal."""
        layout = self.layout
        return layout.active_index is not None and (
            layout.offset + size + SEAL_BYTES <= layout.size
        )

    def placement(self, batch: Batch[W]) -> int | None:
        """The offset `batch` goes to in the active segment, or None: rotate first."""
        layout = self.layout  # `fits`, written out: this runs for every batch
        offset = layout.offset
        if layout.active_index is None or offset + len(batch.data) + SEAL_BYTES > layout.size:
            return None
        return offset

    def lone_record(self, bytes_max: int) -> bool:
        """Whether the open batch is a single record of at most `bytes_max` bytes that can
        be taken now and fits the active segment with its commit marker: the writer may
        then write it without handing it to another thread (one call: this runs for every
        record at low load)."""
        size = len(self._buffer)
        layout = self.layout  # `fits`, written out
        return (
            len(self._waiters) == 1
            and not self.writing
            and size <= bytes_max
            and layout.active_index is not None
            and layout.offset + size + RECORD_HEADER_SIZE + SEAL_BYTES <= layout.size
        )

    @staticmethod
    def segment_bytes_needed(batch: Batch[W]) -> int:
        """The least size of a segment that holds `batch` alone (and a seal after it)."""
        return SEGMENT_HEADER_SIZE + len(batch.data) + SEAL_BYTES

    def rotation(self, batch: Batch[W], size: int, unsealed: tuple[int, int] | None) -> Rotation:
        """The segment `batch` starts, of `size` bytes (the spare's, grown to hold it), and
        the seal of the segment before it: the active one, or `unsealed` (index, offset),
        an older last segment that was too full to reopen."""
        assert size >= self.segment_bytes_needed(batch)
        layout = self.layout
        index = layout.last_index + 1
        header = encode_segment_header(SegmentHeader(index, batch.first_lsn, batch.number, size))
        seal = encode_seal(index, batch.first_lsn, batch.number)
        if layout.active_index is not None:
            sealed: tuple[int | None, int] = (layout.active_index, layout.offset)
        elif unsealed is not None:
            sealed = unsealed
        else:
            sealed = (None, 0)
        return Rotation(index, size, header, seal, sealed[0], sealed[1])

    def rotated(self, rotation: Rotation) -> None:
        """The driver wrote the rotation: the new segment is the active one."""
        self.layout = Layout(rotation.index, SEGMENT_HEADER_SIZE, rotation.size, rotation.index)

    def written(self, batch: Batch[W]) -> None:
        """`batch` is durable where `placement` put it (the disk side; see `completed`)."""
        assert self.writing
        self.layout.offset += len(batch.data)
        self.durable_lsn = max(self.durable_lsn, batch.marker_lsn)
        self.writing = False

    def written_and_completed(self, batch: Batch[W]) -> list[W]:
        """`written` then `completed`, in one call (a driver that writes and completes in
        the same thread: the real writer's inline batches, the simulator)."""
        assert self.writing
        self.layout.offset += len(batch.data)  # `written`, written out (once per batch)
        if batch.marker_lsn > self.durable_lsn:
            self.durable_lsn = batch.marker_lsn
        self.writing = False
        return self.completed(batch)

    def completed(self, batch: Batch[W]) -> list[W]:
        """The waiters a durable batch releases: its own, then every barrier it meets. (The
        threaded driver delivers completions on another thread than `written`, so an
        inline batch may be completed before the batch written just before it.)"""
        barriers = self._barriers
        if not barriers:
            return batch.waiters
        released = list(batch.waiters)
        while barriers and barriers[0][0] <= self.durable_lsn:
            released.append(barriers.popleft()[1])
        return released

    def refused(self, batch: Batch[W]) -> list[W]:
        """The disk was full before any byte of `batch` was written: give it back, with
        every record appended after it (checked against state that included it). Their lsns
        and the batch number are used again; the waiters returned fail with DISK_FULL, and
        writes are refused until `reverted`."""
        assert self.writing
        dropped = [*batch.waiters, *self._waiters]
        self._waiters = []
        self._buffer = bytearray()
        self.full = False
        self.next_lsn = batch.first_lsn
        self.next_batch = batch.number
        self.writing = False
        self.rolling_back = True
        return dropped

    def reverted(self) -> list[W]:
        """The engine undid what the refused writes did. Everything left in the log is
        durable (batches complete in order), so every barrier is met."""
        assert self.rolling_back
        assert self.durable_lsn == self.next_lsn - 1, (self.durable_lsn, self.next_lsn)
        self.rolling_back = False
        released = [waiter for _, waiter in self._barriers]
        self._barriers.clear()
        return released

    def failed(self, error: str) -> list[W]:
        """A write failed otherwise: the log takes no more writes. The waiters returned (the
        open batch's and every barrier) fail with WAL_FAILED, as must the batch's own."""
        self.failure = error
        self.writing = False
        dropped = [*self._waiters, *(waiter for _, waiter in self._barriers)]
        self._waiters = []
        self._buffer = bytearray()
        self.full = False
        self._barriers.clear()
        return dropped

    def barrier(self, waiter: W) -> bool:
        """True when everything appended so far is durable; else `waiter` is released by the
        `completed` (or `reverted`) that makes it so. While a refused batch is being given
        back, a barrier waits for `reverted`, so nothing refused is read before it is undone."""
        if self.failure is not None:
            raise BraidError(WAL_FAILED, f"the write-ahead log failed: {self.failure}")
        target = self.next_lsn - 1
        if target <= self.durable_lsn and not self.rolling_back:
            return True
        self._barriers.append((target, waiter))
        return False
