"""The rules between the log and the applied state, pure: which logged operations a
checkpoint applies, when one is due, which cached documents are pinned, what a refused
batch takes back, and which log segments may be released.

A record's life here: `logged(lsn, op)` (it is in the log, maybe not yet durable) →
`begin(durable_lsn)` hands a checkpoint the durable prefix of what is pending → the driver
applies it to the applied state in one transaction that records its last lsn → `done`
drops it from pending and moves `applied_lsn` → `releasable` says which segments hold
nothing newer, and the driver deletes them. A document whose newest operation is above
`applied_lsn` is *pinned*: the applied state does not have it yet, so its cached copy is
the only one and must not be evicted. The driver (`braid.storage.durable`) owns threads,
timers, SQLite and files; the simulator drives the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from braid.core.wal.ops import Op
from braid.model import Key


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The operations one checkpoint applies, in log order, and the lsn it records."""

    operations: list[Op]
    through_lsn: int
    count: int


@dataclass
class ApplyRules:
    """Pending operations and the applied lsn (see the module text)."""

    applied_lsn: int
    checkpoint_records: int  # a checkpoint is due once this many operations are pending
    pending: list[tuple[int, Op]] = field(default_factory=list)
    running: Checkpoint | None = field(default=None, init=False)
    # Enough is pending that a checkpoint should run now (else the interval decides). An
    # attribute, kept by every change of `pending`: every write reads it.
    due: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._recount()

    def _recount(self) -> None:
        self.due = len(self.pending) >= self.checkpoint_records

    def logged(self, lsn: int, op: Op) -> None:
        """An operation was framed into the log at `lsn` (lsns only grow)."""
        pending = self.pending
        assert lsn > self.applied_lsn
        assert not pending or lsn > pending[-1][0], (lsn, pending[-1][0])
        pending.append((lsn, op))
        self.due = len(pending) >= self.checkpoint_records

    def begin(self, durable_lsn: int) -> Checkpoint | None:
        """The next checkpoint: every pending operation at or below `durable_lsn` (never
        one a crash could take back), or None when there is none or one is running."""
        if self.running is not None:
            return None
        count = 0
        pending = self.pending
        while count < len(pending) and pending[count][0] <= durable_lsn:
            count += 1
        if count == 0:
            return None
        operations = [op for _, op in pending[:count]]
        self.running = Checkpoint(operations, pending[count - 1][0], count)
        return self.running

    def done(self, checkpoint: Checkpoint) -> None:
        """The checkpoint is committed: its operations leave pending."""
        assert checkpoint is self.running
        assert self.pending[checkpoint.count - 1][0] == checkpoint.through_lsn
        del self.pending[: checkpoint.count]
        self._recount()
        self.applied_lsn = checkpoint.through_lsn
        self.running = None

    def failed(self, checkpoint: Checkpoint) -> None:
        """The checkpoint was not committed: everything stays pending (and pinned)."""
        assert checkpoint is self.running
        self.running = None

    def pinned(self, last_lsn: int) -> bool:
        """Whether a document whose newest operation is at `last_lsn` must stay cached."""
        return last_lsn > self.applied_lsn

    def reverted(self, first_lsn: int) -> dict[Key, list[tuple[int, Op]]]:
        """The log gave back every record from `first_lsn` on: drop those operations.
        Returns each document they touched with its pending operations that remain (the
        driver rebuilds it from the applied state plus those)."""
        assert self.running is None or self.running.through_lsn < first_lsn
        touched = dict.fromkeys(op.key for lsn, op in self.pending if lsn >= first_lsn)
        self.pending = [(lsn, op) for lsn, op in self.pending if lsn < first_lsn]
        self._recount()
        return {key: [(lsn, op) for lsn, op in self.pending if op.key == key] for key in touched}

    def pending_keys(self) -> set[Key]:
        return {op.key for _, op in self.pending}


def releasable(segment_first_lsns: Sequence[int], applied_lsn: int) -> int:
    """How many of the oldest segments (given by their first lsns, in order) hold nothing
    above `applied_lsn`: every record of a segment is below the next one's first lsn. The
    newest segment is never released (the log is written there)."""
    count = 0
    while count + 1 < len(segment_first_lsns) and segment_first_lsns[count + 1] - 1 <= applied_lsn:
        count += 1
    return count
