"""Engines driven by hypothesis state machines against a naive pure model of DESIGN §1.

The invariant: whatever sequence of initialize, patch (right and wrong seqs), get, compute,
snapshot, delete, release and reopen runs, every answer of the engine — document, seq,
reads, compute patches, removed counts and error codes — is the one the model predicts.
The model keeps every delta ever written (redo and undo as Python dicts) and merges them
with its own RFC 7396 code, so it shares nothing with braid.model.

The durable machines add `reopen` (close the store, open it again from the same directory)
in several configurations: tiny WAL segments with a checkpoint every 3 records (so
checkpoints run in the background and log segments are released), and no checkpoint on
close (so reopening replays the log).

At the end: regression tests for durable-engine bugs found while writing these machines
(a write to a document evicted on load; inventory racing a background checkpoint).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import braid
from braid import HEAD_PATCH, REWIND, BraidError, ComputeMethod, DurableConfig, Key, Update
from braid.storage.api import DataService
from braid.storage.applied import AppliedState
from braid.storage.durable import DurableEngine
from braid.storage.memory import MemoryEngine
from tests.support.json_model import canonical, merge_patch

Json = Any

# -- the model ----------------------------------------------------------------------------------


def undo_of(before: Json, after: Json) -> Json:
    """The merge patch that turns `after` back into `before` (null-free documents)."""
    patch: dict[str, Json] = {name: None for name in after if name not in before}
    for name, value in before.items():
        if name not in after:
            patch[name] = value
        elif canonical(after[name]) != canonical(value):
            both_objects = isinstance(value, dict) and isinstance(after[name], dict)
            patch[name] = undo_of(value, after[name]) if both_objects else value
    return patch


@dataclass
class ModelDelta:
    seq_begin: int
    seq_end: int
    redo: dict[str, Json]
    undo: dict[str, Json]


@dataclass
class ModelDocument:
    """Every delta ever written, and the seq spans of the deltas the store still keeps."""

    history: list[ModelDelta]
    kept: list[tuple[int, int]] = field(default_factory=list)
    compacted_through: int = 0

    @property
    def head(self) -> int:
        return self.history[-1].seq_end

    def at(self, seq: int) -> Json:
        """The document after every delta ending at or before `seq`."""
        document: Json = {}
        for delta in self.history:
            if delta.seq_end <= seq:
                document = merge_patch(document, delta.redo)
        return document

    def newer_than(self, seq: int) -> int:
        return sum(1 for _, end in self.kept if end > seq)

    def landing(self, seq: int) -> int:
        return max((end for _, end in self.kept if end <= seq), default=0)

    def append(self, delta: ModelDelta) -> None:
        self.history.append(delta)
        self.kept.append((delta.seq_begin, delta.seq_end))

    def fold(self, seq: int, history: int) -> int:
        """Apply a snapshot at a kept boundary; answer how many deltas disappear."""
        index = [end for _, end in self.kept].index(seq)
        count = min(index + 1, len(self.kept) - history)
        if count < 2:
            return 0
        span = (self.kept[0][0], self.kept[count - 1][1])
        self.kept[:count] = [span]
        self.compacted_through = span[1]
        return count - 1


# -- strategies ---------------------------------------------------------------------------------

NAMES = ["alpha", "beta"]
# Few member names and small values, so that deltas keep hitting the same members: a member
# turned into a scalar and then patched with an object is the case where merged patches
# cannot be exact, and `true` next to `1` is where Python's `==` would lie.
MEMBERS = st.sampled_from(["a", "b"])
SCALARS = st.booleans() | st.integers(min_value=0, max_value=1) | st.just("x")
VALUES = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=1),
    lambda inner: st.dictionaries(MEMBERS, inner | st.none(), max_size=2),
    max_leaves=4,
)
PATCHES = st.dictionaries(MEMBERS, VALUES | st.none(), max_size=2)
SPANS = st.integers(min_value=1, max_value=3)
GROWTH_REDOS: list[dict[str, Json]] = [
    {"a": 1},
    {"a": {"b": True}},
    {"b": [1], "a": {"a": 0}},
    {"a": None, "b": {"a": {"b": 1}}},
    {"b": True},
    {"b": {"b": False}},
]
# Patch calls: (updates as (seq span, redo), where the first one starts: None = head + 1).
PATCH_CALLS = st.lists(
    st.tuples(
        st.lists(st.tuples(SPANS, PATCHES), min_size=1, max_size=3),
        st.sampled_from([None, None, None, None, None, "behind", "ahead", "start"]),
    ),
    min_size=1,
    max_size=3,
)


def expect_error(code: int, run: Any, coroutine: Awaitable[Any]) -> BraidError:
    with pytest.raises(BraidError) as caught:
        run(coroutine)
    assert caught.value.code == code, caught.value
    return caught.value


# -- the machine --------------------------------------------------------------------------------


class EngineMachine(RuleBasedStateMachine):
    """Runs one engine against the model on an event loop owned by the machine."""

    reopenable: ClassVar[bool] = False
    key_prefix: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model: dict[Key, ModelDocument] = {}
        self.appended = 0
        self.service: DataService = self.run(self.open())

    def run(self, coroutine: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    async def open(self) -> DataService:
        raise NotImplementedError

    def teardown(self) -> None:
        try:
            self.run(self.service.close())
        finally:
            self.loop.close()

    def key(self, name: str) -> Key:
        return Key("prop-space", self.key_prefix + name)

    # -- rules ------------------------------------------------------------------------------

    @initialize(
        histories=st.lists(
            st.lists(st.tuples(SPANS, PATCHES), min_size=1, max_size=6),
            min_size=len(NAMES),
            max_size=len(NAMES),
        )
    )
    def create_documents(self, histories: list[list[tuple[int, Json]]]) -> None:
        """Start with every document present and some history behind it, so that short
        runs already snapshot, rewind and reopen long logs."""
        for name, (first, *rest) in zip(NAMES, histories, strict=True):
            span, redo = first
            self.initialize_document(name, 1, span, redo)
            for step in rest:
                self.patch_once(self.key(name), [step], None)

    @rule(
        name=st.sampled_from(NAMES),
        begin=st.sampled_from([1, 1, 1, 2, 7]),
        span=SPANS,
        redo=PATCHES,
    )
    def initialize_document(self, name: str, begin: int, span: int, redo: dict[str, Json]) -> None:
        """Create the document (possibly starting past seq 1); 2002 if it exists."""
        key = self.key(name)
        document = merge_patch({}, redo)
        delta = ModelDelta(begin, begin + span - 1, redo, undo_of({}, document))
        update = Update(begin, delta.seq_end, redo=json.dumps(redo), undo=json.dumps(delta.undo))
        if key in self.model:
            expect_error(2002, self.run, self.service.initialize(key, update))
            return
        self.run(self.service.initialize(key, update))
        self.model[key] = ModelDocument([delta], [(delta.seq_begin, delta.seq_end)])

    @rule()
    def append_to_every_document(self) -> None:
        """One more delta on every document, from a fixed cycle of redos that turn members
        into scalars and back into objects. (Hypothesis favours rules without arguments;
        this makes that bias grow histories instead of idling.)"""
        self.appended += 1
        redo = GROWTH_REDOS[self.appended % len(GROWTH_REDOS)]
        for name in NAMES:
            key = self.key(name)
            if key in self.model:
                self.patch_once(key, [(1 + self.appended % 2, redo)], None)

    @rule(name=st.sampled_from(NAMES), calls=PATCH_CALLS)
    def patch(self, name: str, calls: list[tuple[list[tuple[int, Json]], str | None]]) -> None:
        """A few patch calls in a row: most start at head + 1, some deliberately do not."""
        for steps, wrong in calls:
            self.patch_once(self.key(name), steps, wrong)

    def patch_once(self, key: Key, steps: list[tuple[int, Json]], wrong: str | None) -> None:
        document = self.model.get(key)
        head = document.head if document is not None else 0
        begin = {None: head + 1, "behind": head, "ahead": head + 2, "start": 1}[wrong]
        begin = max(begin, 1)
        current = document.at(head) if document is not None else {}
        deltas, updates = [], []
        for span, redo in steps:
            after = merge_patch(current, redo)
            delta = ModelDelta(begin, begin + span - 1, redo, undo_of(current, after))
            deltas.append(delta)
            updates.append(
                Update(begin, delta.seq_end, redo=json.dumps(redo), undo=json.dumps(delta.undo))
            )
            current, begin = after, delta.seq_end + 1
        if document is None:
            expect_error(2001, self.run, self.service.patch(key, updates))
        elif deltas[0].seq_begin != head + 1:
            expect_error(2003, self.run, self.service.patch(key, updates))
        else:
            self.run(self.service.patch(key, updates))
            for delta in deltas:
                document.append(delta)

    @rule(name=st.sampled_from(NAMES), gap=st.integers(min_value=1, max_value=2))
    def patch_not_contiguous(self, name: str, gap: int) -> None:
        """A patch whose updates leave a gap is refused whole (1005), before any lookup."""
        key = self.key(name)
        document = self.model.get(key)
        begin = document.head + 1 if document is not None else 1
        updates = [Update(begin, begin), Update(begin + 1 + gap, begin + 1 + gap)]
        expect_error(1005, self.run, self.service.patch(key, updates))

    @rule(name=st.sampled_from(NAMES))
    def get(self, name: str) -> None:
        """get answers the model's document, head seq and delta count (2001 if absent)."""
        self.check_document(self.key(name))

    @rule(name=st.sampled_from(NAMES), method=st.sampled_from([HEAD_PATCH, REWIND]))
    def compute(self, name: str, method: ComputeMethod) -> None:
        """compute from every seq of the document (and two beyond its head)."""
        key = self.key(name)
        document = self.model.get(key)
        if document is None:
            expect_error(2001, self.run, self.service.compute(key, method, 0))
            return
        for seq in range(document.head + 1):
            if method is REWIND:
                self.check_rewind(key, document, seq)
            else:
                self.check_head_patch(key, document, seq)
        for seq in (document.head + 1, document.head + 2):
            expect_error(2008, self.run, self.service.compute(key, method, seq))

    def check_rewind(self, key: Key, document: ModelDocument, seq: int) -> None:
        if seq < document.compacted_through:
            expect_error(2004, self.run, self.service.compute(key, REWIND, seq))
            return
        change = self.run(self.service.compute(key, REWIND, seq))
        head = document.at(document.head)
        assert canonical(merge_patch(head, json.loads(change.document))) == canonical(
            document.at(seq)
        )
        assert change.seq == document.landing(seq)
        assert change.reads == document.newer_than(seq)

    def check_head_patch(self, key: Key, document: ModelDocument, seq: int) -> None:
        try:
            change = self.run(self.service.compute(key, HEAD_PATCH, seq))
        except BraidError as error:
            # Allowed only inside compacted history, where the fold may not re-apply exactly.
            assert error.code == 2007, error
            assert seq < document.compacted_through
            return
        head = document.at(document.head)
        assert canonical(merge_patch(document.at(seq), json.loads(change.document))) == canonical(
            head
        )
        assert change.seq == document.head
        assert change.reads == document.newer_than(seq)

    @rule(
        name=st.sampled_from(NAMES),
        history=st.sampled_from([0, 0, 0, 1, 2, 3]),
        mode=st.sampled_from(["fold", "fold", "fold", "mismatch", "not-a-boundary", "beyond"]),
        data=st.data(),
    )
    def snapshot(self, name: str, history: int, mode: str, data: st.DataObject) -> None:
        """Fold at a delta boundary (the removed count must match the model), or try a wrong
        document (2006), a seq inside a delta or at 0 (2005), or beyond the head (2008)."""
        key = self.key(name)
        document = self.model.get(key)
        if document is None:
            expect_error(2001, self.run, self.service.snapshot(key, 1, "{}", history))
            return
        boundaries = [end for _, end in document.kept]
        if mode == "beyond":
            seq = document.head + data.draw(st.integers(min_value=1, max_value=3))
            text = json.dumps(document.at(document.head))
            expect_error(2008, self.run, self.service.snapshot(key, seq, text, history))
            return
        if mode == "not-a-boundary":
            others = [seq for seq in range(document.head + 1) if seq not in boundaries]
            seq = data.draw(st.sampled_from(others), label="seq")
            text = json.dumps(document.at(seq))
            expect_error(2005, self.run, self.service.snapshot(key, seq, text, history))
            return
        # Newest first: hypothesis favours early choices, and folding at the head folds most.
        seq = data.draw(st.sampled_from(boundaries[::-1]), label="seq")
        if mode == "mismatch":
            text = json.dumps({**document.at(seq), "not-in-the-model": True})
            expect_error(2006, self.run, self.service.snapshot(key, seq, text, history))
            return
        removed = self.run(self.service.snapshot(key, seq, json.dumps(document.at(seq)), history))
        assert removed == document.fold(seq, history)

    @rule(name=st.sampled_from(NAMES), recreate=st.booleans(), redo=PATCHES)
    def delete(self, name: str, recreate: bool, redo: dict[str, Json]) -> None:
        """Delete the document, and maybe initialize the key again at once."""
        key = self.key(name)
        if key not in self.model:
            expect_error(2001, self.run, self.service.delete(key))
            return
        self.run(self.service.delete(key))
        del self.model[key]
        if recreate:
            self.initialize_document(name, 1, 1, redo)

    @rule(name=st.sampled_from(NAMES))
    def release(self, name: str) -> None:
        """close(key) releases memory only; the invariant then reads the document again."""
        self.run(self.service.close(self.key(name)))

    @rule()
    def inventory(self) -> None:
        """inventory lists exactly the model's documents with head seq and delta count."""
        listed = {(info.key, info.seq, info.deltas) for info in self.run(self.service.inventory())}
        expected = {(key, doc.head, len(doc.kept)) for key, doc in self.model.items()}
        assert listed == expected

    @precondition(lambda self: self.reopenable)
    @rule()
    def reopen(self) -> None:
        """Close the store and open it again from its directory: nothing acknowledged is lost."""
        self.run(self.service.close())
        self.service = self.run(self.open())

    # -- invariant --------------------------------------------------------------------------

    @invariant()
    def documents_match_the_model(self) -> None:
        """After every step, every key reads back exactly as the model says."""
        for name in NAMES:
            self.check_document(self.key(name))

    def check_document(self, key: Key) -> None:
        document = self.model.get(key)
        if document is None:
            expect_error(2001, self.run, self.service.get(key))
            return
        change = self.run(self.service.get(key))
        assert canonical(json.loads(change.document)) == canonical(document.at(document.head))
        assert change.seq == document.head
        assert change.reads == len(document.kept)


MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class MemoryMachine(EngineMachine):
    async def open(self) -> DataService:
        return MemoryEngine()


class DurableMachine(EngineMachine):
    """The durable engine through `braid.open`, reopened from the same directory."""

    reopenable = True
    key_prefix = "disk_"
    config: ClassVar[DurableConfig] = DurableConfig(segment_bytes=1 << 16)

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="braid-stateful-"))
        super().__init__()

    async def open(self) -> DataService:
        return await braid.open(self.directory, self.config)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class DurableTinyCheckpointMachine(DurableMachine):
    """Checkpoints every 3 records in the background; 1 KiB segments rotate and are released."""

    config = DurableConfig(segment_bytes=1024, checkpoint_records=3)

    @invariant()
    def log_segments_are_released(self) -> None:
        """Checkpoints release log segments: a run holds at most 3 at once (without release,
        30 steps write 6 or more)."""
        segments = list((self.directory / "wal").glob("seg-*.wal"))
        assert len(segments) <= 5, sorted(path.name for path in segments)


class DurableLogOnlyMachine(DurableMachine):
    """No checkpoint on close: every reopen replays the log written since the last one."""

    config = DurableConfig(segment_bytes=1 << 16, checkpoint_on_close=False)


class DurableLogOnlyTinyMachine(DurableTinyCheckpointMachine):
    """Background checkpoints, released segments, and reopens that replay the log's tail."""

    config = DurableConfig(segment_bytes=1024, checkpoint_records=3, checkpoint_on_close=False)


