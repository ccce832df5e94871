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
    40      8     the segment's preallocated size in bytes (u64; 0 = not recorded)
    48      16    reserved, zero
    64      ...   records, each starting on an 8-byte boundary, then zeros to the end

Record::

    offset  size  field
    0       4     payload length in bytes (u32); 0 with every other header byte 0 = end of data
    4       4     CRC32C of header bytes 8..32 followed by the payload
    8       8     lsn: log sequence number, +1 per record, never reused (u64)
    16      8     batch: the group commit (one write + one fsync) the record belongs to (u64)
    24      1     type (1 init, 2 patch, 3 fold, 4 delete, 14 seal, 15 commit marker)
    25      7     reserved, zero (covered by the CRC)
    32      n     payload (msgpack, see ops.py), then zero padding to an 8-byte boundary

Each batch is written with one write and ends with a commit marker record; the next batch
is written only after the previous one's fsync returned, and a new segment is created only
for such a next batch. When the log moves on to a new segment, the old one gets a *seal*
record once the new one exists: it names the next segment's index and carries its first lsn
and batch (a seal takes no lsn of its own), and nothing follows it. A sealed segment whose
successor is missing is a lost tail, never a crash artifact; so is a segment shorter than
the size its header records (segments are preallocated before they are named).

Damage in batch b is a record that fails its checks, non-zero bytes where the data should
have ended (a zeroed header with data after it is a hole, not the end), or records of b
without b's commit marker. It is a *torn tail* (the crash interrupted
the last write, nothing of it was acknowledged, and recovery drops all of batch b) unless
an intact record of a later batch exists after it, or a later segment does: then batch b
had been fsync'd and the damage is *corruption*, which recovery reports and never skips.
Damage inside the last batch is corruption too when a torn write cannot explain it: a torn
write leaves each 512-byte sector of the batch either written whole or still zero
(segments are zero-filled), so a damaged record followed by the batch's intact commit
marker with no zero sector between them, or a commit marker that differs from the one the
scan expects in a byte that is not zero, was written whole and damaged afterwards.
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
SEGMENT_HEADER = struct.Struct("<8sII QQQQ 16x")
RECORD_HEADER = struct.Struct("<II QQ B 7x")
SEGMENT_HEADER_SIZE = 64
RECORD_HEADER_SIZE = 32
RECORD_ALIGN = 8
SECTOR_BYTES = 512  # the smallest unit a disk writes whole (a torn write tears between them)

assert SEGMENT_HEADER.size == SEGMENT_HEADER_SIZE
assert RECORD_HEADER.size == RECORD_HEADER_SIZE
assert SEGMENT_HEADER_SIZE % RECORD_ALIGN == 0
assert RECORD_HEADER_SIZE % RECORD_ALIGN == 0
assert (
    limits.wal_batch_bytes_max
    + limits.wal_record_payload_bytes_max
    + limits.wal_segment_room_bytes_min
) < (limits.wal_segment_bytes - SEGMENT_HEADER_SIZE)

_CRC_FROM = 8  # the CRC covers the header from the lsn on, then the payload
_ZERO_HEADER = bytes(RECORD_HEADER_SIZE)
_NONZERO = re.compile(rb"[^\x00]")


class RecordType(IntEnum):
    INIT = 1
    PATCH = 2
    FOLD = 3
    DELETE = 4
    SEAL = 14  # ends a segment: the log continues in the segment its payload names
    COMMIT = 15


_RECORD_TYPES = frozenset(int(kind) for kind in RecordType)


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    index: int
    first_lsn: int
    first_batch: int
    segment_bytes: int = 0  # the preallocated size; 0 where it was not recorded


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
        SEGMENT_MAGIC,
        SEGMENT_VERSION,
        0,
        header.index,
        header.first_lsn,
        header.first_batch,
        header.segment_bytes,
    )
    checksum = crc32c.crc32c(raw)
    return raw[:12] + struct.pack("<I", checksum) + raw[16:]


class SegmentHeaderError(ValueError):
    """The segment header is damaged or of an unknown format."""


def decode_segment_header(data: bytes | memoryview) -> SegmentHeader:
    if len(data) < SEGMENT_HEADER_SIZE:
        raise SegmentHeaderError(f"segment is {len(data)} bytes, shorter than its header")
    magic, version, checksum, index, first_lsn, first_batch, size = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC:
        raise SegmentHeaderError(f"bad magic {bytes(magic)!r}: not a braid WAL segment")
    if version != SEGMENT_VERSION:
        raise SegmentHeaderError(f"segment format version {version}, this braid reads 1")
    raw = bytes(data[:12]) + b"\0\0\0\0" + bytes(data[16:SEGMENT_HEADER_SIZE])
    if crc32c.crc32c(raw) != checksum:
        raise SegmentHeaderError("segment header checksum mismatch")
    if first_lsn < 1 or first_batch < 1:
        raise SegmentHeaderError("segment header names lsn or batch 0")
    return SegmentHeader(index, first_lsn, first_batch, size)


