"""A patch's log record cut from the bytes of its request, instead of encoded again.

The wire request `Patch` (core/wire/schema.py) is the msgpack array [tag, key, updates]; the
log record `PatchOp` (ops.py) is the array [key, updates]: the same bytes without the tag,
under a 2-element array header. Reusing them saves encoding every update a second time on
the node's hot path. This module is the one place that knows the two layouts agree; it
asserts so at import, and tests/unit/test_patch_record.py checks the cut against
`encode_op(PatchOp(...))` for generated requests.

Pure: bytes in, bytes (or None) out.
"""

from __future__ import annotations

from braid.core.wal.ops import PatchOp
from braid.core.wire.schema import Patch

_FIXARRAY_2 = 0x92  # msgpack: an array of 2 elements
_FIXARRAY_3 = 0x93  # msgpack: an array of 3 elements
_PATCH_TAG = int(str(Patch.__struct_config__.tag))

# The cut is right only while the request is [tag, *PatchOp's fields] and the tag is one byte.
assert Patch.__struct_fields__ == PatchOp.__struct_fields__ == ("key", "updates")
assert Patch.__struct_config__.array_like
assert PatchOp.__struct_config__.array_like
assert 0 <= _PATCH_TAG < 0x80  # a positive fixint: the tag is exactly one byte

_PATCH_HEAD = bytes((_FIXARRAY_3, _PATCH_TAG))
_RECORD_HEAD = bytes((_FIXARRAY_2,))


def patch_record(request: bytes) -> bytes | None:
    """The `PatchOp` record of an encoded Patch request: `request` less its tag, under a
    2-element array header. None when the bytes have another shape (another message, or a
    newer peer's extra fields): then the store encodes the record itself."""
    if request[:2] == _PATCH_HEAD:
        return _RECORD_HEAD + request[2:]
    return None
