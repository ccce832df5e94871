"""Property: documents at and just below every size and depth bound read back identically
through every interface; just above, they are refused with the documented code.

DESIGN §3 invariant 7 (issue 7's acceptance): hypothesis builds random documents whose
nesting is exactly json_depth_max or one less, and random delta logs whose size is exactly
document_bytes_max or a little less (with 4-byte characters and floats that re-encode
longer, the worst cases for an answer's size). Each is written to an embedded store and,
through `braid.connect`, to a real `braid serve` (started once for the module), and read
back by get, compute(HEAD_PATCH) and compute(REWIND) from every seq, and by the CLI's
`braid doc get` with `--data` and with `--server`; every answer must be the document a
naive RFC 7396 merge (sharing nothing with braid.model) predicts. One level deeper or one
byte larger is MALFORMED_JSON (1003) or DOCUMENT_TOO_LARGE (2009), and the document reads
back as before.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import braid
from braid import HEAD_PATCH, REWIND, BraidError, Key, Update, limits
from braid.cli.main import main
from tests.cluster.helpers import SECRET, ServerProcess
from tests.support.json_model import canonical, merge_patch

Json = Any
DEPTH = limits.json_depth_max
SIZE = limits.document_bytes_max
# Log segments large enough for the largest record here (a maximal document's delta in
# 4-byte characters): small enough to allocate quickly, never smaller than a record.
SEGMENT_BYTES = 8 << 20
EXAMPLES = 10  # per property in CI: each writes up to 1 MiB twice and reads it back six ways
PAD = "zz"  # the member that brings a log to its exact size (no generated name is this long)
_keys = itertools.count()


# -- the model ------------------------------------------------------------------------------


@dataclass
class Log:
    """Deltas to write, oldest first, and the document after each (documents[0] is {})."""

    redos: list[dict[str, Json]]
    undos: list[dict[str, Json]]

    @property
    def documents(self) -> list[Json]:
        documents: list[Json] = [{}]
        for redo in self.redos:
            documents.append(merge_patch(documents[-1], redo))
        return documents

    def updates(self) -> list[Update]:
        return [
            Update(seq, seq, redo=dump(redo), undo=dump(undo))
            for seq, (redo, undo) in enumerate(zip(self.redos, self.undos, strict=True), 1)
        ]


def dump(value: Json) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def log_of(redos: list[dict[str, Json]]) -> Log:
    """Undos that exactly revert each redo's top-level members."""
    undos = []
    document: Json = {}
    for redo in redos:
        undos.append({name: document.get(name) for name in redo})
        document = merge_patch(document, redo)
    return Log(redos, undos)


def log_bytes(log: Log) -> int:
    """braid's measure of a document (core.document.update_bytes), computed independently."""
    return sum(64 + len(dump(r)) + len(dump(u)) for r, u in zip(log.redos, log.undos, strict=True))


# -- strategies -----------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=1)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([1e15, 0.5, -2.5e-300, 1e300])
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
)


@st.composite
def nested_to(draw: st.DrawFn, depth: int) -> Json:
    """A JSON value nested exactly `depth` levels (0: a scalar): a random chain of objects
    and arrays, each with random scalar siblings."""
    value: Json = draw(scalars)
    for _ in range(depth):
        siblings = draw(st.lists(scalars, max_size=2))
        if draw(st.booleans()):
            position = draw(st.integers(0, len(siblings)))
            value = [*siblings[:position], value, *siblings[position:]]
        else:
            members = {f"s{index}": sibling for index, sibling in enumerate(siblings)}
            value = {**members, draw(names): value}
    return value


@st.composite
def deep_logs(draw: st.DrawFn, depth: int) -> Log:
    """One to three deltas; the last one's redo nests exactly `depth` levels."""
    count = draw(st.integers(1, 3))
    redos = [draw(st.dictionaries(names, scalars, max_size=3)) for _ in range(count - 1)]
    deepest = {draw(names): draw(nested_to(depth - 1))}
    redos.append({**draw(st.dictionaries(names, scalars, max_size=2)), **deepest})
    return log_of(redos)


