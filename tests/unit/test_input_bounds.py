"""Inputs at braid's depth, size and Unicode bounds, through the embedded API and the CLI.

Issue 7, rows 7-10: every bound is enforced on write with its code, before anything is
logged, so that whatever braid accepted stays readable by `get`, `compute` and every CLI
command (DESIGN §3 invariant 7). Each refusal test also checks that the refused write
changed nothing: the document, its seq and the inventory read back as before.
The network side of these rows is in tests/cluster/test_big_documents.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import braid
from braid import HEAD_PATCH, REWIND, BraidError, Key, Update, limits
from braid.cli.main import main
from braid.core.document import DocumentLog
from braid.model import apply_patch, compose, diff, json_depth, parse_object, to_json

Json = Any
DEPTH = limits.json_depth_max
SIZE = limits.document_bytes_max
DURABLE_CONFIG = braid.DurableConfig(segment_bytes=1 << 20)


def nested(depth: int, leaf: Json = 1) -> str:
    """A JSON object nested `depth` levels deep: {"a":{"a":...leaf...}}."""
    return '{"a":' * depth + json.dumps(leaf) + "}" * depth


def padded_redo(size: int, who: str = "") -> Update:
    """An initialize update whose `update_bytes` is exactly `size`."""
    room = size - 64 - len("{}") - len(who) - len('{"pad":""}')
    return Update(1, 1, who=who, redo='{"pad":"' + "x" * room + '"}', undo="{}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[braid.Store]:
    async with braid.open(tmp_path / "store", DURABLE_CONFIG) as opened:
        yield opened


async def state(store: braid.Store, key: Key) -> tuple[str, int, list[object]]:
    """What a refused write must leave alone: the document, its seq, and the inventory."""
    change = await store.get(key)
    return change.document, change.seq, list(await store.inventory())


async def refused(call: Any, code: int, cause: str) -> BraidError:
    with pytest.raises(BraidError) as caught:
        await call
    assert caught.value.code == code, caught.value
    assert cause in str(caught.value), caught.value
    return caught.value


# -- row 7: deep JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["disk_", "mem_"])
@pytest.mark.parametrize("depth", [DEPTH + 1, 400, 5000])
async def test_deep_json_is_refused_on_write(store: braid.Store, prefix: str, depth: int) -> None:
    """A redo, undo or snapshot document nested past json_depth_max is MALFORMED_JSON with
    the bound in the message, on initialize and patch, on both engines; nothing changes.
    (Depth 400 was accepted and then unreadable; depth 5000 raised RecursionError.)"""
    key = Key("deep-space", prefix + "doc")
    too_deep = f"nests deeper than {DEPTH} levels"
    await refused(store.initialize(key, Update(1, 1, redo=nested(depth))), 1003, too_deep)
    await store.initialize(key, Update(1, 1, redo=nested(DEPTH), undo="{}"))
    before = await state(store, key)
    await refused(store.patch(key, [Update(2, 2, redo=nested(depth))]), 1003, too_deep)
    await refused(store.patch(key, [Update(2, 2, undo=nested(depth))]), 1003, too_deep)
    await refused(store.snapshot(key, 1, nested(depth), 0), 1003, too_deep)
    assert await state(store, key) == before


@pytest.mark.parametrize("prefix", ["disk_", "mem_"])
async def test_deepest_documents_stay_readable_in_the_inexact_case(
    store: braid.Store, prefix: str
) -> None:
    """At depth json_depth_max, a member replaced by a scalar and then patched with an
    object (the case compute answers with a diff; it failed from depth 329) reads back by
    get, compute(HEAD_PATCH) and compute(REWIND) from every seq, exactly."""
    key = Key("deep-space", prefix + "inexact")
    deep = json.loads(nested(DEPTH - 1))
    redos = [{"m": deep}, {"m": 7}, {"m": deep}, {"n": deep}]
    undos = [{"m": None}, {"m": deep}, {"m": 7}, {"n": None}]
    await store.initialize(key, Update(1, 1, redo=to_json(redos[0]), undo=to_json(undos[0])))
    for seq in range(2, 5):
        redo, undo = to_json(redos[seq - 1]), to_json(undos[seq - 1])
        await store.patch(key, [Update(seq, seq, redo=redo, undo=undo)])
    documents: list[Any] = [{}]
    for patch in redos:
        documents.append(apply_patch(documents[-1], patch))
    head = await store.get(key)
    assert json.loads(head.document) == documents[4]
    for seq in range(5):
        forward = await store.compute(key, HEAD_PATCH, seq)
        assert apply_patch(documents[seq], json.loads(forward.document)) == documents[4]
        back = await store.compute(key, REWIND, seq)
        assert apply_patch(documents[4], json.loads(back.document)) == documents[seq]


def test_read_paths_spend_at_most_the_frames_per_level_limits_allows() -> None:
    """With the recursion limit set to what limits.py budgets (the current stack plus
    json_frames_per_level_max frames per level, plus a little for the calls themselves),
    every read of a json_depth_max-deep document in the inexact case still succeeds:
    get, compute both ways, to_json and the CLI's pretty printing."""
    deep = nested(DEPTH - 1)
    log = DocumentLog([Update(1, 1, redo='{"m":' + deep + "}", undo='{"m":null}')])
    log.append([Update(2, 2, redo='{"m":1}', undo='{"m":' + deep + "}")])
    log.append([Update(3, 3, redo='{"m":' + deep + "}", undo='{"m":1}')])
    from braid.cli.common import pretty_json

    def depth_now() -> int:
        frame, count = sys._getframe(), 0
        while frame is not None:
            frame, count = frame.f_back, count + 1  # type: ignore[assignment]
        return count

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth_now() + DEPTH * limits.json_frames_per_level_max + 20)
    try:
        answers = [log.get()]
        for seq in range(4):
            answers += [log.compute(HEAD_PATCH, seq), log.compute(REWIND, seq)]
        printed = [pretty_json(answer.document) for answer in answers]
    finally:
        sys.setrecursionlimit(old)
    assert json_depth(json.loads(answers[0].document)) == DEPTH
    assert len(printed) == 9


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from("abc"), children, max_size=3)
    ),
    max_leaves=30,
)
patches = st.dictionaries(st.sampled_from("abc"), json_values, max_size=3)


