"""Unit tests of the WAL record format (`braid.core.wal.record`) and its operations.

The layout tests read bytes at the offsets the module docstring documents, so a change of
the on-disk format fails here and not only in a round trip that would hide it. The scan
tests build small segments in memory and check the verdicts recovery relies on: intact
records, the end of data, and where the first damage is.
"""

from __future__ import annotations

import gc
import struct

import crc32c
import pytest

from braid import limits
from braid.core.document import Fold
from braid.core.wal.ops import (
    DeleteOp,
    FoldOp,
    InitOp,
    PatchOp,
    decode_op,
    encode_op,
)
from braid.core.wal.record import (
    RECORD_ALIGN,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    SEGMENT_VERSION,
    Record,
    RecordType,
    SegmentHeader,
    SegmentHeaderError,
    decode_segment_header,
    encode_record,
    encode_seal,
    encode_segment_header,
    find_later_batch,
    padded,
    scan_segment,
    written_whole,
)
from braid.model import Key, Update

KEY = Key("unit-space", "doc-1")
ZERO_TAIL_BYTES = 256


def segment(
    batches: list[list[tuple[RecordType, bytes]]],
    *,
    first_lsn: int = 1,
    first_batch: int = 1,
    commit: bool = True,
    tail: int = ZERO_TAIL_BYTES,
) -> tuple[bytes, list[Record]]:
    """A segment holding `batches` (each closed by a commit marker unless commit=False for
    the last), zero-filled `tail` bytes past the data, and the records it should scan to."""
    data = bytearray(encode_segment_header(SegmentHeader(1, first_lsn, first_batch)))
    expected: list[Record] = []
    lsn = first_lsn
    for number, records in enumerate(batches):
        batch = first_batch + number
        closed = commit or number < len(batches) - 1
        for kind, payload in [*records, *([(RecordType.COMMIT, b"")] if closed else [])]:
            expected.append(Record(len(data), lsn, batch, kind, payload))
            data += encode_record(lsn, batch, kind, payload)
            lsn += 1
    data += bytes(tail)
    return bytes(data), expected


def flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 1 << bit
    return bytes(changed)


def end_of(record: Record) -> int:
    return record.offset + RECORD_HEADER_SIZE + padded(len(record.payload))


# -- sizes and layout ----------------------------------------------------------------------


def test_struct_sizes_and_alignment_match_the_documented_layout() -> None:
    """The header structs are exactly 64 and 32 bytes and keep records 8-byte aligned."""
    assert SEGMENT_HEADER.size == SEGMENT_HEADER_SIZE == 64
    assert RECORD_HEADER.size == RECORD_HEADER_SIZE == 32
    assert RECORD_ALIGN == 8
    assert SEGMENT_MAGIC == b"BRAIDWAL"
    assert SEGMENT_VERSION == 1
    assert [padded(size) for size in (0, 1, 7, 8, 9, 16, 17)] == [0, 8, 8, 8, 16, 16, 24]


def test_record_bytes_sit_at_the_documented_offsets() -> None:
    """length @0, CRC32C(header[8:32] + payload) @4, lsn @8, batch @16, type @24, reserved
    zeros @25..32, payload @32, then zero padding to 8 bytes."""
    payload = b"hello, wal"
    raw = encode_record(0x0102030405060708, 0x1112131415161718, RecordType.FOLD, payload)
    assert len(raw) == RECORD_HEADER_SIZE + padded(len(payload)) == 48
    assert struct.unpack_from("<I", raw, 0)[0] == len(payload)
    assert struct.unpack_from("<Q", raw, 8)[0] == 0x0102030405060708
    assert struct.unpack_from("<Q", raw, 16)[0] == 0x1112131415161718
    assert raw[24] == RecordType.FOLD
    assert int(RecordType.FOLD) == 3
    assert raw[25:32] == bytes(7)
    assert raw[32 : 32 + len(payload)] == payload
    assert raw[32 + len(payload) :] == bytes(padded(len(payload)) - len(payload))
    checksum = crc32c.crc32c(raw[8:32] + payload)
    assert struct.unpack_from("<I", raw, 4)[0] == checksum


