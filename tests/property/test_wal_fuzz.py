"""WAL fuzzing: a real store's log, cut at every byte and struck by bit rot, must recover
to a correct prefix of what was written or refuse to open with a storage error code.

One small store is written once per module with the durable engine, with checkpoints off
(`checkpoint_on_close=False`, thresholds out of reach), so every document lives only in the
log. Small segments (`SEGMENT_BYTES`) give a log of three segments, so segment headers,
rotation and the cross-segment rules are exercised too. The test keeps a model: the state
of every document after each record of the log (records in lsn order).

Every case writes a damaged copy of the store into its own directory and opens it. The
oracle (`expect`) compares the damaged bytes with the original ones and decides what the
torn-vs-corrupt rule of `braid.core.wal.record` demands:

- a damaged segment header, or a damaged record followed by an intact record of a later
  batch (or by a later segment, which is only created once the batches before it were
  durable), must be refused with WAL_CORRUPT (3001) or STORE_FORMAT (3004), and the files
  must be left byte-identical for inspection; so must a segment shorter than it was
  preallocated (no crash shortens one), an intact seal whose successor is missing, and
  damage in the last batch that a torn write cannot explain (the batch's commit marker
  intact with no zero sector before it, or a commit marker changed in a non-zero byte);
- otherwise the store must open, every document must equal the model after some prefix of
  the records that ends no later than the first damaged record and no earlier than the last
  whole batch before it (so nothing acknowledged is lost), and the recovered store must go
  on working: one more write, then a reopen that shows exactly that write on top.

No other outcome is accepted: another exception type or a wrong document fails the case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import braid
from braid import DurableConfig, Key, Update
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, PatchOp, decode_op
from braid.core.wal.record import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Record,
    RecordType,
    padded,
)
from braid.errors import STORE_FORMAT, WAL_CORRUPT
from braid.storage.wal import analyze_log
from tests.support.json_model import merge_patch as merge

SEGMENT_BYTES = 6144  # > 4096 + 64: the writer reopens a segment in place while it has room
CONFIG = DurableConfig(
    segment_bytes=SEGMENT_BYTES,
    checkpoint_records=1 << 30,
    checkpoint_interval_seconds=1e9,
    checkpoint_on_close=False,
)
SPACE = "fuzz-space"
NAMES = ("a", "b", "c", "d")
KEYS = {name: Key(SPACE, f"doc-{name}") for name in NAMES}
ZERO_MARGIN_BYTES = 96  # how far past each segment's data the cases reach
STRIDE = 7
BIT_FLIP_CASES = 300
SEED = 20240611
STORAGE_CODES = {WAL_CORRUPT.code, STORE_FORMAT.code}

# (document JSON, head seq, reads) after an operation, or None: the document does not exist.
DocState = tuple[str, int, int] | None
Model = dict[str, DocState]


# -- the workload and its model --------------------------------------------------------------


def update_for(name: str, seq: int, generation: int) -> Update:
    redo: dict[str, Any] = {
        "n": seq,
        f"f{seq % 4}": f"{name}{generation}-{seq}-" + "x" * (seq * 7 % 41),
        "nested": {"gen": generation, f"k{seq % 3}": [seq, name]},
    }
    if seq % 3 == 0:
        redo[f"f{(seq + 1) % 4}"] = None
    return Update(
        seq,
        seq,
        who=f"writer-{name}",
        request=f"req-{name}-{generation}-{seq}",
        redo=json.dumps(redo, separators=(",", ":")),
        kind="fuzz",
    )


@dataclass
class Operation:
    kind: str  # init | patch | snapshot | delete
    name: str
    count: int = 1  # updates of a patch; history kept by a snapshot


class Writer:
    """Runs steps of concurrent operations (distinct documents per step) and records the
    state of each document after each of its operations, checked against `merge`."""

    def __init__(self, store: braid.Store) -> None:
        self.store = store
        self.documents: dict[str, Any] = {}
        self.heads: dict[str, int] = {}
        self.generations = dict.fromkeys(NAMES, 0)
        self.after: dict[str, list[tuple[str, DocState]]] = {name: [] for name in NAMES}

    async def step(self, *operations: Operation) -> None:
        assert len({op.name for op in operations}) == len(operations)
        await asyncio.gather(*(self.run(op) for op in operations))
        for op in operations:
            self.after[op.name].append((op.kind, await self.observe(op.name)))

    async def run(self, op: Operation) -> None:
        key = KEYS[op.name]
        if op.kind == "init":
            self.generations[op.name] += 1
            update = update_for(op.name, 1, self.generations[op.name])
            self.documents[op.name] = merge({}, json.loads(update.redo))
            self.heads[op.name] = 1
            await self.store.initialize(key, update)
        elif op.kind == "patch":
            head = self.heads[op.name]
            generation = self.generations[op.name]
            updates = [update_for(op.name, head + i, generation) for i in range(1, op.count + 1)]
            for update in updates:
                self.documents[op.name] = merge(self.documents[op.name], json.loads(update.redo))
            self.heads[op.name] = head + op.count
            await self.store.patch(key, updates)
        elif op.kind == "snapshot":
            head = self.heads[op.name]
            document = json.dumps(self.documents[op.name])
            assert await self.store.snapshot(key, head, document, op.count) > 0
        else:
            assert op.kind == "delete"
            del self.documents[op.name], self.heads[op.name]
            await self.store.delete(key)

    async def observe(self, name: str) -> DocState:
        state = await read_state(self.store, name)
        if name not in self.documents:
            assert state is None
            return None
        assert state is not None
        assert json.loads(state[0]) == self.documents[name]
        assert state[1] == self.heads[name]
        return state


async def read_state(store: braid.Store, name: str) -> DocState:
    try:
        change = await store.get(KEYS[name])
    except braid.BraidError as error:
        if error.name != "DOCUMENT_NOT_FOUND":
            raise
        return None
    return (change.document, change.seq, change.reads)


async def read_model(store: braid.Store) -> Model:
    return {name: await read_state(store, name) for name in NAMES}


async def run_workload(writer: Writer) -> None:
    """Every operation type, multi-update patches, steps of concurrent writes (so batches
    hold several records), snapshots, deletes and re-creation of a deleted key."""

    def op(kind: str, name: str, count: int = 1) -> Operation:
        return Operation(kind, name, count)

    await writer.step(op("init", "a"), op("init", "b"), op("init", "c"))
    await writer.step(op("patch", "a", 3))
    await writer.step(op("patch", "a"), op("patch", "b"), op("patch", "c", 2))
    await writer.step(op("init", "d"), op("patch", "b", 2))
    await writer.step(op("snapshot", "a", 1), op("patch", "d"))
    await writer.step(op("patch", "a"), op("patch", "c"))
    await writer.step(op("delete", "b"), op("patch", "d", 2))
    await writer.step(op("init", "b"), op("patch", "c", 2), op("snapshot", "d", 0))
    for round_number in range(9):
        names = NAMES[round_number % 2 :: 1 + round_number % 2]
        await writer.step(*(op("patch", name, 1 + round_number % 3) for name in names))
        if round_number == 4:
            await writer.step(op("snapshot", "c", 2), op("delete", "a"))
            await writer.step(op("init", "a"))
    await writer.step(op("patch", "b"))


# -- the written store -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordSpan:
    segment: str  # relative path of its segment file
    offset: int
    covered_end: int  # end of the CRC-covered bytes (header + payload)
    padded_end: int
    batch: int
    type: RecordType


@dataclass
class Written:
    files: dict[str, bytes]  # every file of the store, by path relative to its directory
    segments: list[str]  # the segment files, in order
    data_end: dict[str, int]  # where each segment's data ends (after its seal, if sealed)
    records: list[RecordSpan]
    seals: dict[str, RecordSpan]  # the seal record of every segment the log moved on from
    model: list[Model]  # model[p]: every document after the first p records
    applied: tuple[int, int]  # the applied state's lsn and document count


def build_store(directory: Path) -> Written:
    async def write() -> dict[str, list[tuple[str, DocState]]]:
        async with braid.open(directory, CONFIG) as store:
            writer = Writer(store)
            await run_workload(writer)
            return writer.after

    after = asyncio.run(write())
    files = {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
    analysis = analyze_log(directory / "wal")
    assert analysis.verdict == "clean"
    segments = [str(state.path.relative_to(directory)) for state in analysis.segments]
    assert len(segments) >= 3, "the workload should fill three segments"
    spans: list[RecordSpan] = []
    seals: dict[str, RecordSpan] = {}
    cursor = iter(analysis.records)
    data_end = {}
    for name, state in zip(segments, analysis.segments, strict=True):
        position = SEGMENT_HEADER_SIZE
        for _ in range(state.records):
            record = next(cursor)
            assert record.offset == position, "records are contiguous"
            position += RECORD_HEADER_SIZE + padded(len(record.payload))
            covered = record.offset + RECORD_HEADER_SIZE + len(record.payload)
            spans.append(
                RecordSpan(name, record.offset, covered, position, record.batch, record.type)
            )
        if state.sealed:
            end = position + RECORD_HEADER_SIZE + 8
            seals[name] = RecordSpan(name, position, end, end, 0, RecordType.SEAL)
            position = end
        assert state.end == position
        assert files[name][position:] == bytes(len(files[name]) - position)
        data_end[name] = position
    assert spans[-1].type is RecordType.COMMIT
    model = replay_model(analysis.records, after)
    assert model[-1] == {name: states[-1][1] for name, states in after.items()}
    return Written(files, segments, data_end, spans, seals, model, read_applied(directory))


def read_applied(directory: Path) -> tuple[int, int]:
    """The applied state's lsn and number of documents, read without changing it."""
    uri = f"file:{directory / 'applied.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
        (lsn,) = connection.execute("SELECT value FROM meta WHERE name='applied_lsn'").fetchone()
        (documents,) = connection.execute("SELECT COUNT(*) FROM documents").fetchone()
    return int(lsn), int(documents)