@st.composite
def sized_logs(draw: st.DrawFn, size: int) -> Log:
    """One to three deltas whose sizes add up to exactly `size`, mostly characters that
    encode to 4 bytes and floats that re-encode longer."""
    count = draw(st.integers(1, 3))
    filler = draw(st.sampled_from(["\U0001f600", "x", "é"]))
    redos: list[dict[str, Json]] = []
    for index in range(count):
        share = size // (count + 1)
        redo: dict[str, Json] = draw(st.dictionaries(names, scalars, max_size=3))
        redo[f"f{index}"] = [1e15] * draw(st.integers(0, 50))
        redo[f"t{index}"] = filler * (share // 2)
        redos.append(redo)
    redos[-1][PAD] = ""
    missing = size - log_bytes(log_of(redos))
    assert missing >= 0
    redos[-1][PAD] = "x" * missing
    log = log_of(redos)
    assert log_bytes(log) == size
    return log


# -- the interfaces ---------------------------------------------------------------------------


@dataclass
class Node:
    address: str
    secret_file: Path
    data: Path  # the embedded store's directory


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One `braid serve` for the module, and an embedded store's directory; every store
    (the CLI's included) opened with small log segments."""
    directory = tmp_path_factory.mktemp("bounds")
    segments = ("--wal-segment-bytes", str(SEGMENT_BYTES))  # the last one given counts
    server = ServerProcess(directory / "node", extra_args=segments)
    secret_file = directory / "secret"
    secret_file.write_text(SECRET)
    real_open = braid.open

    def open_small(path: Any, config: Any = None, **options: Any) -> Any:
        return real_open(path, config or braid.DurableConfig(SEGMENT_BYTES), **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(braid, "open", open_small)
        patch.delenv("BRAID_SECRET", raising=False)  # the CLI must use --secret-file
        try:
            asyncio.run(server.start())
            yield Node(server.address, secret_file, directory / "embedded")
        finally:
            server.kill()


async def write_and_read(service: Any, key: Key, log: Log) -> list[str]:
    """Write `log`, then every answer about it, as canonical texts (the patches applied)."""
    updates = log.updates()
    await service.initialize(key, updates[0])
    for update in updates[1:]:
        await service.patch(key, [update])
    return await read_all(service, key, log)


async def read_all(service: Any, key: Key, log: Log) -> list[str]:
    documents = log.documents
    head = documents[-1]
    change = await service.get(key)
    assert change.seq == len(log.redos)
    answers = [canonical(json.loads(change.document))]
    for seq in range(len(log.redos)):
        forward = await service.compute(key, HEAD_PATCH, seq)
        answers.append(canonical(merge_patch(documents[seq], json.loads(forward.document))))
        back = await service.compute(key, REWIND, seq)
        assert back.seq == seq
        answers.append(canonical(merge_patch(head, json.loads(back.document))))
    return answers


def expected_answers(log: Log) -> list[str]:
    head = canonical(log.documents[-1])
    documents = [canonical(document) for document in log.documents[:-1]]
    return [head] + [answer for document in documents for answer in (head, document)]


def cli_document(node: Node, key: Key, capsys: pytest.CaptureFixture[str], where: str) -> str:
    """`braid doc get --json` with `--data` (embedded) or `--server`: the canonical document."""
    if where == "data":
        place = ["--data", str(node.data)]
    else:
        place = ["--server", node.address, "--secret-file", str(node.secret_file)]
    capsys.readouterr()
    code = main(["doc", "get", *place, key.space, key.key, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return canonical(json.loads(out)["document"])


def check_accepted(node: Node, log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    """Written embedded and over the network, `log` reads back identically everywhere."""
    key = Key("bounds", f"doc-{next(_keys)}")
    expected = expected_answers(log)

    async def embedded() -> list[str]:
        async with braid.open(node.data) as store:
            return await write_and_read(store, key, log)

    async def network() -> list[str]:
        async with braid.connect([node.address], secret=SECRET, timeout=30) as client:
            return await write_and_read(client, key, log)

    assert asyncio.run(embedded()) == expected
    assert asyncio.run(network()) == expected
    for where in ("data", "server"):
        assert cli_document(node, key, capsys, where) == expected[0]


def check_refused(node: Node, log: Log, code: int, cause: str) -> None:
    """Writing `log` fails on its last delta with `code`, embedded and over the network,
    and the document reads back as before that delta."""
    key = Key("bounds", f"refused-{next(_keys)}")
    accepted = Log(log.redos[:-1], log.undos[:-1])

    async def attempt(service: Any) -> None:
        updates = log.updates()
        with pytest.raises(BraidError) as caught:
            if len(updates) == 1:
                await service.initialize(key, updates[0])
            else:
                await write_and_read(service, key, accepted)
                await service.patch(key, [updates[-1]])
        assert caught.value.code == code, caught.value
        assert cause in str(caught.value), caught.value
        if accepted.redos:
            assert await read_all(service, key, accepted) == expected_answers(accepted)

    async def embedded() -> None:
        async with braid.open(node.data) as store:
            await attempt(store)

    async def network() -> None:
        async with braid.connect([node.address], secret=SECRET, timeout=30) as client:
            await attempt(client)

    asyncio.run(embedded())
    asyncio.run(network())


# -- the properties -----------------------------------------------------------------------------

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
@given(st.sampled_from([DEPTH, DEPTH - 1]).flatmap(deep_logs))
def test_documents_at_the_depth_bound_read_back_everywhere(
    node: Node, capsys: pytest.CaptureFixture[str], log: Log
) -> None:
    """A delta log whose deepest redo nests json_depth_max or one less levels is accepted
    and read back identically by every interface (see the module docstring)."""
    check_accepted(node, log, capsys)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
@given(deep_logs(DEPTH + 1))
def test_documents_past_the_depth_bound_are_malformed_json(node: Node, log: Log) -> None:
    """One level deeper is MALFORMED_JSON naming the bound; nothing changes."""
    check_refused(node, log, 1003, f"deeper than {DEPTH} levels")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
@given(st.sampled_from([SIZE, SIZE - 1, SIZE - 4096]).flatmap(sized_logs))
def test_documents_at_the_size_bound_read_back_everywhere(
    node: Node, capsys: pytest.CaptureFixture[str], log: Log
) -> None:
    """A delta log of exactly document_bytes_max bytes, or a little less, is accepted and
    read back identically by every interface (see the module docstring)."""
    check_accepted(node, log, capsys)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
@given(sized_logs(SIZE + 1))
def test_documents_past_the_size_bound_are_too_large(node: Node, log: Log) -> None:
    """One byte more is DOCUMENT_TOO_LARGE naming the bound; nothing changes."""
    check_refused(node, log, 2009, str(SIZE))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=HEALTH)
@given(
    st.sampled_from([DEPTH, DEPTH - 1]).flatmap(deep_logs)
    | st.sampled_from([SIZE, SIZE - 1]).flatmap(sized_logs)
)
def test_many_documents_at_the_bounds_read_back_everywhere(
    node: Node, capsys: pytest.CaptureFixture[str], log: Log
) -> None:
    """The accepted properties above with ten times the examples (make test-slow)."""
    check_accepted(node, log, capsys)
