"""The document model's pure pieces: RFC 7396 merge, compose, diff, and key/update checks.

JSON values are compared with `strict`, which tells `true` from `1` (Python's `==` does not)
but compares numbers by value, as JSON does.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import braid
from braid import limits
from braid.model import (
    Update,
    apply_patch,
    compose,
    diff,
    parse_object,
    to_json,
    validate_update,
)
from tests.support.json_model import canonical, merge_patch

Json = Any


def strict(value: Json) -> Json:
    """A form of a JSON value whose `==` is JSON equality (booleans are not numbers)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, dict):
        return {name: strict(member) for name, member in value.items()}
    if isinstance(value, list):
        return [strict(item) for item in value]
    return value


# -- RFC 7396 -----------------------------------------------------------------------------------

# RFC 7396 Appendix A, every example: (target, patch, result).
RFC_7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_apply_patch_matches_rfc_7396_appendix_a(target: Json, patch: Json, result: Json) -> None:
    """apply_patch gives exactly the results the RFC lists for its test cases."""
    assert strict(apply_patch(target, patch)) == strict(result)


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_the_suites_oracle_gives_the_rfc_results(target: Json, patch: Json, result: Json) -> None:
    """tests.support's merge_patch, which the other suites check braid against, gives
    exactly the results the RFC lists too, and leaves its inputs alone."""
    target_before, patch_before = canonical(target), canonical(patch)
    assert strict(merge_patch(target, patch)) == strict(result)
    assert (canonical(target), canonical(patch)) == (target_before, patch_before)


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_apply_patch_leaves_its_inputs_alone(target: Json, patch: Json, result: Json) -> None:
    """apply_patch returns a new value; the target and the patch are not modified."""
    target_before = canonical(target)
    patch_before = canonical(patch)
    apply_patch(target, patch)
    assert canonical(target) == target_before
    assert canonical(patch) == patch_before


def test_apply_patch_does_not_share_nested_objects_with_the_target() -> None:
    """Patching a nested object copies it: mutating the result cannot reach the target."""
    target = {"a": {"b": 1}}
    result = apply_patch(target, {"a": {"c": 2}})
    result["a"]["b"] = 99
    assert target == {"a": {"b": 1}}


# -- hypothesis strategies ------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d"])
SCALARS = (
    st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.sampled_from([0.5, -1.0, 1.0])
    | st.text(alphabet="xy", max_size=2)
)
SCALARS_OR_LISTS = SCALARS | st.lists(SCALARS | st.none(), max_size=2)


def objects(values: st.SearchStrategy[Json]) -> st.SearchStrategy[dict[str, Json]]:
    return st.dictionaries(NAMES, values, max_size=3)


# A patch member: a scalar, a list, null (delete) or a nested patch.
PATCH_VALUES = st.recursive(
    SCALARS_OR_LISTS | st.none(), lambda inner: objects(inner), max_leaves=8
)
PATCHES = objects(PATCH_VALUES)
# A document member: like a patch member but with no null members anywhere in objects.
DOCUMENT_VALUES = st.recursive(SCALARS_OR_LISTS, lambda inner: objects(inner), max_leaves=8)
DOCUMENTS = objects(DOCUMENT_VALUES)
# Any target, even one holding nulls or not an object at all (RFC 7396 allows both).
TARGETS = st.recursive(SCALARS_OR_LISTS | st.none(), lambda inner: objects(inner), max_leaves=10)


def apply_all(target: Json, patches: list[Json]) -> Json:
    for patch in patches:
        target = apply_patch(target, patch)
    return target


def compose_all(patches: list[Json]) -> tuple[Json, bool]:
    composed: Json = {}
    exact = True
    for patch in patches:
        composed, step_exact = compose(composed, patch)
        exact = exact and step_exact
    return composed, exact


# -- compose --------------------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.lists(PATCHES, max_size=6))
def test_composed_patch_applied_to_empty_equals_applying_in_turn(patches: list[Json]) -> None:
    """For any sequence of object patches, apply({}, compose(...)) == applying them one by
    one to {} — whether or not compose calls the result exact."""
    composed, _ = compose_all(patches)
    assert strict(apply_patch({}, composed)) == strict(apply_all({}, patches))