def test_segment_header_bytes_sit_at_the_documented_offsets() -> None:
    """magic @0, version @8, CRC32C of the 64 bytes with the CRC zeroed @12, index @16,
    first lsn @24, first batch @32, 24 reserved zero bytes @40."""
    raw = encode_segment_header(SegmentHeader(index=7, first_lsn=900, first_batch=33))
    assert len(raw) == SEGMENT_HEADER_SIZE
    assert raw[0:8] == SEGMENT_MAGIC
    assert struct.unpack_from("<IIQQQ", raw, 8) == (
        SEGMENT_VERSION,
        crc32c.crc32c(raw[:12] + bytes(4) + raw[16:]),
        7,
        900,
        33,
    )
    assert raw[40:64] == bytes(24)


def test_record_type_values_are_stable() -> None:
    """The type byte values are part of the format and must never be renumbered."""
    assert {kind.name: int(kind) for kind in RecordType} == {
        "INIT": 1,
        "PATCH": 2,
        "FOLD": 3,
        "DELETE": 4,
        "SEAL": 14,
        "COMMIT": 15,
    }


# -- segment header ------------------------------------------------------------------------


def test_segment_header_round_trips() -> None:
    """decode(encode(h)) == h, including 64-bit extremes."""
    for header in (SegmentHeader(1, 1, 1), SegmentHeader(2**64 - 1, 2**64 - 1, 2**63)):
        assert decode_segment_header(encode_segment_header(header)) == header


def test_segment_header_with_bad_magic_is_refused() -> None:
    """A file that is not a braid segment is named as such, even with a valid CRC."""
    raw = bytearray(encode_segment_header(SegmentHeader(1, 1, 1)))
    raw[0:8] = b"NOTAWAL!"
    raw[12:16] = bytes(4)
    raw[12:16] = struct.pack("<I", crc32c.crc32c(bytes(raw)))
    with pytest.raises(SegmentHeaderError, match="magic"):
        decode_segment_header(bytes(raw))


def test_segment_header_with_unknown_version_is_refused() -> None:
    """A segment of another format version is refused even when its CRC is right."""
    raw = bytearray(encode_segment_header(SegmentHeader(1, 1, 1)))
    struct.pack_into("<I", raw, 8, SEGMENT_VERSION + 1)
    struct.pack_into("<I", raw, 12, 0)
    struct.pack_into("<I", raw, 12, crc32c.crc32c(bytes(raw)))
    with pytest.raises(SegmentHeaderError, match="version"):
        decode_segment_header(bytes(raw))


def test_segment_header_crc_catches_every_single_bit_flip() -> None:
    """Each of the 512 single-bit flips of the 64-byte header is refused."""
    raw = encode_segment_header(SegmentHeader(3, 100, 40))
    for offset in range(SEGMENT_HEADER_SIZE):
        for bit in range(8):
            with pytest.raises(SegmentHeaderError):
                decode_segment_header(flip(raw, offset, bit))


def test_segment_header_shorter_than_64_bytes_or_naming_lsn_0_is_refused() -> None:
    """A truncated header and a header naming lsn 0 or batch 0 are both errors."""
    raw = encode_segment_header(SegmentHeader(1, 1, 1))
    for size in (0, 8, 63):
        with pytest.raises(SegmentHeaderError, match="shorter"):
            decode_segment_header(raw[:size])
    for first_lsn, first_batch in ((0, 1), (1, 0)):
        zero = encode_segment_header(SegmentHeader(1, first_lsn, first_batch))
        with pytest.raises(SegmentHeaderError, match="lsn or batch 0"):
            decode_segment_header(zero)


# -- records and operations ----------------------------------------------------------------


def test_encode_then_scan_round_trips_every_payload_size_and_type() -> None:
    """Payloads of 0..40 bytes of every record type scan back byte-identical, in order,
    at the offsets they were written to, with end at the last record's padded end."""
    kinds: list[RecordType] = [
        kind for kind in RecordType if kind not in (RecordType.COMMIT, RecordType.SEAL)
    ]
    batches = [[(kinds[size % len(kinds)], bytes(range(1, size + 1)))] for size in range(0, 41)]
    data, expected = segment(batches)
    scan = scan_segment(data)
    assert scan.records == expected
    assert scan.damaged_at is None
    assert scan.end == end_of(expected[-1])
    assert data[scan.end :] == bytes(len(data) - scan.end)


