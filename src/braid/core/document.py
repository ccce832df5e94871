"""One document's delta log and the rules of DESIGN §1, as a pure data structure.

Every engine keeps its documents as `DocumentLog`s and asks them to check a request before
it is made durable, then to apply it. Checking never mutates; applying never fails (its
input was checked), so a write-ahead log can record exactly what is applied and replay it.

Compaction folds the oldest deltas into one whose redo is their composed patch (null
markers kept) and whose undo is gone: rewinding into it fails with REWIND_PAST_COMPACTED.

A document's size (`DocumentLog.bytes`, the sum of `update_bytes` over its retained deltas)
is kept at most `limits.document_bytes_max` by every write, compaction included, so every
answer about it fits a response frame (the argument is in limits.py, "Documents"); depth is
bounded when each update is validated (model.py). Both are checked here, before anything is
logged, so every engine enforces them and no reader ever meets a document past them.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from braid import limits
from braid.errors import (
    DOCUMENT_EXISTS,
    DOCUMENT_TOO_LARGE,
    EMPTY_PATCH,
    HEAD_PATCH_PAST_COMPACTED,
    HEAD_SEQ_OFF,
    INVALID_ARGUMENT,
    MALFORMED_JSON,
    REWIND_PAST_COMPACTED,
    SEQ_BEYOND_HEAD,
    SNAPSHOT_MISMATCH,
    SNAPSHOT_SEQ_INVALID,
    UPDATES_NOT_CONTIGUOUS,
    BraidError,
)
from braid.model import (
    ComputeMethod,
    DocumentChange,
    JsonValue,
    Update,
    apply_patch,
    compose,
    diff,
    parse_object,
    same_json,
    to_json,
    validate_update,
)

COMPACTED_KIND = "compacted"
SEQ_MAX = 2**63 - 1  # validate_update keeps every seq_end below 2**63


class Fold(msgspec.Struct, frozen=True, array_like=True):
    """The effect of a snapshot: the first `count` deltas become `delta`."""

    count: int
    delta: Update
    exact: bool


def update_bytes(update: Update) -> int:
    return 64 + len(update.redo) + len(update.undo) + len(update.who) + len(update.request)


def updates_bytes(updates: Sequence[Update]) -> int:
    if len(updates) == 1:  # the common case, without a generator
        return update_bytes(updates[0])
    return sum(update_bytes(update) for update in updates)


def check_initialize(update: Update) -> None:
    validate_update(update)
    size = update_bytes(update)
    if size > limits.document_bytes_max:
        raise _too_large(f"initialize with an update of {size} bytes")


def check_patch_size(updates: Sequence[Update]) -> int:
    """Refuse a patch (already through `check_updates`) that no document could hold;
    return its size in `update_bytes`."""
    size = updates_bytes(updates)
    if size > limits.document_bytes_max:
        raise _too_large(f"a patch of {size} bytes")
    return size


def _too_large(what: str) -> BraidError:
    return BraidError(
        DOCUMENT_TOO_LARGE,
        f"{what} would take the document past {limits.document_bytes_max} bytes (counted "
        "as the characters of its retained deltas' redo, undo, who and request, plus 64 per "
        "delta); nothing was written. Compact old deltas with snapshot, or spread the data "
        "over several documents",
    )


def check_updates(updates: Sequence[Update]) -> None:
    """Validate a patch's updates on their own (fields, JSON, contiguity)."""
    if not isinstance(updates, (list, tuple)) or not updates:
        raise BraidError(EMPTY_PATCH, "patch needs a non-empty list of updates")
    if len(updates) > limits.updates_per_patch_max:
        raise BraidError(
            INVALID_ARGUMENT, f"at most {limits.updates_per_patch_max} updates per patch call"
        )
    previous_end: int | None = None
    for update in updates:
        validate_update(update)
        if previous_end is not None and update.seq_begin != previous_end + 1:
            raise BraidError(
                UPDATES_NOT_CONTIGUOUS,
                f"update starts at {update.seq_begin} but the previous one ended at {previous_end}",
            )
        previous_end = update.seq_end


def check_seq_argument(seq: int) -> None:
    if type(seq) is not int or seq < 0:
        raise BraidError(INVALID_ARGUMENT, f"seq must be a non-negative integer, got {seq!r}")