@settings(max_examples=400)
@given(st.lists(PATCHES, min_size=1, max_size=6), st.lists(TARGETS, min_size=1, max_size=4))
def test_exact_composition_holds_for_every_target(patches: list[Json], targets: list[Json]) -> None:
    """When compose reports exact=True, the composed patch equals applying the patches in
    turn on any target (objects with nulls, arrays, scalars) — not only on {}."""
    composed, exact = compose_all(patches)
    if exact:
        for target in targets:
            assert strict(apply_patch(target, composed)) == strict(apply_all(target, patches))


def test_compose_reports_the_object_over_non_object_case_inexact() -> None:
    """An object patched onto a member that an earlier patch made a scalar (or deleted)
    cannot be one merge patch: compose says so, and the naive merge would be wrong."""
    for first in ({"a": 1}, {"a": None}, {"a": [1]}):
        composed, exact = compose(first, {"a": {"b": 1}})
        assert exact is False
        assert composed == {"a": {"b": 1}}
        target = {"a": {"c": 2}}
        assert apply_all(target, [first, {"a": {"b": 1}}]) == {"a": {"b": 1}}
        assert apply_patch(target, composed) != {"a": {"b": 1}}  # why it is inexact


def test_compose_keeps_null_markers() -> None:
    """A deletion survives composition so that it still deletes from a non-empty target."""
    composed, exact = compose({"a": {"b": 1}}, {"a": {"b": None}, "c": None})
    assert exact is True
    assert composed == {"a": {"b": None}, "c": None}
    assert apply_patch({"a": {"b": 5, "x": 1}, "c": 3}, composed) == {"a": {"x": 1}}


# -- diff -----------------------------------------------------------------------------------------


@settings(max_examples=400)
@given(DOCUMENTS, DOCUMENTS)
def test_diff_patch_turns_old_into_new(old: Json, new: Json) -> None:
    """apply_patch(old, diff(old, new)) == new for documents without null members."""
    assert strict(apply_patch(old, diff(old, new))) == strict(new)


def lookalike(value: Json, data: st.DataObject) -> Json:
    """`value` with some booleans and 0/1 swapped for their lookalikes (`true` for `1`)."""
    if isinstance(value, dict):
        return {name: lookalike(member, data) for name, member in value.items()}
    if isinstance(value, list):
        return [lookalike(item, data) for item in value]
    if isinstance(value, bool):
        return data.draw(st.sampled_from([value, int(value)]))
    if type(value) is int and value in (0, 1):
        return data.draw(st.sampled_from([value, bool(value)]))
    return value


@settings(max_examples=200)
@given(DOCUMENTS, st.data())
def test_diff_sees_changes_python_equality_misses(old: Json, data: st.DataObject) -> None:
    """A new document that differs only where Python thinks `1 == true` still round-trips."""
    new = lookalike(old, data)
    assert strict(apply_patch(old, diff(old, new))) == strict(new)


@settings(max_examples=200)
@given(DOCUMENTS)
def test_diff_of_equal_documents_is_empty(document: Json) -> None:
    """Nothing changed, nothing to patch."""
    assert diff(document, json.loads(json.dumps(document))) == {}


def test_diff_tells_true_from_one() -> None:
    """Changing a member from 1 to true (equal in Python) is a change in JSON."""
    assert strict(apply_patch({"a": 1}, diff({"a": 1}, {"a": True}))) == strict({"a": True})
    assert strict(apply_patch({"a": [0]}, diff({"a": [0]}, {"a": [False]}))) == strict(
        {"a": [False]}
    )


# -- JSON text ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "[1]", "1", '"s"', "null", "true", "{'a':1}", "{}x"])
def test_parse_object_refuses_non_objects(text: str) -> None:
    """parse_object accepts only a JSON object; anything else is MALFORMED_JSON."""
    with pytest.raises(braid.BraidError) as caught:
        parse_object(text, "test")
    assert caught.value.code == 1003
    assert caught.value.name == "MALFORMED_JSON"


@settings(max_examples=200)
@given(TARGETS.filter(lambda value: isinstance(value, dict)))
def test_to_json_round_trips_through_parse_object(value: dict[str, Json]) -> None:
    """to_json writes JSON text that parse_object reads back as the same value."""
    assert strict(parse_object(to_json(value), "test")) == strict(value)


# -- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space",
    ["abc", "a" * 127, "0ab", "a.b-c", "9.9", "a--", "a..", "z" + "-" * 126],
)
def test_valid_spaces_are_accepted(space: str) -> None:
    """Spaces of 3 to 127 characters from [a-z0-9.-], not starting with '.' or '-', pass."""
    assert braid.Key(space, "doc").space == space


