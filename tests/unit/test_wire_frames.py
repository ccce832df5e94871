"""Frames: the byte layout the docstring documents, the limits the decoder enforces from the
header alone, and a decoding outcome that does not depend on how the bytes were split."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braid import errors
from braid.cli import protocol_page
from braid.core.wire.frames import (
    FLAG_END,
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    Frame,
    FrameDecoder,
    FrameError,
    FrameType,
    encode_frame,
)

LIMIT = 4096

frame_strategy = st.builds(
    Frame,
    type=st.sampled_from(FrameType),
    stream=st.integers(0, 2**32 - 1),
    flags=st.sampled_from([0, FLAG_END]),
    payload=st.binary(max_size=200),
)


def encode(frame: Frame) -> bytes:
    return encode_frame(frame.type, frame.stream, frame.payload, frame.flags)


def header(length: int, stream: int = 1, kind: int = 2, flags: int = 0, reserved: int = 0) -> bytes:
    return FRAME_HEADER.pack(length, stream, kind, flags, reserved)


def decode_chunks(chunks: list[bytes], limit: int = LIMIT) -> tuple[list[Frame], str | None]:
    """Feed chunks in turn; then the frames decoded and the error code (None if no error).
    A final feed(b"") collects an error the decoder held back behind good frames."""
    decoder = FrameDecoder(limit)
    frames: list[Frame] = []
    try:
        for chunk in chunks:
            frames += decoder.feed(chunk)
        frames += decoder.feed(b"")
    except FrameError as error:
        return frames, error.info.name
    return frames, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.lists(frame_strategy, max_size=8))
def test_round_trip(frames: list[Frame]) -> None:
    """Every frame encode_frame writes decodes to the same type, stream, flags and payload,
    in order, with nothing left buffered."""
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(b"".join(encode(frame) for frame in frames)) == frames
    assert decoder.buffered == 0


def test_layout_table_is_the_documented_one() -> None:
    """The layout table in frames' docstring (which docs/protocol.md publishes) lists the
    header fields contiguously, in struct order, adding up to FRAME_HEADER_SIZE."""
    rows = protocol_page.frame_layout()
    assert [(row.offset, row.size) for row in rows] == [
        (0, "4"),
        (4, "4"),
        (8, "1"),
        (9, "1"),
        (10, "2"),
        (12, "n"),
    ]
    assert [row.field.split()[0] for row in rows] == [
        "payload",
        "stream",
        "type",
        "flags",
        "reserved,",
        "payload:",
    ]
    assert FRAME_HEADER.size == FRAME_HEADER_SIZE == rows[-1].offset
    sizes = [int(row.size) for row in rows[:-1]]
    assert sizes == [struct.calcsize(code) for code in FRAME_HEADER.format.lstrip("<")]


def test_every_header_field_at_its_documented_offset() -> None:
    """encode_frame writes each field at the offset and size the docstring's table gives,
    little endian: length, stream, type, flags, zero reserved, then the payload."""
    payload = b"\xaa\xbb\xcc"
    data = encode_frame(FrameType.CONTROL, 0x0A0B0C0D, payload, FLAG_END)
    at = {row.field.split()[0]: (row.offset, row.size) for row in protocol_page.frame_layout()}

    def field(name: str) -> bytes:
        offset, size = at[name]
        return data[offset : offset + int(size)]

    assert field("payload") == (3).to_bytes(4, "little")
    assert field("stream") == bytes([0x0D, 0x0C, 0x0B, 0x0A])
    assert field("type") == bytes([int(FrameType.CONTROL)])
    assert field("flags") == bytes([FLAG_END])
    assert field("reserved,") == b"\x00\x00"
    assert data[at["payload:"][0] :] == payload
    assert len(data) == FRAME_HEADER_SIZE + len(payload)


def test_oversize_length_refused_from_the_header_alone() -> None:
    """A length above the limit fails as soon as the 12th header byte arrives, without any
    payload byte being sent, and the decoder buffers no more than the header; a length equal
    to the limit is accepted and waits for its payload."""
    decoder = FrameDecoder(LIMIT)
    too_big = header(LIMIT + 1)
    for byte in too_big[:-1]:
        assert decoder.feed(bytes([byte])) == []
    with pytest.raises(FrameError) as caught:
        decoder.feed(too_big[-1:])
    assert caught.value.info is errors.FRAME_TOO_LARGE
    assert decoder.buffered <= FRAME_HEADER_SIZE

    with pytest.raises(FrameError, match="limit"):
        FrameDecoder(LIMIT).feed(header(2**32 - 1))

    exact = FrameDecoder(LIMIT)
    assert exact.feed(header(LIMIT)) == []
    assert exact.feed(b"x" * (LIMIT - 1)) == []
    [frame] = exact.feed(b"x")
    assert len(frame.payload) == LIMIT


@pytest.mark.parametrize("kind", [0, 8, 9, 127, 255])
def test_unknown_frame_type_refused(kind: int) -> None:
    """A type byte outside FrameType is a PROTOCOL_ERROR, known from the header alone."""
    with pytest.raises(FrameError) as caught:
        FrameDecoder(LIMIT).feed(header(100, kind=kind))
    assert caught.value.info is errors.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("flags", "reserved"), [(0x02, 0), (0x80, 0), (0xFF, 0), (0, 1), (0, 0x8000), (1, 0xFFFF)]
)
def test_reserved_bits_refused(flags: int, reserved: int) -> None:
    """Flag bits other than END, or a non-zero reserved field, are a PROTOCOL_ERROR."""
    with pytest.raises(FrameError) as caught:
        FrameDecoder(LIMIT).feed(header(0, flags=flags, reserved=reserved))
    assert caught.value.info is errors.PROTOCOL_ERROR


def test_partial_frame_waits() -> None:
    """Bytes short of a whole frame yield nothing and stay buffered until the rest comes."""
    data = encode_frame(FrameType.REQUEST, 1, b"payload")
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(data[:5]) == []
    assert decoder.feed(data[5:-1]) == []
    assert decoder.buffered == len(data) - 1
    assert decoder.feed(data[-1:]) == [Frame(FrameType.REQUEST, 1, 0, b"payload")]
    assert decoder.buffered == 0


@given(st.lists(frame_strategy, max_size=6), st.lists(st.integers(0, 10_000), max_size=6))
def test_byte_at_a_time_equals_all_at_once(frames: list[Frame], cuts: list[int]) -> None:
    """One byte per feed, any other split, and everything at once all yield the same frames."""
    data = b"".join(encode(frame) for frame in frames)
    whole = decode_chunks([data])
    assert whole == (frames, None)
    assert decode_chunks([bytes([byte]) for byte in data]) == whole
    assert decode_chunks(split(data, cuts)) == whole


def test_frames_before_a_bad_header_are_delivered_then_the_error() -> None:
    """Good frames followed by a bad header in the same chunk are returned first and the
    error comes from the next feed, exactly as when the bytes arrive one at a time; before
    this was fixed, the good frames of the chunk were lost with the error."""
    good = [Frame(FrameType.CONTROL, 0, 0, b"ping"), Frame(FrameType.REQUEST, 1, 0, b"x")]
    data = b"".join(encode(frame) for frame in good) + header(0, kind=99)
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(data) == good
    with pytest.raises(FrameError):
        decoder.feed(b"")
    assert decode_chunks([data]) == (good, "PROTOCOL_ERROR")
    assert decode_chunks([bytes([byte]) for byte in data]) == (good, "PROTOCOL_ERROR")


garbage_streams = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda frames, tail: b"".join(encode(frame) for frame in frames) + tail,
        st.lists(frame_strategy, max_size=4),
        st.binary(max_size=40),
    ),
)


@settings(max_examples=300)
@given(garbage_streams, st.lists(st.integers(0, 10_000), max_size=8))
def test_any_bytes_decode_the_same_however_split(data: bytes, cuts: list[int]) -> None:
    """For any byte string, the frames decoded and the error (or none) are the same whether
    fed at once, one byte at a time or in arbitrary chunks; only FrameError is ever raised."""
    whole = decode_chunks([data])
    assert decode_chunks([bytes([byte]) for byte in data]) == whole
    assert decode_chunks(split(data, cuts)) == whole
