"""The documents of one replicated partition, and its leader's write path, as pure code.

Raft orders opaque entries; this object gives them meaning. The host drives it:

- **Entries.** An entry's data is one byte of `RecordType` and the operation's msgpack
  payload (`encode_entry` / `decode_entry`, the WAL's schemas). Empty data is the no-op a
  new leader appends to commit its term (and any entry that carries no document operation:
  the host passes those as empty too, so that every committed index is applied once).
- **Apply.** `apply(index, term, data)` takes every committed entry in index order, on every
  replica, and checks and applies it through `DocumentLog` exactly as the embedded engines
  do. It is deterministic: the same entries give every replica the same documents, digests
  and answers. An operation that fails its check (the leader checked it, so this means a
  bug or writes this leader did not see) changes nothing on every replica alike, and the
  write's proposer completes with that error.
- **The leader's write path.** `check(op)` refuses, with the engines' codes, a write that
  does not fit the document's head *after this leader's pending writes* (a wrong seq never
  enters the log); `plan_snapshot` plans a snapshot the same way. Once the host proposed the
  returned `Proposal` at (index, term) it calls `track`, before checking anything else: the
  write is pending, and the next check sees it. Writes are checked only while the host says
  the partition is writable (`set_writable`: a leader with an entry of its own term
  committed and applied, so the applied state holds every earlier leader's writes).
- **Completions.** Applying a tracked index completes its write: with its result when the
  entry committed is the one proposed (same term and data), with NOT_LEADER "not applied,
  safe to retry" when another leader's entry took the index.
- **Settling.** A document's pending writes are *projected*: a copy of its log with them
  applied. The projection is trusted only while every pending write settles as proposed.
  When one might not (catastrophic failure, an index taken by another leader, an entry that
  failed its check or was not this leader's), the document is *stale*: new writes to it are
  refused until every write already proposed for it has been applied or shown not applied;
  then it has no pending writes, and its head is the applied head again (seed 002's
  "reload the document before accepting new writes").
- **Leadership.** `lost_leadership` fails every pending write with NOT_LEADER (the new
  leader may still apply it; a retried patch that was applied fails with HEAD_SEQ_OFF);
  `catastrophic` (the leader's own log write failed, or no durable majority in time) fails
  them with WRITE_NOT_DURABLE and makes their documents stale.
- **Reads** (`get`, `compute`, `inventory`) answer from the applied state; the host decides
  whether its lease allows serving them.
- **Repair.** `summary` gives each document's head seq and digest, `digest` the whole
  partition's; `install` replaces the state with documents pulled from peers as of an index
  (the position-only snapshot of a sick follower). A document's digest chains its retained
  deltas: d_0 = 16 zero bytes, d_n = blake2b(d_{n-1} ‖ msgpack(delta_n)); a fold rechains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from braid.core.document import DocumentLog, Fold, check_initialize, check_updates
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp, decode_op, encode_op
from braid.core.wal.record import RecordType
from braid.errors import (
    DOCUMENT_NOT_FOUND,
    NOT_LEADER,
    SNAPSHOT_MISMATCH,
    WRITE_NOT_DURABLE,
    BraidError,
)
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update

T = TypeVar("T")

NO_OP = b""  # a committed entry with nothing to apply (a new leader's first entry)
DIGEST_BYTES = 16
EMPTY_DIGEST = bytes(DIGEST_BYTES)
_DOCUMENT_PERSON = b"braid.document"
_PARTITION_PERSON = b"braid.partition."
_encode = msgspec.msgpack.Encoder().encode

_ENTRY_ERRORS = (BraidError, msgspec.DecodeError, msgspec.ValidationError, ValueError)


def encode_entry(op: Op) -> bytes:
    kind, payload = encode_op(op)
    return bytes((kind,)) + payload


def decode_entry(data: bytes) -> Op:
    """The operation an entry carries; raises one of `_ENTRY_ERRORS` for bytes that are not
    one (the no-op included: the caller tells it apart first)."""
    if not data:
        raise ValueError("the empty entry carries no operation")
    return decode_op(RecordType(data[0]), data[1:])


def chain(digest: bytes, update: Update) -> bytes:
    """The digest of a document whose deltas are those of `digest`, then `update`."""
    return hashlib.blake2b(
        digest + _encode(update), digest_size=DIGEST_BYTES, person=_DOCUMENT_PERSON
    ).digest()


def document_digest(log: DocumentLog) -> bytes:
    digest = EMPTY_DIGEST
    for update in log.deltas:
        digest = chain(digest, update)
    return digest


@dataclass(frozen=True, slots=True)
class Completion(Generic[T]):
    """A tracked write's outcome: its token, and its result (a snapshot's count of deltas
    removed; None for the other writes) or its error. `settled`: the outcome is final — the
    write took effect exactly when `error` is None; False when it may still be applied (lost
    leadership, catastrophic failure, a state installed from peers)."""

    token: T
    result: int | None
    error: BraidError | None
    settled: bool


@dataclass(frozen=True, slots=True)
class Proposal:
    """A checked write: the entry data to propose, its size as the check counted it, and
    the write path's version it was checked against (`track` refuses a proposal made stale
    by anything since, so the check still holds when it is tracked)."""

    op: Op
    data: bytes
    size: int
    version: int


class _Pending(Generic[T]):
    """A write this leader proposed at (index, term); `answered` once its proposer has been
    told (catastrophic failure) while it still awaits settling."""

    __slots__ = ("answered", "data", "index", "op", "term", "token")

    def __init__(self, index: int, term: int, proposal: Proposal, token: T) -> None:
        self.index = index
        self.term = term
        self.op = proposal.op
        self.data = proposal.data
        self.token = token
        self.answered = False


class _Projection:
    """A document after this leader's pending writes (`log` None: absent), how many of them
    are not yet settled, and, once stale, why new writes wait (see the module text)."""

    __slots__ = ("catastrophic", "log", "pending", "stale")

    def __init__(self, log: DocumentLog | None) -> None:
        self.log = log
        self.pending = 0
        self.stale: str | None = None
        self.catastrophic = False


def copy_log(log: DocumentLog) -> DocumentLog:
    """A copy sharing the (immutable) updates, made without recounting every delta's size:
    built on the newest delta, then given the whole list and the size already counted."""
    copy = DocumentLog([log.deltas[-1]], log.compacted_through, log.compacted_exact)
    copy.deltas = list(log.deltas)
    copy.bytes = log.bytes
    return copy


def _check_state(log: DocumentLog | None, op: Op) -> int:
    """Raise the engines' error if `op` cannot apply to the document `log` (None: absent);
    return a patch's size for `_mutate`. The op's own input was checked (`_check_input`)."""
    if isinstance(op, InitOp):
        if log is not None:
            raise DocumentLog.refuse_initialize_existing()
        return 0
    if log is None:
        raise BraidError(DOCUMENT_NOT_FOUND, f"no document {op.key}")
    if isinstance(op, PatchOp):
        return log.check_patch(op.updates)
    if isinstance(op, FoldOp):
        _check_fold(log, op.fold)
    return 0


def _check_fold(log: DocumentLog, fold: Fold) -> None:
    """A fold planned on this very document still fits it: the same first delta, and a
    delta ending where the folded one does. (The same seqs with other deltas would need a
    delete and initialize between planning and applying that the leader did not see.)"""
    deltas = log.deltas
    fits = 2 <= fold.count <= len(deltas)
    fits = fits and deltas[0].seq_begin == fold.delta.seq_begin
    if not (fits and deltas[fold.count - 1].seq_end == fold.delta.seq_end):
        raise BraidError(
            SNAPSHOT_MISMATCH,
            f"the snapshot folding seqs {fold.delta.seq_begin}..{fold.delta.seq_end} was "
            f"planned on another state of the document (head now {log.head}); nothing was "
            "compacted",
        )


def _check_input(op: Op) -> None:
    """What every engine checks of a write's arguments before looking at the document."""
    if isinstance(op, InitOp):
        check_initialize(op.update)
    elif isinstance(op, PatchOp):
        check_updates(op.updates)


