"""Frames: the length-prefixed unit on a braid connection. Pure: bytes in, frames out.

Frame layout (little endian)::

    offset  size  field
    0       4     payload length n (u32); at most the receiver's frame_bytes_max
    4       4     stream id (u32): 0 = the connection itself (handshake, control),
                  odd = opened by the client (requests), even = opened by the server (pushes)
    8       1     type (see FrameType)
    9       1     flags (bit 0: END — the sender's last frame on this stream)
    10      2     reserved, zero
    12      n     payload: one message of braid.core.wire.schema, msgpack-encoded

The decoder checks the length against its limit from the 12 header bytes alone, before it
buffers the payload, so a peer cannot make the receiver hold more than one maximal frame.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import msgspec

from braid import errors
from braid.errors import ErrorInfo

FRAME_HEADER = struct.Struct("<IIBBH")
FRAME_HEADER_SIZE = 12
assert FRAME_HEADER.size == FRAME_HEADER_SIZE

FLAG_END = 0x01
_KNOWN_FLAGS = FLAG_END
STREAM_ID_MAX = 2**32 - 1


class FrameType(IntEnum):
    HANDSHAKE = 1  # stream 0: Hello, Welcome, Auth, Ready, Refuse
    REQUEST = 2  # odd stream, client → server; opens the stream
    RESPONSE = 3  # odd stream, server → client; ends the stream
    PUSH = 4  # even stream, server → client; flow controlled
    WINDOW = 5  # even stream, client → server; payload: u32 increment of its window
    CANCEL = 6  # either side abandons a stream; empty payload
    CONTROL = 7  # stream 0: GoAway, Ping, Pong


_FRAME_TYPES = {int(kind): kind for kind in FrameType}


class Frame(msgspec.Struct, frozen=True, gc=False):
    # A msgspec Struct rather than a frozen dataclass: built for every frame received, and
    # its constructor is ~10x cheaper (measured 0.1 against 1.5 µs with the enum call).
    type: FrameType
    stream: int
    flags: int
    payload: bytes

    @property
    def end(self) -> bool:
        return bool(self.flags & FLAG_END)


class FrameError(ValueError):
    """The peer sent bytes that are not a valid frame; `info` is the catalog entry the
    connection fails with (FRAME_TOO_LARGE or PROTOCOL_ERROR)."""

    def __init__(self, info: ErrorInfo, message: str) -> None:
        super().__init__(message)
        self.info = info


def encode_frame(kind: FrameType, stream: int, payload: bytes, flags: int = 0) -> bytes:
    assert 0 <= stream <= STREAM_ID_MAX
    assert flags & ~_KNOWN_FLAGS == 0
    return FRAME_HEADER.pack(len(payload), stream, kind, flags, 0) + payload


class FrameDecoder:
    """Accumulates received bytes and yields whole frames."""

    def __init__(self, frame_bytes_max: int) -> None:
        assert frame_bytes_max >= 1024
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (the runtime bounds their sum)."""
        return len(self._buffer)

    def pending_frame_bytes(self) -> int:
        """The whole size (header included) of the frame being buffered, as its header
        announces; 0 when nothing is buffered, the bytes held while the header is incomplete."""
        buffer = self._buffer
        if len(buffer) < FRAME_HEADER_SIZE:
            return len(buffer)
        return FRAME_HEADER_SIZE + int(FRAME_HEADER.unpack_from(buffer)[0])

    def clear(self) -> None:
        """Drop whatever is buffered (the connection closed: free the memory now)."""
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """Add data; return every frame now complete. Raises FrameError on a bad frame.

        Frames complete before a bad header are returned first and the bad header stays
        buffered, so the next call (`feed(b"")` will do) raises: the outcome does not depend
        on how the bytes were split.
        """
        self._buffer += data
        frames: list[Frame] = []
        position = 0
        buffer = self._buffer
        size = len(buffer)
        unpack = FRAME_HEADER.unpack_from
        limit = self.frame_bytes_max
        while size - position >= FRAME_HEADER_SIZE:
            length, stream, kind, flags, reserved = unpack(buffer, position)
            frame_type = _FRAME_TYPES.get(kind)
            if length > limit or frame_type is None or flags & ~_KNOWN_FLAGS or reserved:
                if frames:
                    break  # deliver these; the error is raised by the next call
                raise self._header_error(length, kind)
            start = position + FRAME_HEADER_SIZE
            end = start + length
            if end > size:
                break
            frames.append(Frame(frame_type, stream, flags, bytes(buffer[start:end])))
            position = end
        if position:
            del buffer[:position]
        return frames

    def _header_error(self, length: int, kind: int) -> FrameError:
        """What is wrong with a header that failed the checks in `feed`."""
        if length > self.frame_bytes_max:
            return FrameError(
                errors.FRAME_TOO_LARGE,
                f"frame of {length} bytes; the limit is {self.frame_bytes_max}",
            )
        if kind not in _FRAME_TYPES:
            return FrameError(errors.PROTOCOL_ERROR, f"unknown frame type {kind}")
        return FrameError(errors.PROTOCOL_ERROR, "reserved frame bits are set")