def replay_model(
    records: list[Record], after: dict[str, list[tuple[str, DocState]]]
) -> list[Model]:
    """model[p] for every p, from the document states the writer observed after each of its
    operations: the j-th record about a document is that document's j-th operation."""
    kinds = {InitOp: "init", PatchOp: "patch", FoldOp: "snapshot", DeleteOp: "delete"}
    names = {key: name for name, key in KEYS.items()}
    seen = dict.fromkeys(NAMES, 0)
    state: Model = dict.fromkeys(NAMES)
    model = [dict(state)]
    for record in records:
        if record.type is not RecordType.COMMIT:
            op = decode_op(record.type, record.payload)
            name = names[op.key]
            kind, observed = after[name][seen[name]]
            assert kinds[type(op)] == kind, f"record lsn {record.lsn} is not the {kind} of {name}"
            seen[name] += 1
            state[name] = observed
        model.append(dict(state))
    assert all(seen[name] == len(after[name]) for name in NAMES)
    return model


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return build_store(tmp_path_factory.mktemp("wal-fuzz") / "store")


@pytest.fixture
def cases_root(tmp_path: Path) -> Iterator[Path]:
    """Where the cases' stores go: a RAM file system when there is one (the cases are
    bound by fsync latency, which tests nothing here: no case survives a real crash),
    else the test's temporary directory. Each case removes its directory when done."""
    shared_memory = Path("/dev/shm")
    if not (shared_memory.is_dir() and os.access(shared_memory, os.W_OK)):
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="braid-wal-fuzz-", dir=shared_memory))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the oracle ------------------------------------------------------------------------------

