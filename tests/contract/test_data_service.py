"""The DataService contract (DESIGN §1): one suite, run unchanged against every engine.

The `service` fixture (see conftest.py) runs each test once per engine. Documents are
compared as parsed JSON in a canonical form, so `1` and `true` (equal in Python) stay
different, and member order does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

import braid
from braid import HEAD_PATCH, REWIND, Update
from tests.support.json_model import canonical, merge_patch

if TYPE_CHECKING:
    from tests.contract.conftest import ServiceUnderTest

Json = Any


def assert_document(text: str, expected: Json) -> None:
    assert canonical(json.loads(text)) == canonical(expected)


@contextlib.contextmanager
def raises_braid(code: int, name: str) -> Iterator[pytest.ExceptionInfo[braid.BraidError]]:
    """Expect a braid.BraidError with exactly this code and name."""
    with pytest.raises(braid.BraidError) as caught:
        yield caught
    assert caught.value.code == code, caught.value
    assert caught.value.name == name, caught.value


def update(begin: int, end: int | None = None, redo: Json = None, undo: Json = None) -> Update:
    return Update(
        seq_begin=begin,
        seq_end=begin if end is None else end,
        redo=json.dumps({} if redo is None else redo),
        undo=json.dumps({} if undo is None else undo),
    )


# A document with multi-seq deltas, its redos and undos true inverses of each other:
# (seq_begin, seq_end, redo, undo).
HISTORY: list[tuple[int, int, Json, Json]] = [
    (1, 1, {"a": 1, "b": {"x": 1}}, {"a": None, "b": None}),
    (2, 4, {"b": {"y": 2}, "c": [1, {"k": None}]}, {"b": {"y": None}, "c": None}),
    (5, 5, {"a": None, "b": {"x": 3}}, {"a": 1, "b": {"x": 1}}),
    (6, 8, {"d": "z", "b": {"y": {"deep": True}}}, {"d": None, "b": {"y": 2}}),
]
HEAD = 8


def document_at(seq: int) -> Json:
    """The document of HISTORY as of `seq`: every delta ending at or before it, merged."""
    document: Json = {}
    for _, end, redo, _ in HISTORY:
        if end <= seq:
            document = merge_patch(document, redo)
    return document


def landing_seq(seq: int) -> int:
    """The newest delta boundary at or before `seq` (where a rewind to `seq` lands)."""
    return max((end for _, end, _, _ in HISTORY if end <= seq), default=0)


async def write_history(service: ServiceUnderTest, name: str = "history") -> braid.Key:
    key = service.key(name)
    first, *rest = HISTORY
    await service.initialize(key, update(first[0], first[1], first[2], first[3]))
    for begin, end, redo, undo in rest:
        await service.patch(key, [update(begin, end, redo, undo)])
    return key


async def write_simple(service: ServiceUnderTest, name: str, count: int) -> braid.Key:
    """A document of `count` single-seq deltas; delta n sets member "vN" and "last"."""
    key = service.key(name)
    await service.initialize(key, simple_update(1))
    for seq in range(2, count + 1):
        await service.patch(key, [simple_update(seq)])
    return key


def simple_update(seq: int) -> Update:
    previous = {"last": seq - 1} if seq > 1 else {"last": None}
    return update(seq, seq, {f"v{seq}": seq, "last": seq}, {f"v{seq}": None, **previous})


def simple_document(seq: int) -> Json:
    document: Json = {f"v{n}": n for n in range(1, seq + 1)}
    if seq:
        document["last"] = seq
    return document


# -- initialize and get ------------------------------------------------------------------------


async def test_initialize_then_get_returns_the_document(service: ServiceUnderTest) -> None:
    """initialize stores the first delta; get answers its redo, its seq_end, and 1 read."""
    key = service.key("doc")
    redo = {"name": "ada", "tags": ["x", "y"], "nested": {"n": 1.5, "t": True}}
    await service.initialize(key, update(1, 1, redo))
    change = await service.get(key)
    assert_document(change.document, redo)
    assert change.seq == 1
    assert change.reads == 1


async def test_initialize_may_start_with_a_multi_seq_delta(service: ServiceUnderTest) -> None:
    """A document may begin with a delta covering several seqs; its head is that seq_end."""
    key = service.key("doc")
    await service.initialize(key, update(1, 5, {"a": 1}))
    change = await service.get(key)
    assert change.seq == 5
    await service.patch(key, [update(6, 6, {"b": 2})])
    assert_document((await service.get(key)).document, {"a": 1, "b": 2})


async def test_initialize_drops_null_members(service: ServiceUnderTest) -> None:
    """The document is the redo merged into {}: null members are deletions, not values."""
    key = service.key("doc")
    await service.initialize(key, update(1, 1, {"a": None, "b": {"c": None, "d": 1}}))
    assert_document((await service.get(key)).document, {"b": {"d": 1}})


async def test_initialize_twice_is_document_exists(service: ServiceUnderTest) -> None:
    """A second initialize of the same key fails with DOCUMENT_EXISTS and changes nothing."""
    key = service.key("doc")
    await service.initialize(key, update(1, 1, {"a": 1}))
    with raises_braid(2002, "DOCUMENT_EXISTS"):
        await service.initialize(key, update(1, 1, {"a": 2}))
    change = await service.get(key)
    assert_document(change.document, {"a": 1})
    assert change.seq == 1


async def test_keys_are_independent(service: ServiceUnderTest) -> None:
    """Documents under different keys (and the same key name in another space) do not mix."""
    first, second = service.key("one"), service.key("two")
    other_space = braid.Key("other-space", first.key)
    await service.initialize(first, update(1, 1, {"which": 1}))
    await service.initialize(second, update(1, 3, {"which": 2}))
    await service.initialize(other_space, update(1, 2, {"which": 3}))
    assert_document((await service.get(first)).document, {"which": 1})
    assert (await service.get(second)).seq == 3
    assert (await service.get(other_space)).seq == 2
    assert_document((await service.get(other_space)).document, {"which": 3})


async def test_get_of_a_missing_document_is_not_found(service: ServiceUnderTest) -> None:
    """Every operation on a key that holds no document fails with DOCUMENT_NOT_FOUND."""
    key = service.key("never-written")
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.get(key)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.patch(key, [update(1, 1, {"a": 1})])
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.compute(key, HEAD_PATCH, 0)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.compute(key, REWIND, 0)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.snapshot(key, 1, "{}", 0)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.delete(key)


# -- patch -----------------------------------------------------------------------------------


async def test_patch_appends_and_get_merges_every_redo(service: ServiceUnderTest) -> None:
    """get merges all redos in order (RFC 7396: objects merge, arrays replace, null deletes)
    and reports the last seq_end and the number of deltas read."""
    key = await write_history(service)
    change = await service.get(key)
    assert_document(change.document, document_at(HEAD))
    assert change.seq == HEAD
    assert change.reads == len(HISTORY)


async def test_writes_answer_nothing(service: ServiceUnderTest) -> None:
    """initialize, patch, delete and close(key) resolve to None on every service (a remote
    client must not hand back its protocol's acknowledgement)."""
    key = service.key("answers")
    assert await service.initialize(key, simple_update(1)) is None  # type: ignore[func-returns-value]
    assert await service.patch(key, [simple_update(2)]) is None  # type: ignore[func-returns-value]
    assert await service.close(key) is None  # type: ignore[func-returns-value]
    assert await service.delete(key) is None  # type: ignore[func-returns-value]


async def test_patch_takes_several_contiguous_updates(service: ServiceUnderTest) -> None:
    """One patch call may carry several contiguous updates; all of them are appended."""
    key = service.key("doc")
    await service.initialize(key, update(1, 1, {"n": 1}))
    await service.patch(key, [update(2, 2, {"n": 2}), update(3, 5, {"m": 3}), update(6, 6)])
    change = await service.get(key)
    assert_document(change.document, {"n": 2, "m": 3})
    assert change.seq == 6
    assert change.reads == 4


@pytest.mark.parametrize("begin", [1, 3, 4, 6, 100], ids=lambda b: f"begin={b}")
async def test_patch_not_at_head_plus_one_is_head_seq_off(
    service: ServiceUnderTest, begin: int
) -> None:
    """A patch starting anywhere but head + 1 (an overlap below, a gap above) fails with
    HEAD_SEQ_OFF and leaves the document as it was."""
    key = service.key("doc")
    await service.initialize(key, update(1, 4, {"a": 1}))
    with raises_braid(2003, "HEAD_SEQ_OFF"):
        await service.patch(key, [update(begin, begin + 1, {"a": 2})])
    change = await service.get(key)
    assert_document(change.document, {"a": 1})
    assert change.seq == 4
    await service.patch(key, [update(5, 5, {"a": 3})])
    assert (await service.get(key)).seq == 5


@pytest.mark.parametrize(
    "seqs",
    [[(2, 2), (4, 4)], [(2, 3), (3, 4)], [(2, 2), (3, 3), (3, 3)], [(2, 4), (2, 4)]],
    ids=["gap", "overlap", "repeat-last", "same-twice"],
)
async def test_non_contiguous_updates_in_one_call_are_refused(
    service: ServiceUnderTest, seqs: list[tuple[int, int]]
) -> None:
    """Updates of one patch call must follow each other exactly (UPDATES_NOT_CONTIGUOUS);
    the whole call is refused, including its valid first update."""
    key = service.key("doc")
    await service.initialize(key, update(1, 1, {"a": 1}))
    updates = [update(begin, end, {"a": begin}) for begin, end in seqs]
    with raises_braid(1005, "UPDATES_NOT_CONTIGUOUS"):
        await service.patch(key, updates)
    change = await service.get(key)
    assert_document(change.document, {"a": 1})
    assert change.seq == 1


async def test_empty_patch_is_refused(service: ServiceUnderTest) -> None:
    """A patch call without updates fails with EMPTY_PATCH (on a missing key too)."""
    key = service.key("doc")
    await service.initialize(key, update(1, 1, {"a": 1}))
    with raises_braid(1006, "EMPTY_PATCH"):
        await service.patch(key, [])
    with raises_braid(1006, "EMPTY_PATCH"):
        await service.patch(service.key("missing"), [])
    assert (await service.get(key)).seq == 1


MALFORMED = ['{"a":', "not json", "", "[1, 2]", '"text"', "1", "null", "true", "{'a': 1}"]


@pytest.mark.parametrize("text", MALFORMED)
async def test_malformed_or_non_object_redo_is_malformed_json(
    service: ServiceUnderTest, text: str
) -> None:
    """A redo that is not JSON, or is JSON but not an object, fails with MALFORMED_JSON in
    initialize and in patch, and nothing is stored."""
    key = service.key("doc")
    with raises_braid(1003, "MALFORMED_JSON"):
        await service.initialize(key, Update(seq_begin=1, seq_end=1, redo=text))
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.get(key)
    await service.initialize(key, update(1, 1, {"a": 1}))
    with raises_braid(1003, "MALFORMED_JSON"):
        await service.patch(key, [update(2, 2), Update(seq_begin=3, seq_end=3, redo=text)])
    assert (await service.get(key)).seq == 1


@pytest.mark.parametrize("text", ['{"a":', "[]", "7"])
async def test_malformed_undo_is_malformed_json(service: ServiceUnderTest, text: str) -> None:
    """The undo is checked like the redo: not a JSON object means MALFORMED_JSON."""
    key = service.key("doc")
    with raises_braid(1003, "MALFORMED_JSON"):
        await service.initialize(key, Update(seq_begin=1, seq_end=1, undo=text))
    await service.initialize(key, update(1, 1, {"a": 1}))
    with raises_braid(1003, "MALFORMED_JSON"):
        await service.patch(key, [Update(seq_begin=2, seq_end=2, undo=text)])
    assert (await service.get(key)).seq == 1


INVALID_UPDATES = {
    "seq_begin-0": Update(seq_begin=0, seq_end=0),
    "seq_begin-negative": Update(seq_begin=-1, seq_end=1),
    "end-before-begin": Update(seq_begin=3, seq_end=2),
    "negative-asset-bytes": Update(seq_begin=2, seq_end=2, asset_bytes=-1),
    "seq-not-int": Update(seq_begin=2.0, seq_end=2),  # type: ignore[arg-type]
    "seq_end-past-63-bits": Update(seq_begin=2, seq_end=2**63),
}


@pytest.mark.parametrize("bad", list(INVALID_UPDATES.values()), ids=list(INVALID_UPDATES))
async def test_invalid_update_fields_are_invalid_update(
    service: ServiceUnderTest, bad: Update
) -> None:
    """An update whose seqs or asset_bytes are out of range fails with INVALID_UPDATE, in
    initialize and in patch, and nothing is stored."""
    key = service.key("doc")
    with raises_braid(1004, "INVALID_UPDATE"):
        await service.initialize(key, bad)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.get(key)
    await service.initialize(key, update(1, 1, {"a": 1}))
    with raises_braid(1004, "INVALID_UPDATE"):
        await service.patch(key, [bad])
    change = await service.get(key)
    assert change.seq == 1
    assert_document(change.document, {"a": 1})


# -- keys ----------------------------------------------------------------------------------------


BAD_SPACES = {
    "too-short": "ab",
    "empty": "",
    "uppercase": "Space",
    "leading-dot": ".space",
    "leading-dash": "-space",
    "underscore": "my_space",
    "slash": "a/b/c",
    "too-long": "s" * 128,
    "trailing-newline": "space\n",
}


@pytest.mark.parametrize("space", list(BAD_SPACES.values()), ids=list(BAD_SPACES))
def test_invalid_space_is_refused_by_key(space: str) -> None:
    """braid.Key refuses a bad space with INVALID_SPACE before any engine sees it (so this
    does not need the `service` fixture: no engine can be reached with such a key)."""
    with raises_braid(1001, "INVALID_SPACE"):
        braid.Key(space, "doc")


BAD_KEYS = {
    "empty": "",
    "nul": "doc\x00",
    "newline": "doc\n",
    "tab": "\tdoc",
    "escape": "\x1b[31m",
    "delete": "doc\x7f",
    "512-bytes": "k" * 512,
    "512-bytes-multibyte": "é" * 256,
    "lone-surrogate": "doc\ud800",
}


@pytest.mark.parametrize("name", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_invalid_key_is_refused_by_key(name: str) -> None:
    """braid.Key refuses a key that is empty, has control characters or is over 511 bytes
    of UTF-8 with INVALID_KEY, before any engine sees it."""
    with raises_braid(1002, "INVALID_KEY"):
        braid.Key("space", name)


async def test_keys_at_the_limits_are_stored(service: ServiceUnderTest) -> None:
    """The longest valid key (511 bytes of UTF-8) and the shortest and longest spaces work."""
    longest_name = service.key("k" * (511 - len(service.key_prefix))).key
    assert len(longest_name.encode()) == 511
    keys = [
        braid.Key("abc", service.key("x").key),
        braid.Key("a" * 127, service.key("x").key),
        braid.Key("space", longest_name),
        braid.Key("space", service.key("ünï cödé ✓").key),
    ]
    for number, key in enumerate(keys, start=1):
        await service.initialize(key, update(1, number, {"n": number}))
    for number, key in enumerate(keys, start=1):
        change = await service.get(key)
        assert change.seq == number
        assert_document(change.document, {"n": number})


# -- compute -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", range(HEAD + 1))
async def test_head_patch_turns_the_document_at_seq_into_head(
    service: ServiceUnderTest, seq: int
) -> None:
    """compute(HEAD_PATCH, seq) is a merge patch that takes the document as of seq (inside a
    multi-seq delta: as of that delta's start) to the head document; its seq is the head and
    its reads are the deltas newer than seq."""
    key = await write_history(service)
    change = await service.compute(key, HEAD_PATCH, seq)
    patch = json.loads(change.document)
    assert isinstance(patch, dict)
    assert canonical(merge_patch(document_at(seq), patch)) == canonical(document_at(HEAD))
    assert change.seq == HEAD
    assert change.reads == sum(1 for _, end, _, _ in HISTORY if end > seq)


@pytest.mark.parametrize("seq", range(HEAD + 1))
async def test_rewind_turns_head_back_into_the_document_at_seq(
    service: ServiceUnderTest, seq: int
) -> None:
    """compute(REWIND, seq) merges the undos newer than seq, newest first: applied to the
    head it gives the document as of seq; its seq is the delta boundary it lands on."""
    key = await write_history(service)
    change = await service.compute(key, REWIND, seq)
    patch = json.loads(change.document)
    assert isinstance(patch, dict)
    assert canonical(merge_patch(document_at(HEAD), patch)) == canonical(document_at(seq))
    assert change.seq == landing_seq(seq)
    assert change.reads == sum(1 for _, end, _, _ in HISTORY if end > seq)


async def test_compute_values_are_the_expected_patches(service: ServiceUnderTest) -> None:
    """Spot values: from the head both methods answer the empty patch; one delta back they
    answer exactly that delta's redo and undo."""
    key = await write_history(service)
    at_head = await service.compute(key, HEAD_PATCH, HEAD)
    assert_document(at_head.document, {})
    assert (at_head.seq, at_head.reads) == (HEAD, 0)
    rewind_none = await service.compute(key, REWIND, HEAD)
    assert_document(rewind_none.document, {})
    assert (rewind_none.seq, rewind_none.reads) == (HEAD, 0)
    _, _, last_redo, last_undo = HISTORY[-1]
    one_back = await service.compute(key, HEAD_PATCH, 5)
    assert_document(one_back.document, last_redo)
    rewind_one = await service.compute(key, REWIND, 7)
    assert_document(rewind_one.document, last_undo)
    assert rewind_one.seq == 5


# Redos that cannot be merged into one exact patch: member "a" becomes a scalar, then an
# object again (merging {"y": 2} into an old {"x": 1} would keep "x"). And "n" goes from
# 1 to true, which Python's `==` calls equal.
UNMERGEABLE: list[tuple[Json, Json]] = [
    ({"a": {"x": 1}, "n": 1}, {"a": None, "n": None}),
    ({"a": 5}, {"a": {"x": 1}}),
    ({"a": {"y": 2}, "n": True}, {"a": 5, "n": 1}),
]
UNMERGEABLE_DOCUMENTS = [{}, {"a": {"x": 1}, "n": 1}, {"a": 5, "n": 1}, {"a": {"y": 2}, "n": True}]


@pytest.mark.parametrize("seq", [0, 1, 2, 3])
async def test_compute_when_patches_do_not_merge_exactly(
    service: ServiceUnderTest, seq: int
) -> None:
    """Where the redos (or undos) in between cannot be merged into one exact merge patch,
    HEAD_PATCH and REWIND still answer patches that reach the right document."""
    key = service.key("doc")
    (first_redo, first_undo), *rest = UNMERGEABLE
    await service.initialize(key, update(1, 1, first_redo, first_undo))
    for seq_begin, (redo, undo) in enumerate(rest, start=2):
        await service.patch(key, [update(seq_begin, seq_begin, redo, undo)])
    head = UNMERGEABLE_DOCUMENTS[-1]
    head_patch = await service.compute(key, HEAD_PATCH, seq)
    reached = merge_patch(UNMERGEABLE_DOCUMENTS[seq], json.loads(head_patch.document))
    assert canonical(reached) == canonical(head)
    rewind = await service.compute(key, REWIND, seq)
    assert canonical(merge_patch(head, json.loads(rewind.document))) == canonical(
        UNMERGEABLE_DOCUMENTS[seq]
    )


@pytest.mark.parametrize("method", [HEAD_PATCH, REWIND])
async def test_compute_beyond_head_is_seq_beyond_head(
    service: ServiceUnderTest, method: braid.ComputeMethod
) -> None:
    """compute from a seq newer than the head fails with SEQ_BEYOND_HEAD; a negative seq
    is an INVALID_ARGUMENT."""
    key = await write_history(service)
    with raises_braid(2008, "SEQ_BEYOND_HEAD"):
        await service.compute(key, method, HEAD + 1)
    with raises_braid(2008, "SEQ_BEYOND_HEAD"):
        await service.compute(key, method, 2**62)
    with raises_braid(1007, "INVALID_ARGUMENT"):
        await service.compute(key, method, -1)


# -- snapshot ------------------------------------------------------------------------------------


async def test_snapshot_folds_old_deltas_and_returns_the_count(service: ServiceUnderTest) -> None:
    """snapshot(seq, doc, history=0) folds every delta up to seq into one: it returns how many
    deltas disappeared, the document is unchanged, and get reads fewer deltas."""
    key = await write_simple(service, "doc", 6)
    removed = await service.snapshot(key, 4, json.dumps(simple_document(4)), 0)
    assert removed == 3
    change = await service.get(key)
    assert_document(change.document, simple_document(6))
    assert change.seq == 6
    assert change.reads == 3


async def test_snapshot_keeps_the_history_newest_deltas(service: ServiceUnderTest) -> None:
    """With history=h the h newest deltas survive even if seq is the head; older ones fold."""
    key = await write_simple(service, "doc", 6)
    removed = await service.snapshot(key, 6, json.dumps(simple_document(6)), 2)
    assert removed == 3  # deltas 1..4 became one; 5 and 6 are kept
    assert (await service.get(key)).reads == 3
    rewind = await service.compute(key, REWIND, 4)
    assert canonical(merge_patch(simple_document(6), json.loads(rewind.document))) == canonical(
        simple_document(4)
    )
    with raises_braid(2004, "REWIND_PAST_COMPACTED"):
        await service.compute(key, REWIND, 3)


async def test_snapshot_with_nothing_to_fold_returns_zero(service: ServiceUnderTest) -> None:
    """A snapshot at the first delta, or one whose history keeps everything, removes nothing
    and answers 0; rewinding all the way is still possible."""
    key = await write_simple(service, "doc", 3)
    assert await service.snapshot(key, 1, json.dumps(simple_document(1)), 0) == 0
    assert await service.snapshot(key, 3, json.dumps(simple_document(3)), 2) == 0
    assert await service.snapshot(key, 3, json.dumps(simple_document(3)), 10) == 0
    assert (await service.get(key)).reads == 3
    rewind = await service.compute(key, REWIND, 0)
    assert_document(rewind.document, {"v1": None, "v2": None, "v3": None, "last": None})


async def test_rewind_past_a_snapshot_is_refused(service: ServiceUnderTest) -> None:
    """After folding through seq s, rewinding to s still works but to anything below s fails
    with REWIND_PAST_COMPACTED; head patches from inside the fold still reach the head."""
    key = await write_simple(service, "doc", 5)
    assert await service.snapshot(key, 3, json.dumps(simple_document(3)), 0) == 2
    for seq in (0, 1, 2):
        with raises_braid(2004, "REWIND_PAST_COMPACTED"):
            await service.compute(key, REWIND, seq)
    for seq in (3, 4, 5):
        rewind = await service.compute(key, REWIND, seq)
        document = merge_patch(simple_document(5), json.loads(rewind.document))
        assert canonical(document) == canonical(simple_document(seq))
    for seq in range(6):
        head_patch = await service.compute(key, HEAD_PATCH, seq)
        document = merge_patch(simple_document(seq), json.loads(head_patch.document))
        assert canonical(document) == canonical(simple_document(5))


async def test_snapshot_twice_folds_the_fold(service: ServiceUnderTest) -> None:
    """A second snapshot folds the earlier fold together with newer deltas."""
    key = await write_simple(service, "doc", 7)
    assert await service.snapshot(key, 3, json.dumps(simple_document(3)), 0) == 2
    assert await service.snapshot(key, 6, json.dumps(simple_document(6)), 0) == 3
    change = await service.get(key)
    assert_document(change.document, simple_document(7))
    assert change.reads == 2
    with raises_braid(2004, "REWIND_PAST_COMPACTED"):
        await service.compute(key, REWIND, 5)
    rewind = await service.compute(key, REWIND, 6)
    assert_document(rewind.document, {"v7": None, "last": 6})


async def test_snapshot_with_a_different_document_is_a_mismatch(
    service: ServiceUnderTest,
) -> None:
    """A snapshot whose document differs from the stored one at seq (a missing, extra or
    changed member; `true` for `1`) fails with SNAPSHOT_MISMATCH and compacts nothing."""
    key = await write_simple(service, "doc", 4)
    stored = simple_document(3)
    wrong_documents = [
        {**stored, "extra": 1},
        {name: value for name, value in stored.items() if name != "v1"},
        {**stored, "v2": 20},
        {**stored, "v1": True},
        {**stored, "v3": "3"},
        simple_document(4),
        {},
    ]
    for wrong in wrong_documents:
        with raises_braid(2006, "SNAPSHOT_MISMATCH"):
            await service.snapshot(key, 3, json.dumps(wrong), 0)
    assert (await service.get(key)).reads == 4
    rewind = await service.compute(key, REWIND, 0)
    assert canonical(merge_patch(simple_document(4), json.loads(rewind.document))) == canonical({})


async def test_snapshot_at_a_seq_no_delta_ends_at_is_invalid(service: ServiceUnderTest) -> None:
    """The snapshot seq must be some delta's seq_end: a seq inside a multi-seq delta, or 0,
    fails with SNAPSHOT_SEQ_INVALID; beyond the head it is SEQ_BEYOND_HEAD."""
    key = await write_history(service)
    for seq in (0, 2, 3, 6, 7):
        with raises_braid(2005, "SNAPSHOT_SEQ_INVALID"):
            await service.snapshot(key, seq, json.dumps(document_at(seq)), 0)
    with raises_braid(2008, "SEQ_BEYOND_HEAD"):
        await service.snapshot(key, HEAD + 1, json.dumps(document_at(HEAD)), 0)
    assert (await service.get(key)).reads == len(HISTORY)


async def test_snapshot_at_a_multi_seq_boundary(service: ServiceUnderTest) -> None:
    """Folding through the end of a multi-seq delta works; the fold keeps the document."""
    key = await write_history(service)
    assert await service.snapshot(key, 5, json.dumps(document_at(5)), 0) == 2
    change = await service.get(key)
    assert_document(change.document, document_at(HEAD))
    assert change.reads == 2
    with raises_braid(2004, "REWIND_PAST_COMPACTED"):
        await service.compute(key, REWIND, 4)
    rewind = await service.compute(key, REWIND, 5)
    assert canonical(merge_patch(document_at(HEAD), json.loads(rewind.document))) == canonical(
        document_at(5)
    )


async def test_snapshot_arguments_are_checked(service: ServiceUnderTest) -> None:
    """A snapshot document that is not a JSON object is MALFORMED_JSON; a negative history
    or seq is INVALID_ARGUMENT; nothing is compacted."""
    key = await write_simple(service, "doc", 3)
    with raises_braid(1003, "MALFORMED_JSON"):
        await service.snapshot(key, 2, "{not json", 0)
    with raises_braid(1003, "MALFORMED_JSON"):
        await service.snapshot(key, 2, "[]", 0)
    with raises_braid(1007, "INVALID_ARGUMENT"):
        await service.snapshot(key, 2, json.dumps(simple_document(2)), -1)
    with raises_braid(1007, "INVALID_ARGUMENT"):
        await service.snapshot(key, -1, "{}", 0)
    assert (await service.get(key)).reads == 3


# -- delete, inventory, close ------------------------------------------------------------------


async def test_delete_then_get_is_not_found(service: ServiceUnderTest) -> None:
    """After delete the document is gone (DOCUMENT_NOT_FOUND); a second delete fails too;
    other documents are untouched."""
    key = await write_simple(service, "doc", 3)
    other = await write_simple(service, "other", 2)
    await service.delete(key)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.get(key)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.compute(key, REWIND, 0)
    with raises_braid(2001, "DOCUMENT_NOT_FOUND"):
        await service.delete(key)
    assert (await service.get(other)).seq == 2


async def test_initialize_after_delete_starts_afresh(service: ServiceUnderTest) -> None:
    """A deleted key can be initialized again: the new document shares nothing with the old
    one (seq restarts, old members and old history are gone)."""
    key = await write_simple(service, "doc", 4)
    await service.delete(key)
    await service.initialize(key, update(1, 1, {"fresh": True}, {"fresh": None}))
    change = await service.get(key)
    assert_document(change.document, {"fresh": True})
    assert (change.seq, change.reads) == (1, 1)
    await service.patch(key, [update(2, 2, {"more": 1}, {"more": None})])
    rewind = await service.compute(key, REWIND, 0)
    assert_document(rewind.document, {"fresh": None, "more": None})
    assert (rewind.seq, rewind.reads) == (0, 2)


async def test_inventory_lists_documents_with_seq_and_delta_count(
    service: ServiceUnderTest,
) -> None:
    """inventory lists every live document once with its head seq and delta count (after a
    snapshot: the count left), and leaves out deleted ones."""
    first = await write_simple(service, "first", 3)
    second = await write_history(service, "second")
    gone = await write_simple(service, "gone", 2)
    await service.delete(gone)
    mine = {first, second, gone}
    listed = [info for info in await service.inventory() if info.key in mine]
    by_key = {info.key: info for info in listed}
    assert len(listed) == len(by_key) == 2
    assert (by_key[first].seq, by_key[first].deltas) == (3, 3)
    assert (by_key[second].seq, by_key[second].deltas) == (HEAD, len(HISTORY))
    assert by_key[first].bytes > 0
    assert by_key[second].bytes > 0
    await service.snapshot(first, 3, json.dumps(simple_document(3)), 0)
    after = {info.key: info for info in await service.inventory() if info.key in mine}
    assert (after[first].seq, after[first].deltas) == (3, 1)


async def test_inventory_of_an_empty_service_is_empty(service: ServiceUnderTest) -> None:
    """A fresh service lists nothing; after delete of its only document, nothing again."""
    assert await service.inventory() == []
    key = await write_simple(service, "only", 1)
    assert [info.key for info in await service.inventory()] == [key]
    await service.delete(key)
    assert await service.inventory() == []


async def test_close_of_one_key_keeps_the_document(service: ServiceUnderTest) -> None:
    """close(key) only releases the document's memory: it stays readable and writable, both
    right after a write and after the store had a chance to checkpoint (inventory)."""
    key = await write_simple(service, "doc", 3)
    await service.close(key)
    assert_document((await service.get(key)).document, simple_document(3))
    await service.inventory()
    await service.close(key)
    change = await service.get(key)
    assert_document(change.document, simple_document(3))
    assert (change.seq, change.reads) == (3, 3)
    await service.close(key)
    await service.patch(key, [simple_update(4)])
    await service.close(key)
    rewind = await service.compute(key, REWIND, 2)
    assert_document(rewind.document, {"v3": None, "v4": None, "last": 2})
    await service.close(service.key("never-written"))


async def test_operations_after_close_are_store_closed(service: ServiceUnderTest) -> None:
    """After close() without a key, reads and writes fail with STORE_CLOSED."""
    key = await write_simple(service, "doc", 1)
    await service.close()
    with raises_braid(3005, "STORE_CLOSED"):
        await service.get(key)
    with raises_braid(3005, "STORE_CLOSED"):
        await service.patch(key, [simple_update(2)])
    with raises_braid(3005, "STORE_CLOSED"):
        await service.initialize(service.key("new"), simple_update(1))


async def test_reads_count_the_deltas_merged(service: ServiceUnderTest) -> None:
    """`reads` is the number of deltas merged: all of them for get, the newer-than-seq ones
    for compute, whatever their seq spans."""
    key = service.key("doc")
    await service.initialize(key, update(1, 10, {"a": 1}))
    assert (await service.get(key)).reads == 1
    await service.patch(key, [update(11, 11, {"b": 1}), update(12, 20, {"c": 1})])
    assert (await service.get(key)).reads == 3
    assert (await service.compute(key, HEAD_PATCH, 0)).reads == 3
    assert (await service.compute(key, HEAD_PATCH, 10)).reads == 2
    assert (await service.compute(key, HEAD_PATCH, 15)).reads == 1
    assert (await service.compute(key, REWIND, 11)).reads == 1
    assert (await service.compute(key, REWIND, 5)).reads == 3


async def test_concurrent_writers_on_many_documents(service: ServiceUnderTest) -> None:
    """Concurrent initializes and patches on different documents all land (the durable
    engine commits them in shared batches)."""
    keys = [service.key(f"doc-{number}") for number in range(16)]
    await asyncio.gather(*(service.initialize(key, simple_update(1)) for key in keys))
    for seq in range(2, 5):
        await asyncio.gather(*(service.patch(key, [simple_update(seq)]) for key in keys))
    changes = await asyncio.gather(*(service.get(key) for key in keys))
    for change in changes:
        assert change.seq == 4
        assert_document(change.document, simple_document(4))


async def test_concurrent_patches_on_one_document_admit_one_per_seq(
    service: ServiceUnderTest,
) -> None:
    """Racing patches for the same next seq: exactly one wins, the others get HEAD_SEQ_OFF."""
    key = await write_simple(service, "doc", 1)
    results = await asyncio.gather(
        *(service.patch(key, [update(2, 2, {"winner": n})]) for n in range(5)),
        return_exceptions=True,
    )
    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 4
    for failure in failures:
        assert isinstance(failure, braid.BraidError)
        assert failure.code == 2003
    change = await service.get(key)
    assert change.seq == 2
    assert json.loads(change.document)["winner"] in range(5)