@pytest.mark.parametrize(
    "op",
    [
        InitOp(KEY, Update(1, 1, who="w", request="r", redo='{"a":1}', undo="{}")),
        PatchOp(KEY, (Update(2, 2, redo='{"b":[1,2]}'), Update(3, 5, redo='{"a":null}'))),
        FoldOp(KEY, Fold(3, Update(1, 5, redo='{"b":[1,2]}', kind="compacted"), True)),
        DeleteOp(KEY),
    ],
    ids=["init", "patch", "fold", "delete"],
)
def test_each_operation_type_round_trips_through_a_record(
    op: InitOp | PatchOp | FoldOp | DeleteOp,
) -> None:
    """Every operation encodes to its record type, survives framing and scanning, and
    decodes back equal."""
    kind, payload = encode_op(op)
    assert kind == {InitOp: 1, PatchOp: 2, FoldOp: 3, DeleteOp: 4}[type(op)]
    data, _ = segment([[(kind, payload)]], first_lsn=10, first_batch=4)
    scan = scan_segment(data)
    assert [(record.lsn, record.batch, record.type) for record in scan.records] == [
        (10, 4, kind),
        (11, 4, RecordType.COMMIT),
    ]
    assert decode_op(scan.records[0].type, scan.records[0].payload) == op


def test_commit_marker_carries_no_operation() -> None:
    """decode_op refuses the commit marker type instead of guessing a schema."""
    with pytest.raises(ValueError, match="no operation"):
        decode_op(RecordType.COMMIT, b"")


def test_encode_refuses_programmer_errors() -> None:
    """lsn 0, batch 0 and oversized payloads are assertion failures, never written."""
    with pytest.raises(AssertionError):
        encode_record(0, 1, RecordType.PATCH, b"")
    with pytest.raises(AssertionError):
        encode_record(1, 0, RecordType.PATCH, b"")
    with pytest.raises(AssertionError):
        encode_record(1, 1, RecordType.PATCH, bytes(limits.wal_record_payload_bytes_max + 1))


# -- scanning ------------------------------------------------------------------------------


def three_batches() -> tuple[bytes, list[Record]]:
    return segment(
        [
            [(RecordType.INIT, b"init-a"), (RecordType.INIT, b"init-b")],
            [(RecordType.PATCH, b"patch-a" * 3)],
            [(RecordType.FOLD, b"fold"), (RecordType.DELETE, b"del")],
        ]
    )


def test_scan_of_a_clean_segment_with_a_zero_tail() -> None:
    """A clean segment scans to all its records and stops at the zero tail, undamaged."""
    data, expected = three_batches()
    scan = scan_segment(data)
    assert scan.header == SegmentHeader(1, 1, 1)
    assert scan.records == expected
    assert (scan.end, scan.damaged_at) == (end_of(expected[-1]), None)


def test_scan_of_a_segment_with_only_a_header() -> None:
    """A fresh segment (header, then zeros) holds no records and no damage."""
    data, _ = segment([])
    scan = scan_segment(data)
    assert (scan.records, scan.end, scan.damaged_at) == ([], SEGMENT_HEADER_SIZE, None)


def test_scan_without_a_zero_tail_ends_at_the_end_of_data() -> None:
    """Records that run to the very end of the data (no zeros after) are all intact."""
    data, expected = segment([[(RecordType.PATCH, b"x" * 13)]], tail=0)
    scan = scan_segment(data)
    assert scan.records == expected
    assert (scan.end, scan.damaged_at) == (len(data), None)


def test_scan_refuses_a_damaged_segment_header() -> None:
    """The scan raises SegmentHeaderError when the header is bad; it never guesses."""
    data, _ = three_batches()
    with pytest.raises(SegmentHeaderError):
        scan_segment(flip(data, 20))


def test_scan_reports_the_first_out_of_sequence_lsn_as_damage() -> None:
    """With expected_lsn (the previous segment's last + 1) the first record must carry it."""
    data, _ = three_batches()
    scan = scan_segment(data, expected_lsn=2)
    assert (scan.records, scan.damaged_at, scan.damaged_batch) == ([], SEGMENT_HEADER_SIZE, 1)


def test_scan_treats_unknown_type_and_oversized_length_as_damage() -> None:
    """A header with an unknown type or a length past the limit is damage, not a crash."""
    data, expected = three_batches()
    target = expected[3]  # the patch record of batch 2
    unknown_type = bytearray(data)
    unknown_type[target.offset + 24] = 9
    oversized = bytearray(data)
    struct.pack_into("<I", oversized, target.offset, limits.wal_record_payload_bytes_max + 1)
    for changed in (unknown_type, oversized):
        scan = scan_segment(bytes(changed))
        assert scan.records == expected[:3]
        assert (scan.damaged_at, scan.damaged_batch) == (target.offset, 2)