# A mutation: for each segment it changes, the new bytes, or None when the file is removed.
Mutation = dict[str, bytes | None]


@dataclass(frozen=True)
class Expectation:
    must_refuse: bool
    may_refuse: bool
    prefix_min: int  # the recovered prefix holds at least this many records...
    prefix_max: int  # ...and at most this many
    why: str


def expect(written: Written, mutation: Mutation) -> Expectation:
    """What the torn-vs-corrupt rule demands of the mutated log (see the module docstring)."""
    present = [name for name in written.segments if mutation.get(name, b"") is not None]
    assert present == written.segments[: len(present)], "only trailing segments are removed"

    def changed(name: str) -> bytes:
        data = mutation.get(name, written.files[name])
        assert data is not None
        return data

    def same(name: str, start: int, end: int) -> bool:
        """Bytes start..end unchanged; bytes cut off the end of the file read as zeros."""
        original = written.files[name]
        data = changed(name).ljust(len(original), b"\0")
        return data[start:end] == original[start:end]

    def intact(record: RecordSpan) -> bool:
        """Present, not cut short, and its CRC-covered bytes unchanged."""
        return (
            record.segment in present
            and len(changed(record.segment)) >= record.covered_end
            and same(record.segment, record.offset, record.covered_end)
        )

    for name in present:
        if len(changed(name)) < SEGMENT_HEADER_SIZE or not same(name, 0, SEGMENT_HEADER_SIZE):
            return Expectation(True, True, 0, 0, f"header of {name} damaged")
        if len(changed(name)) < len(written.files[name]):
            return Expectation(True, True, 0, 0, f"{name} is shorter than preallocated")
    for name in present[:-1]:
        if not intact(written.seals[name]):
            return Expectation(True, True, 0, 0, f"seal of {name} damaged, {name} continued")
    if present[-1] in written.seals and intact(written.seals[present[-1]]):
        return Expectation(True, True, 0, 0, f"{present[-1]} sealed, its successor missing")
    stray_in_older_tail = any(
        not same(name, written.data_end[name], len(written.files[name])) for name in present[:-1]
    )
    records = written.records
    ok = [intact(record) for record in records]
    if all(ok):
        return Expectation(False, stray_in_older_tail, len(ok), len(ok), "every record intact")
    first_bad = ok.index(False)
    batch = records[first_bad].batch
    later = [index for index, record in enumerate(records) if ok[index] and record.batch > batch]
    if later:
        why = f"record {first_bad} damaged, record {later[0]} of a later batch intact"
        return Expectation(True, True, 0, 0, why)
    if records[first_bad].segment in present[:-1]:
        return Expectation(True, True, 0, 0, f"record {first_bad} damaged in an older segment")
    whole = None
    if records[first_bad].segment in present:
        whole = written_whole(written, first_bad, changed, intact)
    if whole is not None:
        return Expectation(True, True, 0, 0, f"record {first_bad} damaged, {whole}")
    whole_batches = first_bad
    while whole_batches > 0 and records[whole_batches - 1].type is not RecordType.COMMIT:
        whole_batches -= 1
    why = f"torn at record {first_bad}"
    return Expectation(False, stray_in_older_tail, whole_batches, first_bad, why)