@pytest.mark.parametrize(
    "space",
    ["", "a", "ab", "a" * 128, "Abc", "abC", ".ab", "-ab", "a_b", "a b", "ab/", "äbc", "abc\n"],
)
def test_invalid_spaces_are_invalid_space(space: str) -> None:
    """Anything outside [a-z0-9][a-z0-9.-]{2,126} is INVALID_SPACE (1001)."""
    with pytest.raises(braid.BraidError) as caught:
        braid.Key(space, "doc")
    assert (caught.value.code, caught.value.name) == (1001, "INVALID_SPACE")


@pytest.mark.parametrize(
    "key",
    [
        "k",
        "k" * 511,
        "é" * 255 + "k",
        "😀" * 127 + "abc",
        "a b",
        "mem_x",
        "a/b",
        "日本語",
        "👩\u200d💻",  # ZERO WIDTH JOINER (category Cf) inside an emoji sequence
        "a\u00a0b",  # NO-BREAK SPACE (Zs)
        "a\u3000b",  # IDEOGRAPHIC SPACE (Zs)
        "a\u2028b",  # LINE SEPARATOR (Zl): not a control character
        "\u00ad",  # SOFT HYPHEN (Cf)
        "\ufeffk",  # ZERO WIDTH NO-BREAK SPACE (Cf)
        "\U000e0001",  # LANGUAGE TAG (Cf), outside the BMP
    ],
)
def test_valid_keys_are_accepted(key: str) -> None:
    """Keys of 1 to 511 bytes of UTF-8 without control characters pass, whatever the
    characters' widths, format characters and non-ASCII spaces included."""
    assert len(key.encode()) <= limits.key_bytes_max
    assert braid.Key("space", key).key == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "k" * 512,
        "é" * 256,
        "😀" * 128,
        "a\x00b",
        "a\nb",
        "\r",
        "\x1f",
        "\x7f",
        "a\x85b",  # NEL, a C1 control character
        "\x9f",  # the last C1 control character
        "\ud800",  # a lone surrogate: not encodable as UTF-8
        "é\udfff",  # a lone low surrogate after a non-ASCII character
    ],
)
def test_invalid_keys_are_invalid_key(key: str) -> None:
    """Empty keys, keys over 511 UTF-8 bytes, control characters and lone surrogates are
    INVALID_KEY (1002)."""
    with pytest.raises(braid.BraidError) as caught:
        braid.Key("space", key)
    assert (caught.value.code, caught.value.name) == (1002, "INVALID_KEY")


def key_rule(key: str) -> bool:
    """The key rule from the README, written with unicodedata: 1 to 511 bytes of valid UTF-8
    (so no lone surrogate) and no character of Unicode category Cc."""
    if any(unicodedata.category(character) == "Cs" for character in key):
        return False
    if any(unicodedata.category(character) == "Cc" for character in key):
        return False
    return 1 <= len(key.encode("utf-8")) <= limits.key_bytes_max


# Every code point, surrogates included, with short and long keys both likely.
any_key = st.text(alphabet=st.characters(codec=None), max_size=300) | st.text(
    alphabet=st.characters(max_codepoint=0xFF), min_size=480, max_size=530
)


@settings(max_examples=2000, deadline=None)
@given(key=any_key)
def test_key_validation_is_exactly_the_rule(key: str) -> None:
    """For any string of any code points, braid.Key accepts it exactly when the documented
    rule does (1 to 511 bytes of UTF-8, no Cc character, no lone surrogate), and refuses
    it otherwise with INVALID_KEY (1002) and nothing else."""
    if key_rule(key):
        assert braid.Key("space", key).key == key
    else:
        with pytest.raises(braid.BraidError) as caught:
            braid.Key("space", key)
        assert caught.value.code == 1002


@settings(max_examples=300, deadline=None)
@given(
    key=st.text(
        alphabet=st.characters(categories=["Cf", "Zs", "Zl", "Zp", "Mn", "So"]),
        min_size=1,
        max_size=100,
    )
)
def test_format_characters_and_spaces_are_valid_in_keys(key: str) -> None:
    """Format characters (the zero-width joiner of emoji sequences among them), every kind
    of space and separator, combining marks and symbols are all valid key characters."""
    assert braid.Key("space", key).key == key


@pytest.mark.parametrize(("space", "key"), [(None, "k"), (5, "k"), (b"abc", "k")])
def test_non_string_space_is_invalid_space(space: object, key: str) -> None:
    """A space that is not a str is refused, not crashed on."""
    with pytest.raises(braid.BraidError) as caught:
        braid.Key(space, key)  # type: ignore[arg-type]
    assert caught.value.code == 1001


