"""The documents as the log has them: a bounded cache over the applied state, the writes
checked and logged, the log's tail replayed, and refused writes reverted.

A write is checked against the document (the pure `DocumentLog` rules), framed into the
log (any `Appender`: the real writer gives a future per record, the simulator a ticket),
applied to the cached document and recorded as pending in the `ApplyRules`. Documents with
operations not yet checkpointed are *pinned* in the cache (the applied state does not have
them yet); others are evicted least-recently-used past the cache bound. Deleted documents
stay as pinned tombstones until their delete is checkpointed.

No threads, files or clocks: the durable engine (`braid.storage.durable`) drives this on
the event loop, the crash search (`braid.sim.store`) from a seed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from braid.core.apply import ApplyRules
from braid.core.document import DocumentLog, Fold
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp, decode_op, encode_op
from braid.core.wal.record import Record, RecordType
from braid.errors import (
    APPLIED_STATE_CORRUPT,
    DISK_FULL,
    DOCUMENT_NOT_FOUND,
    STORE_ACCESS,
    WAL_CORRUPT,
    BraidError,
)
from braid.model import DocumentInfo, Key, Update
from braid.ports import AppliedStore

W_co = TypeVar("W_co", covariant=True)
W = TypeVar("W")

# Errors replaying the log can meet that are the applied state's or the disk's, not the log's.
_NOT_THE_LOGS_FAULT = (APPLIED_STATE_CORRUPT, STORE_ACCESS, DISK_FULL)


class Appender(Protocol[W_co]):
    """Where a write is logged: its record framed, its lsn and what tells its writer."""

    def append(self, kind: RecordType, payload: bytes) -> tuple[int, W_co]: ...


class Entry:
    """A cached document (None: deleted, pending checkpoint) and the lsn of its newest write."""

    __slots__ = ("last_lsn", "log")

    def __init__(self, log: DocumentLog | None) -> None:
        self.log = log
        self.last_lsn = 0


class Documents:
    """The cache, the pending operations (`rules`) and the applied state (`applied`: None
    for a read-only open of a store that has none yet, rebuilt from the log in memory)."""

    def __init__(
        self,
        applied: AppliedStore | None,
        rules: ApplyRules,
        cache_bytes_max: int,
        log_directory: Path,
    ) -> None:
        self.applied = applied
        self.rules = rules
        self.cache: OrderedDict[Key, Entry] = OrderedDict()
        self.cache_bytes = 0
        self._cache_bytes_max = cache_bytes_max
        self._log_directory = log_directory  # named in errors

    # -- the log's tail, on open ---------------------------------------------------------

    def recover(self, records: Iterable[Record]) -> int:
        """Replay the logged operations after the applied state's lsn; returns how many.
        A record that cannot be applied is WAL_CORRUPT (each was checked when written);
        a document that cannot be loaded keeps its own code."""
        applied_lsn = self.rules.applied_lsn
        replayed = 0
        for record in records:
            if record.lsn <= applied_lsn or record.type is RecordType.COMMIT:
                continue
            try:
                self._replay(decode_op(record.type, record.payload), record.lsn)
            except BraidError as error:
                if error.info in _NOT_THE_LOGS_FAULT:
                    # The document the record applies to cannot be loaded: the log is fine,
                    # its tail just cannot be replayed onto that document.
                    raise BraidError(
                        error.info,
                        f"{error.detail}; the log's record lsn {record.lsn} still has to be "
                        "applied to that document, so the store cannot open",
                    ) from None
                raise self._unappliable(record.lsn, error) from None
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as error:
                raise self._unappliable(record.lsn, error) from None
            replayed += 1
        return replayed

    def _unappliable(self, lsn: int, error: Exception) -> BraidError:
        return BraidError(
            WAL_CORRUPT,
            f"record lsn {lsn} in {self._log_directory} cannot be applied: {error}",
        )

    def _replay(self, op: Op, lsn: int) -> None:
        """Apply a logged operation again; it was checked when first written."""
        entry = self.entry(op.key)
        if isinstance(op, InitOp):
            if entry is not None and entry.log is not None:
                raise DocumentLog.refuse_initialize_existing()
            entry = self.install(op.key, DocumentLog([op.update]))
        else:
            if entry is None or entry.log is None:
                raise BraidError(DOCUMENT_NOT_FOUND, f"logged operation on missing {op.key}")
            if isinstance(op, PatchOp):
                entry.log.check_patch(op.updates)
                self._grow(entry, op.updates)
            elif isinstance(op, FoldOp):
                self._fold(entry, op)
            elif isinstance(op, DeleteOp):
                self._tombstone(entry)
        entry.last_lsn = lsn
        self.rules.logged(lsn, op)

    # -- writes --------------------------------------------------------------------------

    def initialize(self, key: Key, update: Update, log: Appender[W]) -> W:
        """Create `key` with its first update (checked by the caller: `check_initialize`)."""
        entry = self.entry(key)
        if entry is not None and entry.log is not None:
            raise DocumentLog.refuse_initialize_existing()
        op = InitOp(key, update)
        kind, payload = encode_op(op)
        lsn, waiter = log.append(kind, payload)
        self.install(key, DocumentLog([update])).last_lsn = lsn
        self.rules.logged(lsn, op)
        return waiter

    def patch(
        self,
        key: Key,
        updates: Sequence[Update],
        log: Appender[W],
        encoded: bytes | None = None,
    ) -> W:
        """Append `updates` (checked by the caller: `check_updates`) to `key`. `encoded`,
        when given, is `PatchOp(key, updates)` already encoded, logged as it is."""
        entry = self.entry(key)
        if entry is None or entry.log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        size = entry.log.check_patch(updates)
        op = PatchOp(key, tuple(updates))
        if encoded is None:
            encoded = encode_op(op)[1]
        lsn, waiter = log.append(RecordType.PATCH, encoded)
        document = entry.log
        document.append(updates, size)  # `_grow`, written out: this is every patch
        self.cache_bytes += size
        entry.last_lsn = lsn
        self.rules.logged(lsn, op)
        return waiter

    def fold(self, key: Key, fold: Fold, log: Appender[W]) -> W:
        """Fold `key`'s oldest deltas as planned (`DocumentLog.plan_fold` on its current
        copy: the caller checked it is still the cached one)."""
        entry = self.cache[key]
        op = FoldOp(key, fold)
        kind, payload = encode_op(op)
        lsn, waiter = log.append(kind, payload)
        self._fold(entry, op)
        entry.last_lsn = lsn
        self.rules.logged(lsn, op)
        return waiter

    def delete(self, key: Key, log: Appender[W]) -> W:
        entry = self.entry(key)
        if entry is None or entry.log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        op = DeleteOp(key)
        kind, payload = encode_op(op)
        lsn, waiter = log.append(kind, payload)
        self._tombstone(entry)
        entry.last_lsn = lsn
        self.rules.logged(lsn, op)
        return waiter

    def revert_from(self, first_lsn: int) -> None:
        """The log gave back every record from `first_lsn` on (the disk was full): drop
        those operations and rebuild the documents they touched from what is durable."""
        for key, remaining in self.rules.reverted(first_lsn).items():
            old = self.cache.pop(key, None)
            if old is not None and old.log is not None:
                self.cache_bytes -= old.log.bytes
            self._rebuild(key, remaining)

    def _rebuild(self, key: Key, operations: list[tuple[int, Op]]) -> None:
        """Cache `key` as the applied state holds it plus its durable pending operations."""
        entry = self.entry(key)
        for lsn, op in operations:
            if isinstance(op, InitOp):
                entry = self.install(key, DocumentLog([op.update]))
            elif entry is not None and entry.log is not None:
                if isinstance(op, PatchOp):
                    self._grow(entry, op.updates)
                elif isinstance(op, FoldOp):
                    self._fold(entry, op)
                elif isinstance(op, DeleteOp):
                    self._tombstone(entry)
            assert entry is not None, f"pending operation on {key}, absent from the store"
            entry.last_lsn = lsn

    # -- reads ---------------------------------------------------------------------------

    def readable(self, key: Key, durable_lsn: int | None) -> DocumentLog | None:
        """The document; given `durable_lsn`, None while a write to it is above it (never
        hand out what a crash could take back). Raises DOCUMENT_NOT_FOUND when absent."""
        entry = self.entry(key)
        if durable_lsn is not None and entry is not None and entry.last_lsn > durable_lsn:
            return None
        if entry is None or entry.log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        return entry.log

    def inventory_with_pending(self) -> list[DocumentInfo]:
        """The applied state's inventory, with the documents that pending (logged, not yet
        checkpointed) operations touched taken from memory; their byte count is the
        msgpack size of their deltas, as a checkpoint would store them."""
        applied = self.applied
        listed = {info.key: info for info in applied.inventory()} if applied else {}
        for key in self.rules.pending_keys():
            entry = self.cache.get(key)
            if entry is None or entry.log is None:
                listed.pop(key, None)
                continue
            deltas = entry.log.deltas
            size = len(msgspec.msgpack.encode(deltas))
            listed[key] = DocumentInfo(key, deltas[-1].seq_end, len(deltas), size)
        return sorted(listed.values(), key=lambda info: (info.key.space, info.key.key))

    # -- the cache -----------------------------------------------------------------------

    def entry(self, key: Key) -> Entry | None:
        entry = self.cache.get(key)
        if entry is not None:
            self.cache.move_to_end(key)
            return entry
        log = self.applied.load(key) if self.applied is not None else None
        if log is None:
            return None
        entry = Entry(log)
        self.cache[key] = entry
        self.cache_bytes += log.bytes
        self.evict(keep=key)
        return entry

    def install(self, key: Key, log: DocumentLog) -> Entry:
        old = self.cache.pop(key, None)
        if old is not None and old.log is not None:
            self.cache_bytes -= old.log.bytes
        entry = Entry(log)
        if old is not None:
            entry.last_lsn = old.last_lsn
        self.cache[key] = entry
        self.cache_bytes += log.bytes
        return entry

    def _tombstone(self, entry: Entry) -> None:
        assert entry.log is not None
        self.cache_bytes -= entry.log.bytes
        entry.log = None

    def _grow(self, entry: Entry, updates: Sequence[Update], size: int | None = None) -> None:
        assert entry.log is not None
        before = entry.log.bytes
        entry.log.append(updates, size)
        self.cache_bytes += entry.log.bytes - before

    def _fold(self, entry: Entry, op: FoldOp) -> None:
        assert entry.log is not None
        before = entry.log.bytes
        entry.log.apply_fold(op.fold)
        self.cache_bytes += entry.log.bytes - before

    def evict(self, keep: Key | None = None) -> None:
        """Drop least-recently-used unpinned documents until under the bound; never `keep`
        (the entry a caller is about to use)."""
        if self.cache_bytes <= self._cache_bytes_max:
            return
        pinned = self.rules.pinned
        for key in list(self.cache):
            if self.cache_bytes <= self._cache_bytes_max:
                return
            entry = self.cache[key]
            if pinned(entry.last_lsn) or key == keep:
                continue  # pinned: not yet in the applied state, or in use
            self.forget(key)

    def forget(self, key: Key) -> None:
        """Drop `key` from the cache unless it is pinned (it is loaded again when used)."""
        entry = self.cache.get(key)
        if entry is not None and not self.rules.pinned(entry.last_lsn):
            del self.cache[key]
            if entry.log is not None:
                self.cache_bytes -= entry.log.bytes
