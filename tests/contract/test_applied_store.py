"""The AppliedStore port's contract (braid.ports.AppliedStore), run against the real adapter
(SQLite, `braid.storage.applied.AppliedState`) and the simulated one
(`braid.sim.applied.MemoryApplied`): the same seeded checkpoints of inits, patches, folds and
deletes leave both holding exactly the documents a model built with the pure document rules
holds, at the lsn each checkpoint recorded; and what only the simulated store does: a
failed checkpoint leaves the committed state whole."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from braid.core.document import DocumentLog
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp
from braid.errors import BraidError
from braid.model import Key, Update
from braid.ports import AppliedStore
from braid.sim.applied import MemoryApplied
from braid.storage.applied import AppliedState
from tests.support.json_model import canonical, merge_all

KEYS = [Key("contract", f"doc-{name}") for name in "abcd"]


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppliedStore]:
    applied: AppliedStore = (
        AppliedState(tmp_path / "applied.sqlite3") if request.param == "sqlite" else MemoryApplied()
    )
    yield applied
    applied.close()


def workload(seed: int, checkpoints: int) -> Iterator[tuple[list[Op], int, dict[Key, DocumentLog]]]:
    """Seeded checkpoints: the operations of each (valid against the model), the lsn it
    records, and the model's documents after it."""
    rng = random.Random(seed)
    model: dict[Key, DocumentLog] = {}
    lsn = 0
    for _ in range(checkpoints):
        operations: list[Op] = []
        for _ in range(rng.randint(1, 8)):
            lsn += rng.randint(1, 3)  # commit markers take lsns too
            operations.append(next_op(rng, model))
        yield operations, lsn, model


def next_op(rng: random.Random, model: dict[Key, DocumentLog]) -> Op:
    """One operation valid for the model, applied to it."""
    key = rng.choice(KEYS)
    log = model.get(key)
    if log is None:
        update = Update(1, 1, redo=json.dumps({"n": 1, key.key: True}))
        model[key] = DocumentLog([update])
        return InitOp(key, update)
    roll = rng.random()
    if roll < 0.1:
        del model[key]
        return DeleteOp(key)
    if roll < 0.3 and len(log.deltas) >= 3:
        seq = rng.choice([update.seq_end for update in log.deltas[:-1]])
        deltas = [update for update in log.deltas if update.seq_end <= seq]
        document = canonical(merge_all([json.loads(update.redo) for update in deltas], {}))
        fold = log.plan_fold(seq, document, history=1)
        if fold is not None:
            log.apply_fold(fold)
            return FoldOp(key, fold)
    head = log.head
    count = rng.randint(1, 3)
    updates = tuple(
        Update(seq, seq, redo=json.dumps({"n": seq, f"f{seq % 5}": rng.randint(0, 9)}))
        for seq in range(head + 1, head + 1 + count)
    )
    log.append(updates)
    return PatchOp(key, updates)


def assert_holds(store: AppliedStore, model: dict[Key, DocumentLog], lsn: int) -> None:
    assert store.applied_lsn() == lsn
    for key in KEYS:
        stored, expected = store.load(key), model.get(key)
        if expected is None:
            assert stored is None, key
            continue
        assert stored is not None, key
        assert stored.deltas == expected.deltas, key
        assert (stored.compacted_through, stored.compacted_exact) == (
            expected.compacted_through,
            expected.compacted_exact,
        ), key
    listed = [(info.key, info.seq, info.deltas) for info in store.inventory()]
    assert listed == [
        (key, model[key].head, len(model[key].deltas))
        for key in sorted(model, key=lambda key: (key.space, key.key))
    ]


@pytest.mark.parametrize("seed", range(12))
def test_checkpoints_hold_what_the_document_rules_say(store: AppliedStore, seed: int) -> None:
    """After every checkpoint of a seeded run (inits, patches, folds, deletes), the store
    holds each document exactly as the model does, at the lsn the checkpoint recorded."""
    for operations, lsn, model in workload(seed, checkpoints=25):
        store.checkpoint(operations, lsn)
        assert_holds(store, model, lsn)


def test_loaded_documents_are_copies(store: AppliedStore) -> None:
    """Changing a loaded document does not change what the store holds."""
    key = KEYS[0]
    store.checkpoint([InitOp(key, Update(1, 1, redo='{"n":1}'))], 1)
    loaded = store.load(key)
    assert loaded is not None
    loaded.append([Update(2, 2, redo='{"n":2}')])
    again = store.load(key)
    assert again is not None and again.head == 1


def test_a_failed_checkpoint_leaves_the_committed_state_whole() -> None:
    """The simulated store's injected failure: the checkpoint raises a BraidError and
    nothing of it is applied, its lsn included; the next one applies normally."""
    store = MemoryApplied()
    runs = list(workload(5, checkpoints=6))
    (first_ops, first_lsn, _), (second_ops, second_lsn, _) = runs[0], runs[1]
    store.checkpoint(first_ops, first_lsn)
    before = {key: store.load(key) for key in KEYS}
    store.fail_next_checkpoint()
    with pytest.raises(BraidError):
        store.checkpoint(second_ops, second_lsn)
    assert store.applied_lsn() == first_lsn
    for key in KEYS:
        now, then = store.load(key), before[key]
        assert (now.deltas if now else None) == (then.deltas if then else None)
    store.checkpoint(second_ops, second_lsn)
    assert store.applied_lsn() == second_lsn