def check_seq_in_range(seq: int) -> None:
    """`check_seq_argument`, and refuse a seq past every possible head (a client checks
    this before sending: such a number does not fit the wire). The codes are the ones an
    engine gives: INVALID_ARGUMENT, and SEQ_BEYOND_HEAD since every head is below 2**63."""
    check_seq_argument(seq)
    if seq > SEQ_MAX:
        raise BraidError(
            SEQ_BEYOND_HEAD, f"seq {seq} is beyond the head seq of every document (< 2**63)"
        )


def check_compute_arguments(method: ComputeMethod, seq: int) -> None:
    """What a client checks of compute's arguments before sending them."""
    check_seq_in_range(seq)
    if not isinstance(method, ComputeMethod):
        raise BraidError(INVALID_ARGUMENT, f"unknown compute method {method!r}")


def check_snapshot_arguments(seq: int, document: str, history: int) -> None:
    """Check snapshot's arguments on their own (every engine, and a client before sending)."""
    check_seq_argument(seq)
    if type(history) is not int or history < 0:
        raise BraidError(INVALID_ARGUMENT, f"history must be >= 0, got {history!r}")
    if type(document) is not str:
        raise BraidError(
            MALFORMED_JSON, f"snapshot document must be JSON text, got {type(document).__name__}"
        )
    if len(document) > limits.json_bytes_max:
        raise BraidError(
            INVALID_ARGUMENT,
            f"snapshot document of {len(document)} characters; the limit is "
            f"{limits.json_bytes_max}",
        )