@pytest.mark.parametrize("key", [None, 5, b"doc"])
def test_non_string_key_is_invalid_key(key: object) -> None:
    """A key that is not a str is refused, not crashed on."""
    with pytest.raises(braid.BraidError) as caught:
        braid.Key("space", key)  # type: ignore[arg-type]
    assert caught.value.code == 1002


def test_keys_decoded_from_the_wire_are_validated() -> None:
    """Decoding a Key (as the WAL and the network do) runs the same checks."""
    good = msgspec.msgpack.decode(msgspec.msgpack.encode(braid.Key("space", "doc")), type=braid.Key)
    assert good == braid.Key("space", "doc")
    with pytest.raises(braid.BraidError) as caught:
        msgspec.json.decode(b'["Bad", "doc"]', type=braid.Key)
    assert caught.value.code == 1001
    with pytest.raises(braid.BraidError) as caught:
        msgspec.json.decode(b'["space", ""]', type=braid.Key)
    assert caught.value.code == 1002


def test_keys_are_values() -> None:
    """Keys compare and hash by content, and print as space/key."""
    assert braid.Key("space", "doc") == braid.Key("space", "doc")
    assert len({braid.Key("space", "doc"), braid.Key("space", "doc")}) == 1
    assert braid.Key("space", "doc") != braid.Key("space", "doc2")
    assert str(braid.Key("space", "doc")) == "space/doc"


# -- updates --------------------------------------------------------------------------------------


def invalid_update_code(update: Update) -> int:
    with pytest.raises(braid.BraidError) as caught:
        validate_update(update)
    return caught.value.code


def test_valid_update_passes() -> None:
    """A well-formed update (multi-seq, every field set) passes validation."""
    validate_update(Update(1, 3, "who", "request", '{"a":1}', '{"a":null}', True, 10, "kind"))
    validate_update(Update(2**63 - 2, 2**63 - 1, asset_bytes=2**63 - 1))


@pytest.mark.parametrize(
    "update",
    [
        Update(0, 1),
        Update(2, 1),
        Update(1, 1, asset_bytes=-1),
        Update(1, 2**63),
        Update(1, 1, asset_bytes=2**63),
        Update(True, 1),  # a bool is not a seq
        Update(1, 1, active=1),  # type: ignore[arg-type]
        Update(1, 1, who="w" * (limits.who_bytes_max + 1)),
        Update(1, 1, kind="k" * (limits.kind_bytes_max + 1)),
        Update(1, 1, request="r" * (limits.request_bytes_max + 1)),
        Update(1, 1, who=None),  # type: ignore[arg-type]
        Update(1, 1, redo=b"{}"),  # type: ignore[arg-type]
        Update(1, 1, redo='{"a":"' + "x" * limits.json_bytes_max + '"}'),
    ],
    ids=[
        "seq_begin-0",
        "end-before-begin",
        "negative-assets",
        "seq-over-63-bits",
        "assets-over-63-bits",
        "bool-seq",
        "int-active",
        "long-who",
        "long-kind",
        "long-request",
        "none-who",
        "bytes-redo",
        "huge-redo",
    ],
)
def test_invalid_updates_are_invalid_update(update: Update) -> None:
    """Out-of-range seqs or sizes and wrongly typed fields are INVALID_UPDATE (1004)."""
    assert invalid_update_code(update) == 1004


def test_update_with_non_object_json_is_malformed_json() -> None:
    """Redo and undo must be JSON objects: MALFORMED_JSON (1003) otherwise."""
    assert invalid_update_code(Update(1, 1, redo="[]")) == 1003
    assert invalid_update_code(Update(1, 1, undo="{")) == 1003


@pytest.mark.parametrize(
    "value", [{"a": float("nan")}, {"a": float("inf")}, {"a": object()}, {"a": b"bytes"}]
)
def test_update_of_refuses_a_value_that_is_not_json(value: object) -> None:
    """Update.of with a redo or undo that has no JSON text (NaN, an infinity, an object of
    another type, bytes) raises INVALID_UPDATE naming the field, never a TypeError, and
    never encodes it as something else (NaN as null, bytes as base64)."""
    for field, redo, undo in (("redo", value, None), ("undo", {}, value)):
        with pytest.raises(braid.BraidError) as caught:
            braid.Update.of(1, redo, undo)
        assert caught.value.name == "INVALID_UPDATE" and field in str(caught.value)
