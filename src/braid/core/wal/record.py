"""The write-ahead log's on-disk format, and the scan that recovery and `braid wal` share.

Pure: bytes in, records and verdicts out. No files are opened here.

Segment file (preallocated to a fixed size and zero-filled before use)::

    offset  size  field
    0       8     magic  b"BRAIDWAL"
    8       4     format version (u32, little endian) = 1
    12      4     CRC32C of bytes 0..64 with this field zeroed
    16      8     segment index (u64)
    24      8     lsn of the first record in this segment (u64)
    32      8     batch number of the first record in this segment (u64)
    40      24    reserved, zero
    64      ...   records, each starting on an 8-byte boundary, then zeros to the end

Record::

    offset  size  field
    0       4     payload length in bytes (u32); 0 with every other header byte 0 = end of data
    4       4     CRC32C of header bytes 8..32 followed by the payload
    8       8     lsn: log sequence number, +1 per record, never reused (u64)
    16      8     batch: the group commit (one write + one fsync) the record belongs to (u64)
    24      1     type (1 init, 2 patch, 3 fold, 4 delete, 15 commit marker)
    25      7     reserved, zero (covered by the CRC)
    32      n     payload (msgpack, see ops.py), then zero padding to an 8-byte boundary

Each batch is written with one write and ends with a commit marker record; the next batch
is written only after the previous one's fsync returned, and a new segment is created only
for such a next batch. Damage in batch b is a record that fails its checks, non-zero bytes
where the data should have ended (a zeroed header with data after it is a hole, not the
end), or records of b without b's commit marker. It is a *torn tail* (the crash interrupted
the last write, nothing of it was acknowledged, and recovery drops all of batch b) unless
an intact record of a later batch exists after it, or a later segment does: then batch b
had been fsync'd and the damage is *corruption*, which recovery reports and never skips.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from enum import IntEnum

import crc32c

from braid import limits

SEGMENT_MAGIC = b"BRAIDWAL"
SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sII QQQ 24x")
RECORD_HEADER = struct.Struct("<II QQ B 7x")
SEGMENT_HEADER_SIZE = 64
RECORD_HEADER_SIZE = 32
RECORD_ALIGN = 8

assert SEGMENT_HEADER.size == SEGMENT_HEADER_SIZE
assert RECORD_HEADER.size == RECORD_HEADER_SIZE
assert SEGMENT_HEADER_SIZE % RECORD_ALIGN == 0
assert RECORD_HEADER_SIZE % RECORD_ALIGN == 0
assert limits.wal_batch_bytes_max + limits.wal_record_payload_bytes_max + 4096 < (
    limits.wal_segment_bytes - SEGMENT_HEADER_SIZE
)

_CRC_FROM = 8  # the CRC covers the header from the lsn on, then the payload
_ZERO_HEADER = bytes(RECORD_HEADER_SIZE)
_NONZERO = re.compile(rb"[^\x00]")


class RecordType(IntEnum):
    INIT = 1
    PATCH = 2
    FOLD = 3
    DELETE = 4
    COMMIT = 15


_RECORD_TYPES = frozenset(int(kind) for kind in RecordType)


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    index: int
    first_lsn: int
    first_batch: int


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    lsn: int
    batch: int
    type: RecordType
    payload: bytes


def padded(size: int) -> int:
    return (size + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)


def encode_segment_header(header: SegmentHeader) -> bytes:
    raw = SEGMENT_HEADER.pack(
        SEGMENT_MAGIC, SEGMENT_VERSION, 0, header.index, header.first_lsn, header.first_batch
    )
    checksum = crc32c.crc32c(raw)
    return raw[:12] + struct.pack("<I", checksum) + raw[16:]


class SegmentHeaderError(ValueError):
    """The segment header is damaged or of an unknown format."""


def decode_segment_header(data: bytes | memoryview) -> SegmentHeader:
    if len(data) < SEGMENT_HEADER_SIZE:
        raise SegmentHeaderError(f"segment is {len(data)} bytes, shorter than its header")
    magic, version, checksum, index, first_lsn, first_batch = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise SegmentHeaderError(f"bad magic {bytes(magic)!r}: not a braid WAL segment")
    if version != SEGMENT_VERSION:
        raise SegmentHeaderError(f"segment format version {version}, this braid reads 1")
    raw = bytes(data[:12]) + b"\0\0\0\0" + bytes(data[16:SEGMENT_HEADER_SIZE])
    if crc32c.crc32c(raw) != checksum:
        raise SegmentHeaderError("segment header checksum mismatch")
    if first_lsn < 1 or first_batch < 1:
        raise SegmentHeaderError("segment header names lsn or batch 0")
    return SegmentHeader(index, first_lsn, first_batch)


_HEADER_HEAD = struct.Struct("<II")  # length, checksum
_HEADER_TAIL = struct.Struct("<QQ B 7x")  # lsn, batch, type: what the CRC covers first
_PADDING = tuple(bytes(size) for size in range(RECORD_ALIGN))


def encode_record(lsn: int, batch: int, kind: RecordType, payload: bytes) -> bytes:
    """One framed record, padded to the record alignment."""
    assert lsn >= 1
    assert batch >= 1
    size = len(payload)
    assert size <= limits.wal_record_payload_bytes_max
    header_tail = _HEADER_TAIL.pack(lsn, batch, kind)
    checksum = crc32c.crc32c(payload, crc32c.crc32c(header_tail))
    pad = _PADDING[-size % RECORD_ALIGN]
    return b"".join((_HEADER_HEAD.pack(size, checksum), header_tail, payload, pad))


def _parse_at(data: bytes | memoryview, pos: int) -> Record | None:
    """The intact record at pos, or None (damaged, zero, or not a record)."""
    if pos + RECORD_HEADER_SIZE > len(data):
        return None
    length, checksum, lsn, batch, kind = RECORD_HEADER.unpack_from(data, pos)
    if kind not in _RECORD_TYPES or lsn == 0 or batch == 0:
        return None
    if length > limits.wal_record_payload_bytes_max:
        return None
    end = pos + RECORD_HEADER_SIZE + length
    if end > len(data):
        return None
    header_tail = data[pos + _CRC_FROM : pos + RECORD_HEADER_SIZE]
    payload = bytes(data[pos + RECORD_HEADER_SIZE : end])
    if crc32c.crc32c(payload, crc32c.crc32c(header_tail)) != checksum:
        return None
    return Record(pos, lsn, batch, RecordType(kind), payload)


@dataclass(slots=True)
class SegmentScan:
    """What one segment holds, read front to back: whole batches only."""

    header: SegmentHeader
    records: list[Record] = field(default_factory=list)
    end: int = SEGMENT_HEADER_SIZE  # where the intact, committed records end
    damaged_at: int | None = None  # offset of the first damage (see scan_segment), if any
    damaged_batch: int = 0  # the batch that damage belongs to


def scan_segment(data: bytes | memoryview, expected_lsn: int | None = None) -> SegmentScan:
    """Read every whole, intact batch up to the end of the data or the first damage.

    `expected_lsn` is the lsn the first record must carry (the previous segment's last + 1);
    a record out of sequence counts as damaged.

    Damage is: a record that fails its checks, non-zero bytes after the end of the data (a
    zeroed header followed by more data is a hole, not the end), or records of a batch whose
    commit marker is missing. A batch is written with one write ending in its marker, so
    such records are a torn write; `damaged_at` is then where that batch starts, its intact
    records are not returned, and `end` is where the next batch must be written.
    """
    scan = SegmentScan(decode_segment_header(data))
    header = scan.header
    next_lsn = header.first_lsn if expected_lsn is None else expected_lsn
    batch = header.first_batch
    batch_open = True  # the first record of a segment starts a batch
    batch_start = SEGMENT_HEADER_SIZE  # offset of the open batch's first record
    batch_first_record = 0  # index in scan.records of the open batch's first record
    damaged_at: int | None = None
    pos = SEGMENT_HEADER_SIZE
    while pos + RECORD_HEADER_SIZE <= len(data):
        if data[pos : pos + RECORD_HEADER_SIZE] == _ZERO_HEADER:
            if not _zero_from(data, pos):
                damaged_at = pos
            break
        record = _parse_at(data, pos)
        in_sequence = (
            record is not None
            and record.lsn == next_lsn
            and (record.batch == batch or (not batch_open and record.batch > batch))
        )
        if record is None or not in_sequence:
            damaged_at = pos
            break
        if not batch_open:
            batch_start, batch_first_record = pos, len(scan.records)
        scan.records.append(record)
        next_lsn += 1
        batch = record.batch
        batch_open = record.type is not RecordType.COMMIT
        pos += RECORD_HEADER_SIZE + padded(len(record.payload))
    else:
        if pos < len(data) and not _zero_from(data, pos):
            damaged_at = pos
    if batch_open and len(scan.records) > batch_first_record:
        del scan.records[batch_first_record:]  # a batch without its commit marker
        pos = damaged_at = batch_start
    scan.end = pos
    if damaged_at is not None:
        scan.damaged_at = damaged_at
        scan.damaged_batch = batch if batch_open else batch + 1
    return scan


def _zero_from(data: bytes | memoryview, pos: int) -> bool:
    """Whether every byte from pos on is zero (bytes.count runs at memory speed)."""
    tail = data if isinstance(data, bytes) else bytes(data)
    return tail.count(0, pos) == len(tail) - pos


def find_later_batch(data: bytes | memoryview, start: int, batch: int) -> Record | None:
    """The first intact record at or after `start` whose batch is later than `batch`.

    Used only after damage was found, to tell corruption (a later batch exists, so the
    damaged one had been fsync'd) from a torn tail. Runs of zeros are skipped quickly.
    """
    pos = padded(start)
    while pos + RECORD_HEADER_SIZE <= len(data):
        found = _NONZERO.search(data, pos)
        if found is None:
            return None
        candidate = max(pos, (found.start() & ~(RECORD_ALIGN - 1)) - RECORD_HEADER_SIZE)
        limit = found.start() + RECORD_ALIGN
        pos = candidate
        while pos <= limit and pos + RECORD_HEADER_SIZE <= len(data):
            record = _parse_at(data, pos)
            if record is not None and record.batch > batch:
                return record
            pos += RECORD_ALIGN
    return None