def written_whole(written: Written, first_bad: int, changed: Any, intact: Any) -> str | None:
    """Why damage at `first_bad`, in the last batch, is no torn write, or None: a torn write
    leaves every 512-byte sector of the batch either written or still zero."""
    records = written.records
    bad = records[first_bad]
    data = changed(bad.segment)
    commit = next(r for r in records[first_bad:] if r.type is RecordType.COMMIT)
    if commit is bad:
        was = written.files[bad.segment][bad.offset : bad.offset + RECORD_HEADER_SIZE]
        now = data[bad.offset : bad.offset + RECORD_HEADER_SIZE]
        if len(now) < RECORD_HEADER_SIZE or any(data[bad.offset + RECORD_HEADER_SIZE :]):
            return None
        if bad is next(r for r in records if r.batch == bad.batch) or any(now[:4]):
            return None  # not recognizably where a marker belongs
        differing = [got for got, want in zip(now, was, strict=True) if got != want]
        if differing and any(differing) and len(differing) <= RECORD_HEADER_SIZE // 4:
            return "its commit marker changed in a non-zero byte"
        return None
    if not intact(commit):
        return None
    position = bad.offset
    while position < commit.offset:
        sector_end = min((position // 512 + 1) * 512, commit.offset)
        if data[position:sector_end] == bytes(sector_end - position):
            return None
        position = sector_end
    return "its batch's commit marker intact and no sector before it zero"


# -- running one case ------------------------------------------------------------------------


def materialize(written: Written, directory: Path, mutation: Mutation) -> dict[str, bytes]:
    """Write the store with `mutation` applied; returns every file as written."""
    files = {}
    for name, original in written.files.items():
        data = mutation.get(name, original)
        if data is None:
            continue
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[name] = data
    return files


def snapshot_files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def follow_up_write(state: Model) -> tuple[str, Model]:
    """One more write on top of the recovered state, and the state it must lead to."""
    expected = dict(state)
    for name in NAMES:
        current = state[name]
        if current is not None:
            document, seq, reads = current
            redo = {"after": "recovery", "n": seq + 1}
            merged = json.dumps(merge(json.loads(document), redo), separators=(",", ":"))
            expected[name] = (merged, seq + 1, reads + 1)
            return name, expected
    expected["a"] = ('{"after":"recovery","n":1}', 1, 1)
    return "a", expected


async def apply_follow_up(store: braid.Store, name: str, state: Model) -> None:
    current = state[name]
    seq = 1 if current is None else current[1] + 1
    update = Update(seq, seq, redo=json.dumps({"after": "recovery", "n": seq}))
    if current is None:
        await store.initialize(KEYS[name], update)
    else:
        await store.patch(KEYS[name], [update])


def same_state(mine: DocState, theirs: DocState) -> bool:
    """Equal documents (as JSON values), seqs and read counts, or both absent."""
    if mine is None or theirs is None:
        return mine is None and theirs is None
    return json.loads(mine[0]) == json.loads(theirs[0]) and mine[1:] == theirs[1:]


def same_model(actual: Model, expected: Model) -> bool:
    return all(same_state(actual[name], expected[name]) for name in NAMES)


def judge_refusal(
    error: braid.BraidError, expectation: Expectation, before: dict[str, bytes], directory: Path
) -> str | None:
    """A refusal must carry a storage code, be allowed, and leave every file as it was."""
    if error.code not in STORAGE_CODES:
        return f"refused with {error!r}, not a storage code ({expectation.why})"
    if not expectation.may_refuse:
        return f"refused: {error} ({expectation.why}, must open)"
    after = snapshot_files(directory)
    if after != before:
        changed = sorted(
            name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
        )
        return f"refused, but changed {changed}"
    return None


async def judge_opened(
    store: braid.Store, written: Written, expectation: Expectation, directory: Path
) -> str | None:
    """An open must be allowed and show a model prefix in the expected range; then one
    more write, a close and a reopen must show exactly that write on top."""
    try:
        state = await read_model(store)
        if expectation.must_refuse:
            return f"opened ({expectation.why}, must be refused): {state}"
        low, high = expectation.prefix_min, expectation.prefix_max
        matches = [p for p in range(low, high + 1) if same_model(state, written.model[p])]
        if not matches:
            return f"documents match no prefix in [{low}, {high}] ({expectation.why}): {state}"
        name, expected = follow_up_write(state)
        await apply_follow_up(store, name, state)
    finally:
        await store.close()
    try:
        async with braid.open(directory, CONFIG) as reopened:
            again = await read_model(reopened)
    except braid.BraidError as error:
        return f"recovered to prefix {matches[0]}, but after one more write: {error}"
    if not same_model(again, expected):
        return f"after one more write and a reopen: {again}, expected {expected}"
    return None


async def run_case(written: Written, directory: Path, mutation: Mutation) -> tuple[str, str | None]:
    """Open the mutated store and judge the outcome: ("opened" or "refused", a failure
    message or None)."""
    expectation = expect(written, mutation)
    before = materialize(written, directory, mutation)
    try:
        try:
            store = await braid.open(directory, CONFIG)
        except braid.BraidError as error:
            return "refused", judge_refusal(error, expectation, before, directory)
        return "opened", await judge_opened(store, written, expectation, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def run_cases(
    root: Path, written: Written, cases: Iterator[tuple[str, Mutation]]
) -> Counter[str]:
    """Run every case, each in its own directory, and fail with the list of failed cases.
    Returns how many cases opened and how many were refused, so that a test can check it
    covered both."""
    failures: list[str] = []
    outcomes: Counter[str] = Counter()
    for number, (label, mutation) in enumerate(cases, start=1):
        try:
            outcome, problem = await run_case(written, root / f"case-{number}", mutation)
        except Exception as error:  # any other exception type fails the case
            outcome, problem = "raised", f"raised {type(error).__name__}: {error}"
        outcomes[outcome] += 1
        if problem is not None:
            failures.append(f"{label}: {problem}")
    shown = "\n".join(failures[:12])
    assert not failures, f"{len(failures)} of {outcomes.total()} cases failed:\n{shown}"
    return outcomes


# -- the cases -------------------------------------------------------------------------------


def cut_points(written: Written, name: str, *, stride: int) -> list[int]:
    """Offsets to cut segment `name` at: every `stride`-th byte of the written region (its
    data plus a zero margin), plus every record boundary and header edge, ±1."""
    end = min(written.data_end[name] + ZERO_MARGIN_BYTES, len(written.files[name]))
    points = set(range(0, end + 1, stride))
    edges = {0, SEGMENT_HEADER_SIZE, written.data_end[name]}
    for record in written.records:
        if record.segment == name:
            edges |= {record.offset, record.covered_end, record.padded_end}
    for edge in edges:
        points |= {edge - 1, edge, edge + 1}
    return sorted(point for point in points if 0 <= point <= end)


def truncation_cases(written: Written, stride: int) -> Iterator[tuple[str, Mutation]]:
    """The log as a crash may leave it, at every cut point: segments before intact, the cut
    segment truncated (odd offsets) or zero-filled past the cut (even offsets), the later
    segments not yet created. And, for older segments, the same cut with the later segments
    kept: damage no crash can cause, which must be refused."""
    for position, name in enumerate(written.segments):
        original = written.files[name]
        later: Mutation = dict.fromkeys(written.segments[position + 1 :])
        for cut in cut_points(written, name, stride=stride):
            torn = original[:cut] if cut % 2 else original[:cut] + bytes(len(original) - cut)
            yield f"crash cut {name}@{cut}", {name: torn, **later}
            if later and cut % 3 == 0:
                yield f"cut {name}@{cut} with later segments kept", {name: original[:cut]}


def flip_position(written: Written, rng: random.Random) -> tuple[str, int]:
    """Where to flip a bit: a segment header (10%), the zeros just past a segment's data
    (15%), the last batch or the zeros after it, where damage is a torn tail (30%), or any
    record (45%)."""
    region = rng.random()
    name = rng.choice(written.segments)
    if region < 0.1:
        return name, rng.randrange(SEGMENT_HEADER_SIZE)
    if region < 0.25:
        return name, written.data_end[name] + rng.randrange(ZERO_MARGIN_BYTES)
    if region < 0.55:
        last = written.segments[-1]
        start = min(r.offset for r in written.records if r.batch == written.records[-1].batch)
        return last, rng.randrange(start, written.data_end[last] + ZERO_MARGIN_BYTES)
    return name, rng.randrange(SEGMENT_HEADER_SIZE, written.data_end[name])


def bit_flip_cases(written: Written, count: int, seed: int) -> Iterator[tuple[str, Mutation]]:
    """`count` seeded cases of one flipped bit (80%) or two or three (20%)."""
    rng = random.Random(seed)
    for number in range(count):
        changed = {name: bytearray(written.files[name]) for name in written.segments}
        where = []
        for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
            name, offset = flip_position(written, rng)
            bit = rng.randrange(8)
            changed[name][offset] ^= 1 << bit
            where.append(f"{name}@{offset}.{bit}")
        mutation: Mutation = {
            name: bytes(data) for name, data in changed.items() if data != written.files[name]
        }
        yield f"seed {seed} case {number} flips {' '.join(where)}", mutation


def lost_write_cases(written: Written) -> Iterator[tuple[str, Mutation]]:
    """Zeroed blocks, as a lost write or a dead sector leaves them: each record header in
    turn, and each 512-byte aligned block of each segment's data."""
    for record in written.records:
        data = bytearray(written.files[record.segment])
        data[record.offset : record.offset + RECORD_HEADER_SIZE] = bytes(RECORD_HEADER_SIZE)
        yield (
            f"zeroed header of record @{record.segment}:{record.offset}",
            {record.segment: bytes(data)},
        )
    for name in written.segments:
        for start in range(512, written.data_end[name], 512):
            data = bytearray(written.files[name])
            data[start : start + 512] = bytes(512)
            yield f"zeroed block {name}@{start}", {name: bytes(data)}


def damage_before_a_new_segment_cases(written: Written) -> Iterator[tuple[str, Mutation]]:
    """The newest segment just created (its header written, no batch yet: a crash right
    after rotation) while a bit of the previous segment's last batch rots: one case per
    CRC-covered byte of that batch."""
    newest, previous = written.segments[-1], written.segments[-2]
    header_only = written.files[newest][:SEGMENT_HEADER_SIZE]
    header_only += bytes(len(written.files[newest]) - SEGMENT_HEADER_SIZE)
    last_batch = max(r.batch for r in written.records if r.segment == previous)
    for record in written.records:
        if record.batch != last_batch:
            continue
        for offset in range(record.offset, record.covered_end):
            data = bytearray(written.files[previous])
            data[offset] ^= 0x10
            yield (
                f"{previous}@{offset} rots, {newest} just created",
                {
                    previous: bytes(data),
                    newest: header_only,
                },
            )


# -- the tests -------------------------------------------------------------------------------


def test_the_fuzzed_store_lives_only_in_its_log(written: Written) -> None:
    """The store the cases damage really is log-only and has the shape the cases assume:
    an applied state at lsn 0, three or more segments, multi-record batches, and every
    record type; otherwise the fuzzing below would prove less than it claims."""
    assert written.applied == (0, 0)
    assert {record.type for record in written.records} == set(RecordType) - {RecordType.SEAL}
    assert set(written.seals) == set(written.segments[:-1]), "every older segment is sealed"
    batches: dict[int, int] = {}
    for record in written.records:
        batches[record.batch] = batches.get(record.batch, 0) + 1
    assert max(batches.values()) >= 4
    assert len(written.segments) >= 3
    assert written.data_end[written.segments[-1]] + 4096 < SEGMENT_BYTES


async def test_the_intact_store_reopens_to_the_final_model(
    written: Written, cases_root: Path
) -> None:
    """The undamaged copy opens to the model after every record and takes one more write:
    the baseline the damaged cases are measured against."""
    assert await run_case(written, cases_root / "intact", {}) == ("opened", None)


async def test_truncation_at_strided_offsets(written: Written, cases_root: Path) -> None:
    """Every 7th byte of the written region and every record boundary ±1: a crash cut
    (zeros past the cut) recovers a correct prefix holding every whole batch before the cut
    and goes on taking writes; a segment cut short, or a cut that leaves later segments
    behind, is refused with the files untouched."""
    outcomes = await run_cases(cases_root, written, truncation_cases(written, STRIDE))
    # Zero-filled cuts open; cut-short files (odd offsets) are refused as truncated.
    assert outcomes["opened"] > 900
    assert outcomes["refused"] > 1500


@pytest.mark.slow
async def test_truncation_at_every_byte(written: Written, cases_root: Path) -> None:
    """The exhaustive version of the strided truncation test: every byte offset."""
    outcomes = await run_cases(cases_root, written, truncation_cases(written, 1))
    # Zero-filled cuts open; cut-short files (odd offsets) are refused as truncated.
    assert outcomes["opened"] > 6_000
    assert outcomes["refused"] > 10_000


async def test_random_bit_flips(written: Written, cases_root: Path) -> None:
    """Seeded bit flips in headers, records and the zeros past the data: each case opens
    to a correct prefix that loses no batch followed by an intact later one (and takes one
    more write), or is refused with a storage error code and the files untouched."""
    outcomes = await run_cases(cases_root, written, bit_flip_cases(written, BIT_FLIP_CASES, SEED))
    assert outcomes["opened"] >= 25
    assert outcomes["refused"] >= 200


async def test_lost_writes_are_never_skipped_silently(written: Written, cases_root: Path) -> None:
    """Zeroed record headers and sectors (lost writes): never read as a clean end of the
    log when intact later batches follow, which would drop acknowledged writes and let the
    next write overwrite them."""
    outcomes = await run_cases(cases_root, written, lost_write_cases(written))
    assert outcomes["refused"] >= 80


async def test_damage_before_a_newer_segment_is_never_a_torn_tail(
    written: Written, cases_root: Path
) -> None:
    """A segment is created only for a batch whose predecessors were durable, so damage in
    the previous segment's last batch is corruption even when the new segment holds no
    record yet; reading it as a torn tail would drop an acknowledged batch silently."""
    cases = damage_before_a_new_segment_cases(written)
    outcomes = await run_cases(cases_root, written, cases)
    assert outcomes["refused"] >= 100


def test_oracle_demands_refusal_for_damage_before_a_later_batch(written: Written) -> None:
    """The oracle itself: damage in the first batch must be refused, a cut inside the last
    batch must open and may not lose the batches before it, and an intact log opens whole.
    Guards the fuzz tests against an oracle that accepts everything."""
    first = written.records[0]
    data = bytearray(written.files[first.segment])
    data[first.offset + 9] ^= 1
    assert expect(written, {first.segment: bytes(data)}).must_refuse
    last = written.records[-1]
    original = written.files[last.segment]
    zeroed = original[: last.offset] + bytes(len(original) - last.offset)
    cut = expect(written, {last.segment: zeroed})
    assert not cut.may_refuse
    assert cut.prefix_max == len(written.records) - 1
    assert written.records[cut.prefix_min - 1].type is RecordType.COMMIT
    assert cut.prefix_min < cut.prefix_max
    whole = expect(written, {})
    assert (whole.must_refuse, whole.prefix_min) == (False, len(written.records))