TestMemoryEngine = MemoryMachine.TestCase
TestDurableEngine = DurableMachine.TestCase
TestDurableTinyCheckpoints = DurableTinyCheckpointMachine.TestCase
TestDurableLogOnly = DurableLogOnlyMachine.TestCase
TestDurableLogOnlyTiny = DurableLogOnlyTinyMachine.TestCase
for _case in (
    TestMemoryEngine,
    TestDurableEngine,
    TestDurableTinyCheckpoints,
    TestDurableLogOnly,
    TestDurableLogOnlyTiny,
):
    _case.settings = MACHINE_SETTINGS
del _case


# -- regressions: durable-engine bugs these machines led to -------------------------------------


async def test_write_to_a_document_reloaded_past_the_cache_bound(tmp_path: Path) -> None:
    """A document loaded from the applied state into a full cache can still be written (the
    load used to evict the entry it had just loaded, and the write then hit a KeyError)."""
    engine = await DurableEngine.open(tmp_path, DurableConfig(segment_bytes=1 << 16, cache_bytes=1))
    try:
        key = Key("space", "doc")
        await engine.initialize(key, Update(1, 1, redo='{"a":1}'))
        await engine.inventory()  # checkpoints, so the document may leave the cache
        await engine.close(key)
        await engine.patch(key, [Update(2, 2, redo='{"b":2}')])
        change = await engine.get(key)
        assert change.document == '{"a":1,"b":2}'
        assert change.seq == 2
    finally:
        await engine.close()