@settings(max_examples=300, deadline=None)
@given(patches, patches)
def test_merging_never_nests_deeper_than_its_inputs(first: Json, second: Json) -> None:
    """apply_patch, compose and diff return values no deeper than the deeper input: the
    property that lets a depth bound on writes bound every read (model.py's proof)."""
    bound = max(json_depth(first), json_depth(second))
    assert json_depth(apply_patch(first, second)) <= bound
    assert json_depth(compose(first, second)[0]) <= bound
    document = apply_patch({}, first)
    assert json_depth(diff(document, apply_patch(document, second))) <= bound


# -- row 8: big documents (the embedded side) ---------------------------------------------------


@pytest.mark.parametrize("prefix", ["disk_", "mem_"])
async def test_a_document_is_bounded_on_write(store: braid.Store, prefix: str) -> None:
    """Deltas adding up to exactly document_bytes_max are accepted and read back; one more
    byte is DOCUMENT_TOO_LARGE (naming the bound and snapshot) on initialize and patch, and
    changes nothing; a snapshot (folding the replaced value away) then makes room."""
    key = Key("big-space", prefix + "doc")
    await refused(store.initialize(key, padded_redo(SIZE + 1)), 2009, str(SIZE))
    first = padded_redo(SIZE // 2)
    await store.initialize(key, first)
    rest = padded_redo(SIZE - SIZE // 2)
    at_bound = Update(2, 2, redo=rest.redo.replace("x", "y"), undo="{}")  # replaces "pad"
    over = Update(2, 2, redo=at_bound.redo[:-2] + 'y"}', undo="{}")
    before = await state(store, key)
    error = await refused(store.patch(key, [over]), 2009, str(SIZE))
    assert "snapshot" in str(error)
    assert await state(store, key) == before
    await store.patch(key, [at_bound])
    change = await store.get(key)
    assert json.loads(change.document) == json.loads(at_bound.redo)
    assert (await store.compute(key, HEAD_PATCH, 0)).document == change.document
    with pytest.raises(BraidError) as full:
        await store.patch(key, [Update(3, 3)])
    assert full.value.code == 2009
    assert await store.snapshot(key, 2, change.document, 0) == 1
    await store.patch(key, [Update(3, 3, redo='{"after":1}')])
    assert json.loads((await store.get(key)).document)["after"] == 1


async def test_a_snapshot_that_would_grow_the_document_past_the_bound_is_refused(
    store: braid.Store,
) -> None:
    """Compaction re-encodes the redos it folds, and "1e15" comes back as 18 characters:
    a fold that would take the document past document_bytes_max is DOCUMENT_TOO_LARGE and
    compacts nothing, so no write, compaction included, makes an unreadable document."""
    key = Key("big-space", "disk_floats")
    count = (SIZE // 2 - 200) // len("1e15,")
    redo = '{"f":[' + ",".join(["1e15"] * count) + "]}"
    await store.initialize(key, Update(1, 1, redo=redo))
    await store.patch(key, [Update(2, 2, redo='{"g":1}', undo='{"g":null}')])
    document = (await store.get(key)).document
    before = await state(store, key)
    await refused(store.snapshot(key, 2, document, 0), 2009, "compacting 2 deltas")
    assert await state(store, key) == before
    change = await store.compute(key, REWIND, 1)
    assert json.loads(change.document) == {"g": None}


# -- row 9: invalid Unicode ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "code"),
    [("redo", 1003), ("undo", 1003), ("who", 1004), ("request", 1004), ("kind", 1004)],
)
async def test_lone_surrogates_are_refused(store: braid.Store, field: str, code: int) -> None:
    """A lone surrogate (what invalid UTF-8 decodes to) in redo or undo is MALFORMED_JSON,
    in who, request or kind INVALID_UPDATE, naming the field; nothing is written.
    It used to raise UnicodeEncodeError from deep inside the log."""
    key = Key("text-space", "disk_doc")
    await store.initialize(key, Update(1, 1, redo='{"a":1}'))
    before = await state(store, key)
    bad = '{"a":"\udcff"}' if field in ("redo", "undo") else "x\ud800"
    fields: dict[str, Any] = {field: bad}
    await refused(store.patch(key, [Update(2, 2, **fields)]), code, f"{field}")
    await refused(store.patch(key, [Update(2, 2, **fields)]), code, "lone surrogate")
    await refused(store.initialize(Key("text-space", "disk_new"), Update(1, 1, **fields)), code, "")
    assert await state(store, key) == before


def run_cli(*argv: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """The real `braid` command in a child process, so argv can hold invalid UTF-8."""
    command: list[str | bytes] = [sys.executable, "-m", "braid.cli.main", *argv]
    return subprocess.run(command, capture_output=True, timeout=60, env=dict(os.environ))


def test_cli_refuses_invalid_utf8_arguments(tmp_path: Path) -> None:
    """`braid doc init/patch` with invalid UTF-8 bytes in --who or --redo exits 1 with
    INVALID_UPDATE or MALFORMED_JSON naming the field, never a traceback; the document
    is unchanged."""
    data = str(tmp_path / "store")
    assert (
        run_cli("doc", "init", "--data", data, "chat", "doc", "--redo", '{"a":1}').returncode == 0
    )
    patch = ("doc", "patch", "--data", data, "chat", "doc", "--seq", "2")
    who = run_cli(*patch, "--redo", "{}", "--who", b"caf\xe9")
    assert who.returncode == 1, who
    assert who.stderr.startswith(b"error 1004 INVALID_UPDATE: who is not valid Unicode")
    redo = run_cli(*patch, "--redo", b'{"a":"\xff\xfe"}')
    assert redo.returncode == 1, redo
    assert redo.stderr.startswith(b"error 1003 MALFORMED_JSON: redo of update 2..2 is not valid")
    for result in (who, redo):
        assert b"Traceback" not in result.stderr
    shown = run_cli("doc", "get", "--data", data, "chat", "doc", "--json")
    assert json.loads(shown.stdout)["document"] == {"a": 1}
    assert json.loads(shown.stdout)["seq"] == 1


def test_cli_reads_the_deepest_document_and_refuses_a_deeper_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI: a json_depth_max-deep document is written, then read by get,
    headpatch, rewind and snapshot (which computes the document itself); one level deeper
    is error 1003 naming the bound, not a traceback (depth 5000 printed one)."""
    data = ("--data", str(tmp_path / "store"))

    def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    assert (
        cli("doc", "init", *data, "deep", "doc", "--redo", '{"m":' + nested(DEPTH - 1) + "}")[0]
        == 0
    )
    patch = ("doc", "patch", *data, "deep", "doc")
    assert cli(*patch, "--seq", "2", "--redo", '{"m":1}', "--undo", '{"m":null}')[0] == 0
    code, _, err = cli(*patch, "--seq", "3", "--redo", nested(5000))
    assert code == 1
    assert err.startswith(
        f"error 1003 MALFORMED_JSON: redo of update 3..3 nests deeper than {DEPTH}"
    )
    deepest = '{"m":' + nested(DEPTH - 1) + "}"
    assert cli(*patch, "--seq", "3", "--redo", deepest, "--undo", '{"m":1}')[0] == 0
    code, out, _ = cli("doc", "get", *data, "deep", "doc", "--json")
    assert code == 0
    assert json_depth(json.loads(out)["document"]) == DEPTH
    assert json.loads(out)["seq"] == 3
    for command in ("get", "headpatch", "rewind"):
        extra = () if command == "get" else ("1",)
        code, out, err = cli("doc", command, *data, "deep", "doc", *extra)
        assert code == 0, err
    code, out, err = cli("doc", "snapshot", *data, "deep", "doc", "2", "--history", "1")
    assert code == 0, err
    assert "removed 1 deltas" in out


texts = st.text(st.sampled_from('[]{}"\\ax'), max_size=4)
deep_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=2) | st.dictionaries(texts, children, max_size=2),
    max_leaves=200,
)


@settings(max_examples=300, deadline=None)
@given(deep_values, st.integers(0, 160), st.booleans())
def test_the_depth_read_from_the_text_is_the_depth_of_the_value(
    value: Json, extra: int, spaced: bool
) -> None:
    """check_depth's text reading agrees with walking the decoded value, with strings full
    of brackets, quotes and backslashes, with and without whitespace, on both sides of the
    bound (values are wrapped `extra` levels deeper to reach it)."""
    for _ in range(extra):
        value = {"w": value, "s": "]}"}
    text = json.dumps({"v": value}, indent=1 if spaced else None)
    decoded = json.loads(text)
    from braid.model import _text_within_depth

    within = _text_within_depth(text)
    if within is not None:
        assert within == (json_depth(decoded) <= DEPTH)
    refused = None
    try:
        parse_object(text, "value")
    except BraidError as error:
        refused = error.code
    assert refused == (None if json_depth(decoded) <= DEPTH else 1003)