def _mutate(log: DocumentLog | None, op: Op, size: int) -> DocumentLog | None:
    """The document after a checked `op` (mutated in place where it still exists)."""
    if isinstance(op, InitOp):
        return DocumentLog([op.update])
    assert log is not None
    if isinstance(op, PatchOp):
        log.append(op.updates, size)
    elif isinstance(op, FoldOp):
        log.apply_fold(op.fold)
    else:
        assert isinstance(op, DeleteOp)
        return None
    return log


class Partition(Generic[T]):
    """One replica's documents of a partition; on the leader, its pending writes too."""

    def __init__(self) -> None:
        self.applied_index = 0
        self.applied_term = 0
        self.skipped = 0  # committed operations that failed their check at apply
        self._documents: dict[Key, DocumentLog] = {}
        self._digests: dict[Key, bytes] = {}
        self._writable = False
        self._pending: dict[int, _Pending[T]] = {}  # by index, in index order
        self._projections: dict[Key, _Projection] = {}
        self._version = 0

    # -- the leader's write path -------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def pending(self) -> int:
        """Writes proposed and not yet settled (answered or not)."""
        return len(self._pending)

    def set_writable(self, writable: bool) -> None:
        """Whether `check` may accept writes (the host: leader, its term's entry applied)."""
        self._writable = writable
        self._version += 1

    def check(self, op: Op) -> Proposal:
        """The entry to propose for `op`, or the error every engine would raise for it given
        the document after this leader's pending writes. Changes nothing."""
        self._check_writable()
        _check_input(op)
        size = _check_state(self._head(op.key), op)
        return Proposal(op, encode_entry(op), size, self._version)

    def plan_snapshot(self, key: Key, seq: int, document: str, history: int) -> FoldOp | None:
        """The fold a snapshot request makes (check it, then propose it), or None when it
        folds nothing (answer 0 at once); the engines' errors otherwise. Changes nothing."""
        self._check_writable()
        log = self._head(key)
        if log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        fold = log.plan_fold(seq, document, history)
        return None if fold is None else FoldOp(key, fold)

    def track(self, index: int, term: int, proposal: Proposal, token: T) -> None:
        """The host proposed `proposal` at (index, term): its write is pending, `token`
        comes back in its completion. Call it before checking anything else."""
        assert proposal.version == self._version, "a proposal checked before a later change"
        assert self._writable
        assert index > self.applied_index
        assert not self._pending or index > next(reversed(self._pending)), index
        op = proposal.op
        projection = self._projections.get(op.key)
        if projection is None:
            applied = self._documents.get(op.key)
            projection = _Projection(None if applied is None else copy_log(applied))
            self._projections[op.key] = projection
        assert projection.stale is None
        projection.log = _mutate(projection.log, op, proposal.size)
        projection.pending += 1
        self._pending[index] = _Pending(index, term, proposal, token)
        self._version += 1

    def _check_writable(self) -> None:
        if not self._writable:
            raise BraidError(
                NOT_LEADER,
                "this replica is not the partition's leader, or has not yet applied an entry "
                "of its term; the request was not run",
            )

    def _head(self, key: Key) -> DocumentLog | None:
        """The document as the next write finds it (None: absent); refuses a stale one."""
        projection = self._projections.get(key)
        if projection is None:
            return self._documents.get(key)
        if projection.stale is not None:
            detail = (
                f"new writes to {key} wait until the {projection.pending} write(s) already "
                f"proposed for it have settled ({projection.stale}); this one was not run"
            )
            if projection.catastrophic:
                raise BraidError(WRITE_NOT_DURABLE, detail)
            raise BraidError(NOT_LEADER, detail)
        return projection.log

    # -- committed entries -------------------------------------------------------------------

    def apply(self, index: int, term: int, data: bytes) -> list[Completion[T]]:
        """Apply the committed entry at `index` (every index once, in order); the
        completions of the writes this replica tracked there."""
        assert index == self.applied_index + 1, (index, self.applied_index)
        assert term >= self.applied_term, (term, self.applied_term)
        self.applied_index = index
        self.applied_term = term
        completions: list[Completion[T]] = []
        pending = self._pending.pop(index, None)
        if pending is not None and (pending.term != term or pending.data != data):
            not_applied = BraidError(
                NOT_LEADER,
                f"the write was not applied: index {index} holds another leader's entry (term "
                f"{term}, proposed in term {pending.term}); it is safe to retry",
            )
            self._settle(pending, None, not_applied, completions)
            self._make_stale(pending.op.key, f"index {index} went to another leader", False)
            pending = None
        if data == NO_OP:
            return completions
        if pending is not None:
            op = pending.op
        else:
            self._version += 1  # an entry not proposed here: heads move under the checks
            try:
                op = decode_entry(data)
            except _ENTRY_ERRORS:
                self.skipped += 1  # the same bytes on every replica: all skip them
                return completions
        result, error = self._apply_op(op)
        if pending is not None:
            self._settle(pending, result, error, completions)
        if pending is None:
            self._make_stale(
                op.key, f"index {index} held a write this leader did not propose", False
            )
        elif error is not None:
            self._make_stale(op.key, f"its write at index {index} failed its check", False)
        return completions

    def _apply_op(self, op: Op) -> tuple[int | None, BraidError | None]:
        key = op.key
        log = self._documents.get(key)
        try:
            size = _check_state(log, op)
        except BraidError as error:
            self.skipped += 1
            return None, error
        log = _mutate(log, op, size)
        if log is None:
            del self._documents[key]
            del self._digests[key]
            return None, None
        self._documents[key] = log
        if isinstance(op, PatchOp):
            digest = self._digests[key]
            for update in op.updates:
                digest = chain(digest, update)
            self._digests[key] = digest
        elif isinstance(op, InitOp):
            self._digests[key] = chain(EMPTY_DIGEST, op.update)
        else:
            assert isinstance(op, FoldOp)
            self._digests[key] = document_digest(log)
            return op.fold.count - 1, None
        return None, None

    def _settle(
        self,
        pending: _Pending[T],
        result: int | None,
        error: BraidError | None,
        completions: list[Completion[T]],
    ) -> None:
        key = pending.op.key
        projection = self._projections[key]
        projection.pending -= 1
        if projection.pending == 0:
            del self._projections[key]  # nothing pending: the applied head is the head
        if not pending.answered:
            completions.append(Completion(pending.token, result, error, True))

    def _make_stale(self, key: Key, reason: str, catastrophic: bool) -> None:
        projection = self._projections.get(key)
        if projection is None:
            return  # nothing pending: the next write is checked against the applied head
        if projection.stale is None or (catastrophic and not projection.catastrophic):
            projection.stale = reason
            projection.catastrophic = catastrophic
        self._version += 1

    # -- leadership and failure --------------------------------------------------------------

    def lost_leadership(self) -> list[Completion[T]]:
        """This replica is no longer the leader: fail every pending write with NOT_LEADER
        and forget them (a new term's writes are checked only once all are applied)."""
        error = BraidError(
            NOT_LEADER,
            "this replica lost leadership of the partition while the write was pending: the "
            "new leader may still apply it (a retried patch that was applied fails with "
            "HEAD_SEQ_OFF)",
        )
        return self._forget_pending(error)

    def catastrophic(self, reason: str) -> list[Completion[T]]:
        """The leader cannot make its pending writes durable (`reason`: its log write failed,
        no durable majority in time): fail them, and refuse new writes to their documents
        until every write proposed for them has settled."""
        error = BraidError(
            WRITE_NOT_DURABLE,
            f"{reason}: the write may or may not have been applied (a retried patch that was "
            "applied fails with HEAD_SEQ_OFF)",
        )
        completions: list[Completion[T]] = []
        for pending in self._pending.values():
            if not pending.answered:
                pending.answered = True
                completions.append(Completion(pending.token, None, error, False))
        for key in list(self._projections):
            self._make_stale(key, reason, True)
        return completions

    def _forget_pending(self, error: BraidError) -> list[Completion[T]]:
        completions = [
            Completion(pending.token, None, error, False)
            for pending in self._pending.values()
            if not pending.answered
        ]
        self._pending.clear()
        self._projections.clear()
        self._writable = False
        self._version += 1
        return completions

    # -- reads -------------------------------------------------------------------------------

    def _applied(self, key: Key) -> DocumentLog:
        log = self._documents.get(key)
        if log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        return log

    def get(self, key: Key) -> DocumentChange:
        return self._applied(key).get()

    def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        return self._applied(key).compute(method, seq)

    def inventory(self) -> list[DocumentInfo]:
        """Every applied document, ordered by space and key."""
        return [
            DocumentInfo(key, log.head, len(log.deltas), log.bytes)
            for key, log in sorted(self._documents.items(), key=_by_name)
        ]

    def document(self, key: Key) -> DocumentLog | None:
        """The applied document itself (for repair: a peer pulls it); do not mutate it."""
        return self._documents.get(key)

    # -- repair ------------------------------------------------------------------------------

    def summary(self) -> dict[Key, tuple[int, bytes]]:
        """Each applied document's head seq and digest."""
        return {key: (log.head, self._digests[key]) for key, log in self._documents.items()}

    def digest(self) -> bytes:
        """One digest of every applied document (names, heads, digests), in name order."""
        state = hashlib.blake2b(digest_size=DIGEST_BYTES, person=_PARTITION_PERSON)
        for key, log in sorted(self._documents.items(), key=_by_name):
            state.update(_encode((key, log.head, self._digests[key])))
        return state.digest()

    def install(
        self, index: int, term: int, documents: Mapping[Key, DocumentLog]
    ) -> list[Completion[T]]:
        """Replace the state by `documents` (copied), the state as of (index, term) pulled
        from peers; pending writes fail with NOT_LEADER (a leader never installs: this one
        stopped leading, and whether its writes are in the state pulled is unknown)."""
        assert index >= self.applied_index, (index, self.applied_index)
        completions = self._forget_pending(
            BraidError(
                NOT_LEADER,
                f"this replica replaced its state by its peers' as of index {index} while the "
                "write was pending: it may or may not have been applied",
            )
        )
        self._documents = {key: copy_log(log) for key, log in documents.items()}
        self._digests = {key: document_digest(log) for key, log in self._documents.items()}
        self.applied_index = index
        self.applied_term = term
        return completions


def _by_name(item: tuple[Key, DocumentLog]) -> tuple[str, str]:
    return item[0].space, item[0].key