def test_every_bit_flip_in_a_record_is_damage_and_keeps_only_whole_earlier_batches() -> None:
    """Flip each bit of the CRC-covered bytes of each record in turn: the scan reports
    damage no later than that record's batch, and every record it keeps is byte-identical
    to what was written and belongs to a batch before the damaged one."""
    data, expected = three_batches()
    batch_start: dict[int, int] = {}
    for record in expected:
        batch_start.setdefault(record.batch, record.offset)
    for record in expected:
        covered = RECORD_HEADER_SIZE + len(record.payload)
        for offset in range(record.offset, record.offset + covered):
            for bit in range(8):
                scan = scan_segment(flip(data, offset, bit))
                assert scan.damaged_at is not None, (offset, bit)
                assert scan.damaged_at <= record.offset
                assert scan.records == expected[: len(scan.records)]
                assert all(kept.batch < record.batch for kept in scan.records), (offset, bit)
                assert scan.damaged_at == batch_start[record.batch]
                assert scan.damaged_batch == record.batch


def test_flips_in_padding_do_not_damage_the_record() -> None:
    """Padding bytes are outside the CRC: a flip there keeps every record intact."""
    data, expected = three_batches()
    record = expected[0]  # "init-a": 6 bytes of payload, 2 of padding
    padding_at = record.offset + RECORD_HEADER_SIZE + len(record.payload)
    scan = scan_segment(flip(data, padding_at + 1, 5))
    assert scan.records == expected
    assert scan.damaged_at is None


def test_a_batch_without_its_commit_marker_is_not_kept() -> None:
    """Regression: a batch is written with one write that ends in its commit marker, so
    intact records of a batch whose marker is missing are a torn write that was never
    acknowledged. The scan must not keep them (the writer would then start the next batch
    after an open one, and the next open would find the log corrupt): it reports damage at
    the start of that batch, with that batch's number."""
    data, expected = segment(
        [[(RecordType.INIT, b"one")], [(RecordType.PATCH, b"two"), (RecordType.PATCH, b"3")]],
        commit=False,
    )
    scan = scan_segment(data)
    assert scan.records == expected[:2]
    assert scan.end == expected[2].offset
    assert (scan.damaged_at, scan.damaged_batch) == (expected[2].offset, 2)


def test_nonzero_bytes_after_a_zeroed_record_header_are_damage() -> None:
    """Regression: a zeroed header (a lost sector, or a torn write that skipped a page) is
    not the end of the log when non-zero bytes follow it. Treating it as the end silently
    dropped every later, acknowledged batch and let the writer overwrite them."""
    data, expected = three_batches()
    target = expected[3]
    changed = bytearray(data)
    changed[target.offset : target.offset + RECORD_HEADER_SIZE] = bytes(RECORD_HEADER_SIZE)
    scan = scan_segment(bytes(changed))
    assert scan.records == expected[:3]
    assert (scan.damaged_at, scan.damaged_batch) == (target.offset, 2)
    later = find_later_batch(bytes(changed), target.offset + 8, scan.damaged_batch)
    assert later is not None
    assert later.batch == 3


def test_a_stray_byte_far_into_the_zero_tail_is_damage() -> None:
    """A non-zero byte anywhere past the end of data is reported at the end of data, so
    recovery zeroes it (torn) instead of leaving it for a later write to run into."""
    data, expected = three_batches()
    end = end_of(expected[-1])
    for distance in (0, 31, 32, 100, ZERO_TAIL_BYTES - 1):
        scan = scan_segment(flip(data, end + distance, 3))
        assert scan.records == expected, distance
        assert (scan.damaged_at, scan.damaged_batch) == (end, 4), distance


def test_find_later_batch_skips_garbage_and_zeros() -> None:
    """After damage, the first intact record of a later batch is found past garbage and
    zero runs; nothing is found when only the damaged batch or zeros follow."""
    data, expected = three_batches()
    damaged = expected[3]
    changed = bytearray(data)
    changed[damaged.offset : damaged.offset + 16] = b"\xff" * 16
    found = find_later_batch(bytes(changed), damaged.offset + 8, 2)
    assert found == expected[5]
    assert find_later_batch(bytes(changed), damaged.offset + 8, 3) is None
    assert find_later_batch(bytes(SEGMENT_HEADER_SIZE + 4096), SEGMENT_HEADER_SIZE, 0) is None