class DocumentLog:
    """The deltas of one document, oldest first, and its head seq."""

    __slots__ = ("_head_cache", "bytes", "compacted_exact", "compacted_through", "deltas")

    def __init__(
        self,
        deltas: list[Update],
        compacted_through: int = 0,
        compacted_exact: bool = True,
    ) -> None:
        assert deltas, "a document has at least one delta"
        self.deltas = deltas
        self.compacted_through = compacted_through
        self.compacted_exact = compacted_exact
        self.bytes = sum(update_bytes(update) for update in deltas)
        self._head_cache: str | None = None

    @property
    def head(self) -> int:
        return self.deltas[-1].seq_end

    # -- checks (never mutate) ------------------------------------------------------------

    @staticmethod
    def refuse_initialize_existing() -> BraidError:
        return BraidError(DOCUMENT_EXISTS, "initialize on a key that already has a document")

    def check_patch(self, updates: Sequence[Update]) -> int:
        """Check a patch whose updates already passed `check_updates`; returns its size in
        `update_bytes` (hand it to `append`, which then need not count it again)."""
        first = updates[0].seq_begin
        if first != self.head + 1:
            raise BraidError(
                HEAD_SEQ_OFF, f"patch starts at seq {first}, but the head is {self.head}"
            )
        size = updates_bytes(updates)
        if self.bytes + size > limits.document_bytes_max:
            raise _too_large(f"a patch of {size} bytes onto {self.bytes}")
        return size

    # -- mutations (inputs were checked) --------------------------------------------------

    def append(self, updates: Sequence[Update], size: int | None = None) -> None:
        """Append checked updates; `size` is what `check_patch` returned for them."""
        assert updates[0].seq_begin == self.head + 1
        self.deltas.extend(updates)
        self.bytes += updates_bytes(updates) if size is None else size
        self._head_cache = None

    def apply_fold(self, fold: Fold) -> None:
        assert 2 <= fold.count <= len(self.deltas)
        assert self.deltas[fold.count - 1].seq_end == fold.delta.seq_end
        removed = self.deltas[: fold.count]
        self.deltas[: fold.count] = [fold.delta]
        self.bytes += update_bytes(fold.delta) - sum(update_bytes(update) for update in removed)
        self.compacted_through = fold.delta.seq_end
        self.compacted_exact = fold.exact
        self._head_cache = None

    # -- reads ----------------------------------------------------------------------------

    def get(self) -> DocumentChange:
        if self._head_cache is None:
            self._head_cache = to_json(self._document_through(self.head))
        return DocumentChange(self._head_cache, self.head, len(self.deltas))

    def compute(self, method: ComputeMethod, seq: int) -> DocumentChange:
        check_seq_argument(seq)
        if seq > self.head:
            raise BraidError(SEQ_BEYOND_HEAD, f"seq {seq} is beyond the head seq {self.head}")
        if method is ComputeMethod.HEAD_PATCH:
            return self._head_patch(seq)
        if method is ComputeMethod.REWIND:
            return self._rewind(seq)
        raise BraidError(INVALID_ARGUMENT, f"unknown compute method {method!r}")

    def _head_patch(self, seq: int) -> DocumentChange:
        newer = [update for update in self.deltas if update.seq_end > seq]
        patch: JsonValue = {}
        exact = True
        for update in newer:
            patch, step_exact = compose(patch, parse_object(update.redo, "stored redo"))
            exact = exact and step_exact
        if seq == 0 and not (exact and self.compacted_exact):
            # Before the first delta the document is {}: the exact answer is the document.
            patch = self._document_through(self.head)
        elif seq < self.compacted_through:
            if not (exact and self.compacted_exact):
                raise BraidError(
                    HEAD_PATCH_PAST_COMPACTED,
                    f"seq {seq} lies inside history compacted through {self.compacted_through}",
                )
        elif not exact:
            patch = diff(self._document_through(seq), self._document_through(self.head))
        return DocumentChange(to_json(patch), self.head, len(newer))

    def _rewind(self, seq: int) -> DocumentChange:
        if seq < self.compacted_through:
            raise BraidError(
                REWIND_PAST_COMPACTED,
                f"cannot rewind to {seq}: history is compacted through {self.compacted_through}",
            )
        newer = [update for update in self.deltas if update.seq_end > seq]
        landed = max((u.seq_end for u in self.deltas if u.seq_end <= seq), default=0)
        patch: JsonValue = {}
        exact = True
        for update in reversed(newer):
            patch, step_exact = compose(patch, parse_object(update.undo, "stored undo"))
            exact = exact and step_exact
        if not exact:
            patch = diff(self._document_through(self.head), self._document_through(landed))
        return DocumentChange(to_json(patch), landed, len(newer))

    def _document_through(self, seq: int) -> JsonValue:
        """The document after every delta ending at or before `seq`, exactly."""
        document: JsonValue = {}
        for update in self.deltas:
            if update.seq_end > seq:
                break
            document = apply_patch(document, parse_object(update.redo, "stored redo"))
        return document

    # -- compaction -----------------------------------------------------------------------

    def plan_fold(self, seq: int, document: str, history: int) -> Fold | None:
        """Check a snapshot request and say what it folds (None: nothing to fold)."""
        check_snapshot_arguments(seq, document, history)
        if seq > self.head:
            raise BraidError(SEQ_BEYOND_HEAD, f"seq {seq} is beyond the head seq {self.head}")
        boundary = [index for index, update in enumerate(self.deltas) if update.seq_end == seq]
        if not boundary:
            raise BraidError(SNAPSHOT_SEQ_INVALID, f"no delta ends at seq {seq}")
        given = parse_object(document, "snapshot document")
        if not same_json(given, self._document_through(seq)):
            raise BraidError(
                SNAPSHOT_MISMATCH, f"the document given differs from the stored one at {seq}"
            )
        count = min(boundary[0] + 1, len(self.deltas) - history)
        if count < 2:
            return None
        fold = self._fold_first(count)
        # The folded redo is re-encoded JSON and can be longer than the redos it replaces
        # (limits.py: "1e15" becomes "1000000000000000.0"), so compaction is checked too.
        removed = sum(update_bytes(update) for update in self.deltas[:count])
        size = self.bytes - removed + update_bytes(fold.delta)
        if size > limits.document_bytes_max:
            raise _too_large(f"compacting {count} deltas into {update_bytes(fold.delta)} bytes")
        return fold

    def _fold_first(self, count: int) -> Fold:
        folded = self.deltas[:count]
        patch: JsonValue = {}
        exact = self.compacted_exact if self.compacted_through else True
        for update in folded:
            patch, step_exact = compose(patch, parse_object(update.redo, "stored redo"))
            exact = exact and step_exact
        delta = Update(
            seq_begin=folded[0].seq_begin,
            seq_end=folded[-1].seq_end,
            redo=to_json(patch),
            undo="{}",
            active=folded[-1].active,
            asset_bytes=sum(update.asset_bytes for update in folded),
            kind=COMPACTED_KIND,
        )
        return Fold(count=count, delta=delta, exact=exact)