class _HeldCheckpoint:
    """Makes the next AppliedState.checkpoint wait (in its thread) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.holding = threading.Event()
        self.release = threading.Event()
        original = AppliedState.checkpoint

        def checkpoint(state: AppliedState, operations: Any, through_lsn: int) -> None:
            if self.armed:
                self.armed = False
                self.holding.set()
                self.release.wait(10)
            original(state, operations, through_lsn)

        monkeypatch.setattr(AppliedState, "checkpoint", checkpoint)


async def test_inventory_during_a_background_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inventory() while a background checkpoint runs answers the documents; it used to
    apply the same pending operations a second time and fail with APPLIED_STATE_FAILED."""
    held = _HeldCheckpoint(monkeypatch)
    config = DurableConfig(segment_bytes=1 << 16, checkpoint_records=3)
    engine = await DurableEngine.open(tmp_path, config)
    key = Key("space", "doc")
    try:
        await engine.initialize(key, Update(1, 1, redo='{"a":1}'))
        await engine.inventory()
        held.armed = True
        for seq in (2, 3, 4):  # the third pending record starts a background checkpoint
            await engine.patch(key, [Update(seq, seq, redo=f'{{"s":{seq}}}')])
        assert await asyncio.to_thread(held.holding.wait, 10)
        inventory = asyncio.ensure_future(engine.inventory())
        await asyncio.sleep(0.05)  # inventory's own checkpoint is queued behind the held one
        held.release.set()
        listed = await inventory
        assert [(info.seq, info.deltas) for info in listed] == [(4, 4)]
    finally:
        held.release.set()
        await engine.close()


