"""A simulated `braid.ports.AppliedStore`: the applied state in memory.

A checkpoint is applied to a copy of the committed state and swapped in whole, so it is
atomic; what is committed survives a simulated crash (it models SQLite's transactions, whose
atomicity braid trusts), and a checkpoint that fails (`fail_next_checkpoint`, as a full
disk would) leaves the committed state as it was. Operations are applied by the same pure
document rules the engines use (`braid.core.document.DocumentLog`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import msgspec

from braid.core.document import DocumentLog
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp
from braid.errors import DISK_FULL, BraidError
from braid.model import DocumentInfo, Key, Update


@dataclass(frozen=True)
class _Stored:
    deltas: tuple[Update, ...]
    compacted_through: int
    compacted_exact: bool


class MemoryApplied:
    """`AppliedStore` in memory (see the module text)."""

    def __init__(self) -> None:
        self._documents: dict[Key, _Stored] = {}
        self._applied_lsn = 0
        self._failing = False
        self.checkpoints = 0

    def applied_lsn(self) -> int:
        return self._applied_lsn

    def load(self, key: Key) -> DocumentLog | None:
        stored = self._documents.get(key)
        if stored is None:
            return None
        return DocumentLog(list(stored.deltas), stored.compacted_through, stored.compacted_exact)

    def inventory(self) -> Iterator[DocumentInfo]:
        for key in sorted(self._documents, key=lambda key: (key.space, key.key)):
            stored = self._documents[key]
            size = len(msgspec.msgpack.encode(list(stored.deltas)))
            yield DocumentInfo(key, stored.deltas[-1].seq_end, len(stored.deltas), size)

    def checkpoint(self, operations: Sequence[Op], through_lsn: int) -> None:
        if self._failing:
            self._failing = False
            raise BraidError(DISK_FULL, "simulated: the checkpoint's transaction failed")
        assert through_lsn > self._applied_lsn
        documents = dict(self._documents)
        logs: dict[Key, DocumentLog | None] = {}
        for op in operations:
            key = op.key
            if isinstance(op, InitOp):
                logs[key] = DocumentLog([op.update])
                continue
            if key not in logs:
                logs[key] = self.load(key)
            log = logs[key]
            assert log is not None, f"{type(op).__name__} of {key} without a document"
            if isinstance(op, PatchOp):
                log.append(op.updates)
            elif isinstance(op, FoldOp):
                log.apply_fold(op.fold)
            elif isinstance(op, DeleteOp):
                logs[key] = None
        for key, log in logs.items():
            if log is None:
                documents.pop(key, None)
            else:
                documents[key] = _Stored(
                    tuple(log.deltas), log.compacted_through, log.compacted_exact
                )
        self._documents = documents  # the commit: all of it at once
        self._applied_lsn = through_lsn
        self.checkpoints += 1

    def fail_next_checkpoint(self) -> None:
        self._failing = True

    def close(self) -> None:
        pass