_SEAL_PAYLOAD = struct.Struct("<Q")  # the next segment's index


def encode_seal(next_index: int, next_lsn: int, next_batch: int) -> bytes:
    """The seal record: the log continues in segment `next_index` at lsn/batch."""
    return encode_record(next_lsn, next_batch, RecordType.SEAL, _SEAL_PAYLOAD.pack(next_index))


@dataclass(frozen=True, slots=True)
class Seal:
    """Where a sealed segment says the log continues."""

    offset: int
    next_index: int
    lsn: int
    batch: int


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
    damaged_record_at: int = 0  # the first record that failed (damaged_at is its batch's start)
    damaged_lsn: int = 0  # the lsn the record there should have carried
    seal: Seal | None = None  # the segment is sealed: the log continues in the next one


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
        if record.type is RecordType.SEAL:
            # A seal ends whole batches (or a segment that holds none): never a batch's middle.
            in_batch = batch_open and len(scan.records) > batch_first_record
            if in_batch or len(record.payload) != _SEAL_PAYLOAD.size:
                damaged_at = pos
                break
            (next_index,) = _SEAL_PAYLOAD.unpack(record.payload)
            scan.seal = Seal(pos, next_index, record.lsn, record.batch)
            pos += RECORD_HEADER_SIZE + padded(len(record.payload))
            if not _zero_from(data, pos):
                damaged_at = pos  # nothing may follow a seal
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
    raw_damage = pos if damaged_at is None else damaged_at
    if batch_open and len(scan.records) > batch_first_record:
        del scan.records[batch_first_record:]  # a batch without its commit marker
        pos = damaged_at = batch_start
    scan.end = pos
    if damaged_at is not None:
        scan.damaged_at = damaged_at
        scan.damaged_batch = batch if batch_open else batch + 1
        scan.damaged_record_at = raw_damage
        scan.damaged_lsn = next_lsn
        if scan.seal is not None and damaged_at <= scan.seal.offset:
            scan.seal = None
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


def written_whole(data: bytes | memoryview, scan: SegmentScan) -> str | None:
    """Evidence that the damaged last batch had been written whole (so the damage came
    later and is corruption, not a torn tail), or None when a torn write explains it.

    A torn write leaves a prefix of the batch written and zeros after it, or (where the disk
    reorders sectors) every sector of the batch either written or still zero. So the damage
    is not a torn write when the record found damaged is where the batch's commit marker
    belongs and differs from that (fully predictable) marker in a non-zero byte, or when the
    batch's intact commit marker follows the damage with no zero sector between.
    """
    assert scan.damaged_at is not None
    at = scan.damaged_record_at
    batch = scan.damaged_batch
    expected = encode_record(scan.damaged_lsn, batch, RecordType.COMMIT, b"")
    actual = bytes(data[at : at + RECORD_HEADER_SIZE])
    # Where the marker belongs: after the batch's records (at least one), at the last thing
    # written, and with the length a marker has (0; every other record carries a payload).
    if (
        at > scan.damaged_at
        and len(actual) == RECORD_HEADER_SIZE
        and actual[:4] == bytes(4)
        and _zero_from(data, at + RECORD_HEADER_SIZE)
    ):
        differing = [got for got, want in zip(actual, expected, strict=True) if got != want]
        if differing and any(differing) and len(differing) <= RECORD_HEADER_SIZE // 4:
            return (
                f"the commit marker of batch {batch} at offset {at} differs from the expected "
                f"one in {len(differing)} non-zero byte(s); a torn write leaves zeros"
            )
    marker = _commit_marker_after(data, at, batch)
    if marker is not None and _zero_sector_between(data, at, marker.offset) is None:
        return (
            f"the commit marker of batch {batch} at offset {marker.offset} is intact and no "
            "sector between is zero: the batch was written whole"
        )
    return None


def _commit_marker_after(data: bytes | memoryview, start: int, batch: int) -> Record | None:
    """The first intact commit marker of `batch` after `start` (found by its batch and type
    bytes, which every such marker carries at the same place)."""
    tail = _HEADER_TAIL.pack(1, batch, RecordType.COMMIT)[8:]  # batch, type, reserved
    where = _CRC_FROM + 8  # the batch field's offset in a record header
    pos = start + RECORD_ALIGN
    raw = data if isinstance(data, bytes) else bytes(data)
    while True:
        found = raw.find(tail, pos + where)
        if found < 0:
            return None
        candidate = found - where
        pos = candidate + 1
        if candidate % RECORD_ALIGN:
            continue
        record = _parse_at(raw, candidate)
        if record is not None and record.type is RecordType.COMMIT:
            return record


def _zero_sector_between(data: bytes | memoryview, start: int, end: int) -> int | None:
    """The first offset in [start, end) from which the rest of its sector is all zero."""
    pos = start
    while pos < end:
        sector_end = min((pos // SECTOR_BYTES + 1) * SECTOR_BYTES, end)
        if bytes(data[pos:sector_end]).count(0) == sector_end - pos:
            return pos
        pos = sector_end
    return None
