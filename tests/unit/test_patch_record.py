"""The node logs a patch's record cut from the request's bytes (`patch_record`) instead of
encoding the updates again; the cut must be exactly the record the store would encode."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from braid.core.wal.ops import PatchOp, decode_op, encode_op
from braid.core.wal.record import RecordType
from braid.core.wire import schema
from braid.model import Key, Update
from braid.runtime.server import patch_record

keys = st.builds(
    Key,
    st.from_regex(r"[a-z0-9][a-z0-9.-]{2,20}", fullmatch=True),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
)
texts = st.text(max_size=300)
updates = st.builds(
    Update,
    st.integers(1, 2**63 - 1),
    st.integers(1, 2**63 - 1),
    texts,
    texts,
    st.just('{"a":[1,2,{"b":null}]}') | st.just("{}") | texts,
    st.just("{}") | texts,
    st.booleans(),
    st.integers(0, 2**63 - 1),
    texts,
)


@given(keys, st.lists(updates, min_size=1, max_size=20))
def test_cut_record_is_byte_identical_to_the_encoded_operation(
    key: Key, patch: list[Update]
) -> None:
    """For any patch request our client encodes, the cut record equals the store's own
    encoding of PatchOp(key, updates) byte for byte, and decodes back to it."""
    request = schema.encode(schema.Patch(key, patch))
    record = patch_record(request)
    op = PatchOp(key, tuple(patch))
    assert record == encode_op(op)[1]
    assert decode_op(RecordType.PATCH, record) == op


def test_other_shapes_are_left_to_the_store() -> None:
    """A request with a newer peer's extra trailing field, another message, or a payload too
    short to be a patch gives None: the store then encodes the record itself."""
    key, update = Key("unit-space", "doc"), Update(2, 2)
    newer = msgspec.msgpack.encode([21, key, [update], "a field from the future"])
    assert schema.request_decoder.decode(newer) == schema.Patch(key, [update])
    assert patch_record(newer) is None
    assert patch_record(schema.encode(schema.Get(key))) is None
    assert patch_record(b"") is None
    assert patch_record(b"\x93") is None