async def test_inventory_racing_a_background_checkpoint_loses_no_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every acknowledged patch survives a checkpoint race, a cache release and a reopen."""
    held = _HeldCheckpoint(monkeypatch)
    config = DurableConfig(segment_bytes=1 << 16, checkpoint_records=3)
    engine = await DurableEngine.open(tmp_path, config)
    key = Key("space", "doc")
    expected = {"s1": 1}
    try:
        await engine.initialize(key, Update(1, 1, redo='{"s1":1}'))
        for seq in (2, 3, 4):
            await engine.patch(key, [Update(seq, seq, redo=f'{{"s{seq}":{seq}}}')])
            expected[f"s{seq}"] = seq
        await engine.inventory()
        held.armed = True
        document_at = {2: {"s1": 1, "s2": 2}, 3: {"s1": 1, "s2": 2, "s3": 3}}
        for seq in (2, 3):  # two folds: re-applying them is harmless, so nothing fails
            assert await engine.snapshot(key, seq, json.dumps(document_at[seq]), 0) >= 1
        await engine.patch(key, [Update(5, 5, redo='{"s5":5}')])  # starts the held checkpoint
        assert await asyncio.to_thread(held.holding.wait, 10)
        inventory = asyncio.ensure_future(engine.inventory())
        await asyncio.sleep(0.05)
        # Acknowledged while both checkpoints are under way: the racing checkpoints used to
        # drop it from the pending operations unapplied...
        await engine.patch(key, [Update(6, 6, redo='{"s6":6}')])
        held.release.set()
        await inventory
        await engine.patch(key, [Update(7, 7, redo='{"s7":7}')])
        await engine.inventory()  # ...and this checkpoint moved the applied lsn past it
        expected.update(s5=5, s6=6, s7=7)
        await engine.close(key)
        change = await engine.get(key)
        assert json.loads(change.document) == expected
        await engine.close()
        engine = await DurableEngine.open(tmp_path, config)
        assert json.loads((await engine.get(key)).document) == expected
    finally:
        held.release.set()
        await engine.close()