def test_decoded_operations_stay_out_of_the_cyclic_collector() -> None:
    """Operations wait in memory until a checkpoint (tens of thousands under load); each one
    the cyclic GC tracks makes every full collection slower (the node stalled up to ~100 ms).
    Decoded or built, an operation is untracked; after one collection so are its tuple of
    updates and its (lsn, op) entry in the pending list."""
    update = Update(2, 2, redo='{"b":[1,2]}')
    built = PatchOp(KEY, (update,))
    decoded = decode_op(*encode_op(built))
    assert isinstance(decoded, PatchOp)
    fold = FoldOp(KEY, Fold(3, Update(1, 5, redo="{}"), True))
    operations = (built, decoded, fold, InitOp(KEY, update), DeleteOp(KEY))
    for op in operations:
        assert not gc.is_tracked(op), op
    pending: list[tuple[int, PatchOp]] = [(7, built), (8, decoded)]
    gc.collect()
    for entry in pending:
        assert not gc.is_tracked(entry)
        assert not gc.is_tracked(entry[1].updates)


# -- seals and whole batches -----------------------------------------------------------------


def test_a_seal_ends_a_segment_even_one_without_records() -> None:
    """A seal after whole batches, or at the very start of a segment that never got a
    batch (the first batch did not fit), ends the segment: the scan reports where the log
    continues and stops there, treating nothing as damaged."""
    data, expected = segment([[(RecordType.PATCH, b"p")]], tail=0)
    sealed = data + encode_seal(2, 3, 2) + bytes(ZERO_TAIL_BYTES)
    scan = scan_segment(sealed)
    assert (scan.records, scan.damaged_at) == (expected, None)
    assert scan.seal is not None and (scan.seal.next_index, scan.seal.lsn) == (2, 3)
    empty = encode_segment_header(SegmentHeader(1, 1, 1)) + encode_seal(2, 1, 1) + bytes(64)
    scan = scan_segment(empty)
    assert (scan.records, scan.damaged_at) == ([], None)
    assert scan.seal is not None and scan.seal.batch == 1


def test_a_seal_inside_a_batch_or_followed_by_data_is_damage() -> None:
    """A seal between a batch's records and its commit marker, or bytes after a seal,
    cannot come from the writer: the scan reports damage there."""
    data, _ = segment([[(RecordType.PATCH, b"p")]], commit=False, tail=0)
    inside = data + encode_seal(2, 2, 1) + bytes(64)
    assert scan_segment(inside).damaged_at is not None
    data, _ = segment([[(RecordType.PATCH, b"p")]], tail=0)
    seal = encode_seal(2, 3, 2)
    after = data + seal + b"\x01" + bytes(63)
    scan = scan_segment(after)
    assert scan.damaged_at == len(data) + len(seal)


def test_damage_before_an_intact_commit_marker_was_written_whole() -> None:
    """In the last batch, a flipped byte with the batch's commit marker intact after it
    (no zero sector between) is no torn write; a zeroed sector, or a cut before the marker,
    is one a torn write explains."""
    payload = bytes(range(1, 200))
    data, expected = segment([[(RecordType.PATCH, payload), (RecordType.PATCH, payload)]])
    flipped = flip(data, expected[0].offset + RECORD_HEADER_SIZE + 5)
    scan = scan_segment(flipped)
    assert scan.damaged_at is not None
    assert written_whole(flipped, scan) is not None
    marker = expected[-1].offset
    cut = data[:marker] + bytes(len(data) - marker)
    torn = flip(cut, expected[0].offset + RECORD_HEADER_SIZE + 5)
    scan = scan_segment(torn)
    assert scan.damaged_at is not None and written_whole(torn, scan) is None


def test_a_changed_commit_marker_is_not_a_torn_one() -> None:
    """The last batch's commit marker changed in a non-zero byte (its records intact) is
    corruption; the same marker partly zero, as a torn write leaves it, is a torn tail."""
    data, expected = segment([[(RecordType.PATCH, b"payload")]])
    marker = expected[-1].offset
    changed = flip(data, marker + 9)  # inside its lsn
    scan = scan_segment(changed)
    assert scan.damaged_at is not None
    assert written_whole(changed, scan) is not None
    partial = data[: marker + 12] + bytes(len(data) - marker - 12)
    scan = scan_segment(partial)
    assert scan.damaged_at is not None and written_whole(partial, scan) is None
