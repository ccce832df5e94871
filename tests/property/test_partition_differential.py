"""A replicated partition answers exactly like the embedded in-memory engine.

Hypothesis drives one random sequence of initialize, patch (right seqs, gaps, overlaps,
non-contiguous and empty patches), snapshot and delete through two sides at once:

- the memory engine (`braid.storage.memory`), one call after another;
- a `Partition` leader: `check` (or `plan_snapshot` then `check`), the entry appended to a
  log, `track`; entries are committed in random slices, so writes pile up pending and the
  leader's checks must see them; every entry is applied on the leader and on a follower.

The invariant: every write the leader refuses, the engine refuses with the same code and
detail; every write it accepts completes, in log order, with the engine's result or error;
once everything is applied, get, compute and inventory answer as the engine does, and the
follower's documents and digest equal the leader's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braid.core.partition import NO_OP, Partition
from braid.core.wal.ops import DeleteOp, InitOp, Op, PatchOp
from braid.errors import BraidError, ErrorInfo
from braid.model import HEAD_PATCH, REWIND, DocumentChange, Key, Update
from braid.storage.memory import MemoryEngine
from tests.support.coroutines import run_at_once

KEYS = [Key("docs", name) for name in ("a", "b", "c")]
TERM = 3
ACTIONS = [
    "init",
    "init",
    *["patch"] * 5,
    "snapshot",
    "snapshot",
    "delete",
    "commit",
    "commit",
    "noop",
]

Outcome = tuple[int | None, ErrorInfo | None, str]

json_values = st.one_of(
    st.none(),
    st.integers(0, 9),
    st.dictionaries(st.sampled_from(["p", "q"]), st.one_of(st.none(), st.integers(0, 3))),
)
patches = st.dictionaries(st.sampled_from(["x", "y", "z"]), json_values, max_size=3)


def engine_outcome(coroutine: Coroutine[Any, Any, int | None]) -> Outcome:
    try:
        return run_at_once(coroutine), None, ""
    except BraidError as error:
        return None, error.info, error.detail


class Sides:
    """The engine, the leader, its log and a follower; what each accepted write awaits."""

    def __init__(self) -> None:
        self.engine = MemoryEngine()
        self.leader: Partition[int] = Partition()
        self.follower: Partition[int] = Partition()
        self.log: list[bytes] = []
        self.applied = 0
        self.expected: dict[int, Outcome] = {}  # token → the engine's outcome
        self.tokens = 0
        self.leader.set_writable(True)

    def head(self, key: Key) -> int:
        try:
            return run_at_once(self.engine.get(key)).seq
        except BraidError:
            return 0

    def write(self, op: Op | tuple[Key, int, str, int], engine: Outcome) -> None:
        """Offer `op` (or a snapshot request) to the leader; compare a refusal at once, or
        remember what its completion must be."""
        try:
            if isinstance(op, tuple):
                fold = self.leader.plan_snapshot(*op)
                if fold is None:
                    assert engine == (0, None, "")
                    return
                op = fold
            proposal = self.leader.check(op)
        except BraidError as error:
            assert (None, error.info, error.detail) == engine, op
            return
        self.log.append(proposal.data)
        self.tokens += 1
        self.leader.track(len(self.log), TERM, proposal, self.tokens)
        self.expected[self.tokens] = engine

    def commit(self, count: int) -> None:
        """Apply the next `count` entries on both replicas and check the completions."""
        last = 0
        for index in range(self.applied + 1, self.applied + count + 1):
            data = self.log[index - 1]
            assert self.follower.apply(index, TERM, data) == []
            for completion in self.leader.apply(index, TERM, data):
                assert completion.token > last
                last = completion.token
                error = completion.error
                got = (
                    (completion.result, None, "")
                    if error is None
                    else (None, error.info, error.detail)
                )
                assert got == self.expected.pop(completion.token)
        self.applied += count

    def compare_reads(self) -> None:
        assert self.applied == len(self.log) and not self.expected
        assert self.leader.pending == 0
        assert self.leader.inventory() == sorted(
            run_at_once(self.engine.inventory()), key=lambda info: (info.key.space, info.key.key)
        )
        for key in KEYS:
            head = self.head(key)
            assert read(self.leader.get, key) == read_engine(self.engine.get(key))
            for seq in sorted({0, 1, max(head - 1, 0), head, head + 1}):
                for method in (HEAD_PATCH, REWIND):
                    ours = read(self.leader.compute, key, method, seq)
                    assert ours == read_engine(self.engine.compute(key, method, seq))
        assert self.follower.summary() == self.leader.summary()
        assert self.follower.digest() == self.leader.digest()


def read(call: Callable[..., DocumentChange], *arguments: Any) -> DocumentChange | ErrorInfo:
    try:
        return call(*arguments)
    except BraidError as error:
        return error.info


def read_engine(coroutine: Coroutine[Any, Any, DocumentChange]) -> DocumentChange | ErrorInfo:
    try:
        return run_at_once(coroutine)
    except BraidError as error:
        return error.info


def draw_updates(data: st.DataObject, first: int) -> tuple[Update, ...]:
    updates = []
    seq = first
    for _ in range(data.draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3]), "updates")):
        seq += data.draw(st.sampled_from([0, 0, 0, 0, 1]), "gap")  # 1: not contiguous
        end = seq + data.draw(st.integers(0, 1), "span")
        redo = json.dumps(data.draw(patches, "redo"))
        undo = json.dumps(data.draw(patches, "undo"))
        updates.append(Update(seq, end, redo=redo, undo=undo, who="w"))
        seq = end + 1
    return tuple(updates)


def step(sides: Sides, data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(ACTIONS))
    key = data.draw(st.sampled_from(KEYS), "key")
    engine = sides.engine
    if action == "commit":
        unapplied = len(sides.log) - sides.applied
        if unapplied:
            sides.commit(data.draw(st.integers(1, unapplied), "count"))
    elif action == "noop":
        sides.log.append(NO_OP)
    elif action == "init":
        seq = data.draw(st.integers(1, 3), "seq")
        update = Update(seq, seq, redo=json.dumps(data.draw(patches, "redo")))
        sides.write(InitOp(key, update), engine_outcome(engine.initialize(key, update)))
    elif action == "patch":
        first = max(1, sides.head(key) + 1 + data.draw(st.sampled_from([0, 0, 0, -1, 1])))
        updates = draw_updates(data, first)
        sides.write(PatchOp(key, updates), engine_outcome(engine.patch(key, updates)))
    elif action == "delete":
        sides.write(DeleteOp(key), engine_outcome(engine.delete(key)))
    else:
        head = sides.head(key)
        seq = data.draw(st.sampled_from([head, head, max(head - 1, 0), head + 1]), "seq")
        history = data.draw(st.integers(0, 2), "history")
        try:
            document = run_at_once(engine.get(key)).document
        except BraidError:
            document = "{}"
        request = (key, seq, document, history)
        sides.write(request, engine_outcome(engine.snapshot(*request)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_partition_answers_like_the_memory_engine(data: st.DataObject) -> None:
    """Refusals at check, completions on apply and reads after apply are the engine's, for
    any sequence of writes and any slicing of their commits; replicas stay identical."""
    sides = Sides()
    for _ in range(data.draw(st.integers(1, 60), "steps")):
        step(sides, data)
    sides.commit(len(sides.log) - sides.applied)
    sides.compare_reads()


def test_the_comparison_has_teeth(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leader that checked writes against the applied state alone, forgetting its pending
    writes, is caught: its refusal of a patch onto a pending initialize is not the engine's
    answer (the engine accepted it)."""
    monkeypatch.setattr(Partition, "_head", lambda self, key: self._documents.get(key))
    sides = Sides()
    key = KEYS[0]
    update = Update(1, 1, redo="{}")
    sides.write(InitOp(key, update), engine_outcome(sides.engine.initialize(key, update)))
    patch = (Update(2, 2, redo="{}"),)
    with pytest.raises(AssertionError):
        sides.write(PatchOp(key, patch), engine_outcome(sides.engine.patch(key, patch)))
