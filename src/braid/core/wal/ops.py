"""The operations a WAL record carries, one schema each (msgspec, encoded as msgpack).

The record type in the header says which schema the payload has; the payload is the struct
encoded as a msgpack array. Fields may only be appended (with defaults) so that an older
record stays readable.

The operations are kept in memory until a checkpoint applies them (tens of thousands of them
under load), so they are built to stay out of the cyclic garbage collector's way: `gc=False`
(they hold only keys, updates and numbers, never a cycle) and a tuple instead of a list of
updates (a tuple of untracked objects is itself untracked after one collection). Tracked, they
made every full collection walk each pending operation, stalling the node for up to ~100 ms.
"""

from __future__ import annotations

import msgspec

from braid.core.document import Fold
from braid.core.wal.record import RecordType
from braid.model import Key, Update


class InitOp(msgspec.Struct, frozen=True, array_like=True, gc=False):
    key: Key
    update: Update


class PatchOp(msgspec.Struct, frozen=True, array_like=True, gc=False):
    key: Key
    updates: tuple[Update, ...]


class FoldOp(msgspec.Struct, frozen=True, array_like=True, gc=False):
    key: Key
    fold: Fold


class DeleteOp(msgspec.Struct, frozen=True, array_like=True, gc=False):
    key: Key


Op = InitOp | PatchOp | FoldOp | DeleteOp

OP_TYPES: dict[type[msgspec.Struct], RecordType] = {
    InitOp: RecordType.INIT,
    PatchOp: RecordType.PATCH,
    FoldOp: RecordType.FOLD,
    DeleteOp: RecordType.DELETE,
}
_DECODERS: dict[RecordType, msgspec.msgpack.Decoder[Op]] = {
    RecordType.INIT: msgspec.msgpack.Decoder(InitOp),
    RecordType.PATCH: msgspec.msgpack.Decoder(PatchOp),
    RecordType.FOLD: msgspec.msgpack.Decoder(FoldOp),
    RecordType.DELETE: msgspec.msgpack.Decoder(DeleteOp),
}
_encoder = msgspec.msgpack.Encoder()


def encode_op(op: Op) -> tuple[RecordType, bytes]:
    return OP_TYPES[type(op)], _encoder.encode(op)


def decode_op(kind: RecordType, payload: bytes) -> Op:
    """Decode a payload; raises msgspec.ValidationError/DecodeError or BraidError if bad."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ValueError(f"record type {kind!r} carries no operation")
    return decoder.decode(payload)
