"""The node logs a patch's record cut from the request's bytes (`patch_record`, beside the
WAL's operations in core/wal/) instead of encoding the updates again; the cut must be exactly
the record the store would encode with `encode_op`."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from braid.core.wal.ops import PatchOp, decode_op, encode_op
from braid.core.wal.patch_record import patch_record
from braid.core.wal.record import RecordType
from braid.core.wire import schema
from braid.model import Key, Update

# Key texts: any code point but controls and surrogates (wider than ASCII, so multi-byte
# UTF-8 and every msgpack str header up to str16 are met).
key_texts = st.text(
    st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=120
).filter(lambda text: len(text.encode()) <= 511)
keys = st.builds(Key, st.from_regex(r"[a-z0-9][a-z0-9.-]{2,60}", fullmatch=True), key_texts)
# Texts up to 70,000 characters now and then: past msgpack's str16, into str32.
texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=300) | st.builds(
    lambda count, letter: letter * count, st.integers(0, 70_000), st.sampled_from("aé€😀")
)
numbers = st.integers(0, 2**63 - 1) | st.sampled_from((0, 127, 128, 255, 256, 65_535, 65_536))
updates = st.builds(
    Update,
    numbers,
    numbers,
    texts,
    texts,
    st.just('{"a":[1,2,{"b":null}]}') | st.just("{}") | texts,
    st.just("{}") | texts,
    st.booleans(),
    numbers,
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


@given(keys, st.lists(updates, min_size=17, max_size=40))
def test_a_long_patch_too(key: Key, patch: list[Update]) -> None:
    """Past 15 updates the updates' array header grows (fixarray to array16): still the
    same bytes, the cut touches only the outer header."""
    request = schema.encode(schema.Patch(key, patch))
    assert patch_record(request) == encode_op(PatchOp(key, tuple(patch)))[1]


def test_other_shapes_are_left_to_the_store() -> None:
    """A request with a newer peer's extra trailing field, another message, or a payload too
    short to be a patch gives None: the store then encodes the record itself."""
    key, update = Key("unit-space", "doc"), Update(2, 2)
    newer = msgspec.msgpack.encode([21, key, [update], "a field from the future"])
    assert schema.request_decoder.decode(newer) == schema.Patch(key, [update])
    assert patch_record(newer) is None
    assert patch_record(schema.encode(schema.Get(key))) is None
    assert patch_record(schema.encode(schema.Initialize(key, update))) is None
    assert patch_record(b"") is None
    assert patch_record(b"\x93") is None
