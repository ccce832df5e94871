"""The durable engine: write-ahead log + applied state + a bounded document cache.

A write is checked against the document (pure `DocumentLog` rules), framed into the log's
open batch, applied to the cached document, and acknowledged when the batch's fsync returns.
Reads of a document wait for its last write to be durable, so nothing is ever returned that
a crash could take back.

Documents with operations not yet checkpointed are *pinned* in the cache (the applied state
does not have them yet); others are evicted least-recently-used past
`limits.document_cache_bytes_max`. Deleted documents stay as pinned tombstones until their
delete is checkpointed.

A checkpoint (in its own thread) applies durable operations to the applied state, records
the lsn, and then releases log segments at or below it. On open the store replays the log
after the recorded lsn and checkpoints at once, so reopening costs one log tail.

Directory layout: `LOCK` (flock held while open), `applied.sqlite3`, `wal/seg-*.wal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec

from braid import limits
from braid.core.document import DocumentLog, check_initialize, check_updates
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp, decode_op, encode_op
from braid.core.wal.record import RecordType
from braid.errors import (
    DOCUMENT_NOT_FOUND,
    STORE_CLOSED,
    STORE_LOCKED,
    STORE_NOT_FOUND,
    WAL_CORRUPT,
    BraidError,
)
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.storage.applied import AppliedState
from braid.storage.wal import (
    WalWriter,
    analyze_log,
    raise_if_corrupt,
    repair_torn_tail,
)

APPLIED_FILE = "applied.sqlite3"


@dataclass(frozen=True)
class DurableConfig:
    segment_bytes: int = limits.wal_segment_bytes
    checkpoint_records: int = limits.checkpoint_records_max
    checkpoint_interval_seconds: float = limits.checkpoint_interval_seconds_max
    cache_bytes: int = limits.document_cache_bytes_max
    checkpoint_on_close: bool = True  # tests turn this off to leave a log-only store


@dataclass(frozen=True)
class OpenReport:
    """What opening found, for logs and `braid doc` output."""

    replayed_records: int
    torn_tail_repaired: bool
    detail: str


class _Entry:
    """A cached document (None: deleted, pending checkpoint) and the lsn of its newest write."""

    __slots__ = ("last_lsn", "log")

    def __init__(self, log: DocumentLog | None) -> None:
        self.log = log
        self.last_lsn = 0


class DurableEngine:
    def __init__(self) -> None:
        raise TypeError("use `await DurableEngine.open(directory)`")

    @classmethod
    async def open(
        cls,
        directory: str | os.PathLike[str],
        config: DurableConfig | None = None,
        *,
        create: bool = True,
    ) -> DurableEngine:
        self = object.__new__(cls)
        await self._open(Path(directory), config or DurableConfig(), create)
        return self

    async def _open(self, directory: Path, config: DurableConfig, create: bool) -> None:
        self.directory = directory
        self.config = config
        if not create and not (directory / APPLIED_FILE).is_file():
            raise BraidError(STORE_NOT_FOUND, f"no braid store at {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_directory(directory)
        self._cache: OrderedDict[Key, _Entry] = OrderedDict()
        self._cache_bytes = 0
        self._pending_ops: list[tuple[int, Op]] = []
        self._closed = False
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="braid-checkpoint")
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._checkpoint_lock = asyncio.Lock()
        self.checkpoints = 0
        self.checkpoint_seconds_total = 0.0
        applied: AppliedState | None = None
        try:
            self._applied = applied = AppliedState(directory / APPLIED_FILE)
            self._applied_through = self._applied.applied_lsn()
            self.report = self._recover(directory / "wal")
            self._wal = WalWriter(
                directory / "wal",
                self._analysis,
                self._applied.applied_lsn() + 1,
                config.segment_bytes,
            )
            del self._analysis
            if self._pending_ops:
                await self._checkpoint_now()
        except BaseException:
            self._checkpointer.shutdown()
            if applied is not None:
                applied.close()
            os.close(self._lock_fd)
            raise

    def _recover(self, wal_directory: Path) -> OpenReport:
        wal_directory.mkdir(exist_ok=True)
        analysis = analyze_log(wal_directory)
        raise_if_corrupt(analysis)
        repaired = analysis.verdict == "torn"
        detail = analysis.detail
        if repaired:
            repair_torn_tail(analysis, self.config.segment_bytes)
        applied_lsn = self._applied.applied_lsn()
        first = analysis.records[0].lsn if analysis.records else applied_lsn + 1
        last = analysis.records[-1].lsn if analysis.records else applied_lsn
        if first > applied_lsn + 1 or last < applied_lsn:
            raise BraidError(
                WAL_CORRUPT,
                f"the log holds lsn {first}..{last} but the applied state is at "
                f"{applied_lsn}: records are missing; files preserved in {wal_directory}",
            )
        replayed = 0
        for record in analysis.records:
            if record.lsn <= applied_lsn or record.type is RecordType.COMMIT:
                continue
            try:
                op = decode_op(record.type, record.payload)
                self._replay(op, record.lsn)
            except (msgspec.DecodeError, msgspec.ValidationError, BraidError, ValueError) as e:
                raise BraidError(
                    WAL_CORRUPT,
                    f"record lsn {record.lsn} in {wal_directory} cannot be applied: {e}",
                ) from None
            replayed += 1
        self._analysis = analysis
        return OpenReport(replayed, repaired, detail)

    def _replay(self, op: Op, lsn: int) -> None:
        """Apply a logged operation again; it was checked when first written."""
        entry = self._entry(op.key)
        if isinstance(op, InitOp):
            if entry is not None and entry.log is not None:
                raise DocumentLog.refuse_initialize_existing()
            self._install(op.key, DocumentLog([op.update]))
        else:
            if entry is None or entry.log is None:
                raise BraidError(DOCUMENT_NOT_FOUND, f"logged operation on missing {op.key}")
            if isinstance(op, PatchOp):
                entry.log.check_patch(op.updates)
                self._grow(entry, op.updates)
            elif isinstance(op, FoldOp):
                self._fold(entry, op)
            elif isinstance(op, DeleteOp):
                self._tombstone(op.key)
        self._note_pending(op, lsn)

    # -- cache ------------------------------------------------------------------------------

    def _entry(self, key: Key) -> _Entry | None:
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            return entry
        log = self._applied.load(key)
        if log is None:
            return None
        entry = _Entry(log)
        self._cache[key] = entry
        self._cache_bytes += log.bytes
        self._evict(keep=key)
        return entry

    def _install(self, key: Key, log: DocumentLog) -> _Entry:
        old = self._cache.pop(key, None)
        if old is not None and old.log is not None:
            self._cache_bytes -= old.log.bytes
        entry = _Entry(log)
        if old is not None:
            entry.last_lsn = old.last_lsn
        self._cache[key] = entry
        self._cache_bytes += log.bytes
        return entry

    def _tombstone(self, key: Key) -> None:
        entry = self._cache[key]
        assert entry.log is not None
        self._cache_bytes -= entry.log.bytes
        entry.log = None

    def _grow(self, entry: _Entry, updates: Sequence[Update]) -> None:
        assert entry.log is not None
        before = entry.log.bytes
        entry.log.append(updates)
        self._cache_bytes += entry.log.bytes - before

    def _fold(self, entry: _Entry, op: FoldOp) -> None:
        assert entry.log is not None
        before = entry.log.bytes
        entry.log.apply_fold(op.fold)
        self._cache_bytes += entry.log.bytes - before

    def _evict(self, keep: Key | None = None) -> None:
        """Drop least-recently-used unpinned documents until under the bound; never `keep`
        (the entry a caller is about to use)."""
        if self._cache_bytes <= self.config.cache_bytes:
            return
        applied = self._applied_through
        for key in list(self._cache):
            if self._cache_bytes <= self.config.cache_bytes:
                return
            entry = self._cache[key]
            if entry.last_lsn > applied or key == keep:
                continue  # pinned: not yet in the applied state, or in use
            del self._cache[key]
            if entry.log is not None:
                self._cache_bytes -= entry.log.bytes

    # -- writes -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BraidError(STORE_CLOSED, f"the store at {self.directory} is closed")
        self._wal.check_writable()

    def _note_pending(self, op: Op, lsn: int) -> None:
        entry = self._cache[op.key]
        entry.last_lsn = lsn
        self._pending_ops.append((lsn, op))

    def _after_log(self, op: Op, lsn: int, future: asyncio.Future[None]) -> asyncio.Future[None]:
        """Record the write as pending; the caller awaits the returned durability future
        (its own record's, so a cancelled caller disturbs nobody else)."""
        self._note_pending(op, lsn)
        # A checkpoint needs a look only once one is due or no timer is set yet.
        if (
            len(self._pending_ops) >= self.config.checkpoint_records
            or self._checkpoint_timer is None
        ):
            self._maybe_checkpoint()
        return future

    async def initialize(self, key: Key, update: Update) -> None:
        check_initialize(update)
        if self._wal.full:
            await self._wal.wait_for_room()
        self._check_open()
        entry = self._entry(key)
        if entry is not None and entry.log is not None:
            raise DocumentLog.refuse_initialize_existing()
        op = InitOp(key, update)
        kind, payload = encode_op(op)
        lsn, future = self._wal.append(kind, payload)
        self._install(key, DocumentLog([update]))
        await self._after_log(op, lsn, future)

    async def patch(self, key: Key, updates: Sequence[Update]) -> None:
        check_updates(updates)
        if self._wal.full:
            await self._wal.wait_for_room()
        await self._append(key, updates)

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        """`patch` without a coroutine, for the node server's hot path: checks and logs at
        once and returns the durability future, or None when it would have to wait for room
        in the log (then use `patch`).

        `encoded`, when given, is `PatchOp(key, updates)` already encoded (the node cuts it
        from the request's bytes): it is logged as is instead of encoding the updates again.
        """
        check_updates(updates)
        if self._wal.full:
            return None
        return self._append(key, updates, encoded)

    def _append(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None]:
        self._check_open()
        entry = self._entry(key)
        if entry is None or entry.log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        entry.log.check_patch(updates)
        op = PatchOp(key, tuple(updates))
        if encoded is None:
            encoded = encode_op(op)[1]
        lsn, future = self._wal.append(RecordType.PATCH, encoded)
        self._grow(entry, updates)
        return self._after_log(op, lsn, future)

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        if self._wal.full:
            await self._wal.wait_for_room()
        log = await self._readable(key)
        fold = log.plan_fold(seq, document, history)
        if fold is None:
            return 0
        self._check_open()
        entry = self._cache[key]
        if entry.log is not log:
            raise BraidError(DOCUMENT_NOT_FOUND, f"{key} changed during snapshot; retry")
        op = FoldOp(key, fold)
        kind, payload = encode_op(op)
        lsn, future = self._wal.append(kind, payload)
        self._fold(entry, op)
        await self._after_log(op, lsn, future)
        return fold.count - 1

    async def delete(self, key: Key) -> None:
        if self._wal.full:
            await self._wal.wait_for_room()
        self._check_open()
        entry = self._entry(key)
        if entry is None or entry.log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        op = DeleteOp(key)
        kind, payload = encode_op(op)
        lsn, future = self._wal.append(kind, payload)
        self._tombstone(key)
        await self._after_log(op, lsn, future)

    # -- reads --------------------------------------------------------------------------------

    def _readable_now(self, key: Key, *, settled: bool = True) -> DocumentLog | None:
        """The document; with `settled`, None while a write to it is still syncing (never
        hand out what a crash could take back). Raises DOCUMENT_NOT_FOUND when absent."""
        self._check_open()
        entry = self._entry(key)
        if settled and entry is not None and entry.last_lsn > self._wal.durable_lsn:
            return None
        if entry is None or entry.log is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        return entry.log

    async def _readable(self, key: Key) -> DocumentLog:
        log = self._readable_now(key)
        if log is None:
            await self._wal.sync()
            # Writes made while we waited are not this read's to wait for.
            log = self._readable_now(key, settled=False)
            assert log is not None
        return log

    async def get(self, key: Key) -> DocumentChange:
        return (await self._readable(key)).get()

    def get_nowait(self, key: Key) -> DocumentChange | None:
        """`get` without a coroutine: the answer when the document's writes are all durable
        (or it is absent: that raises DOCUMENT_NOT_FOUND), None when it would have to wait
        for durability (then use `get`)."""
        log = self._readable_now(key)
        return None if log is None else log.get()

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        return (await self._readable(key)).compute(method, seq)

    async def inventory(self) -> list[DocumentInfo]:
        self._check_open()
        await self._drain()
        await self._checkpoint_now()
        return list(self._applied.inventory())

    async def close(self, key: Key | None = None) -> None:
        if key is not None:
            entry = self._cache.get(key)
            if entry is not None and entry.last_lsn <= self._applied_through:
                del self._cache[key]
                if entry.log is not None:
                    self._cache_bytes -= entry.log.bytes
            return
        if self._closed:
            return
        self._closed = True
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
        with contextlib.suppress(BraidError):
            await self._drain()
        if self._checkpoint_task is not None:
            with contextlib.suppress(BaseException):
                await self._checkpoint_task
        if self.config.checkpoint_on_close and not self._wal.failed:
            await self._checkpoint_now()
        await self._wal.close()
        self._checkpointer.shutdown(wait=True)
        self._applied.close()
        os.close(self._lock_fd)

    async def _drain(self) -> None:
        """Wait until every write issued so far is durable."""
        await self._wal.sync()

    # -- figures for metrics ----------------------------------------------------------------

    def figures(self) -> dict[str, float]:
        """Counters and gauges for the metrics endpoint (cheap: no I/O)."""
        wal = self._wal
        return {
            "wal_records_total": wal.records_appended,
            "wal_batches_total": wal.batches_synced,
            "wal_sync_seconds_total": wal.sync_seconds_total,
            "wal_segments": wal.segment_count(),
            "wal_durable_lsn": wal.durable_lsn,
            "checkpoints_total": self.checkpoints,
            "checkpoint_seconds_total": self.checkpoint_seconds_total,
            "applied_lsn": self._applied_through,
            "pending_operations": len(self._pending_ops),
            "cached_documents": len(self._cache),
            "cached_bytes": self._cache_bytes,
        }

    # -- checkpoints ----------------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        if self._checkpoint_task is not None and not self._checkpoint_task.done():
            return
        due = len(self._pending_ops) >= self.config.checkpoint_records
        if due:
            self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoint())
        elif self._checkpoint_timer is None and self._pending_ops:
            self._checkpoint_timer = asyncio.get_running_loop().call_later(
                self.config.checkpoint_interval_seconds, self._on_checkpoint_timer
            )

    def _on_checkpoint_timer(self) -> None:
        self._checkpoint_timer = None
        if self._closed or not self._pending_ops:
            return
        if self._checkpoint_task is None or self._checkpoint_task.done():
            self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        with contextlib.suppress(BraidError):
            await self._checkpoint_now()

    async def _checkpoint_now(self) -> None:
        """Apply every durable pending operation, then release log segments.

        Serialized: two checkpoints running at once would apply the same prefix of the
        pending operations twice and then drop operations neither applied.
        """
        async with self._checkpoint_lock:
            await self._checkpoint_locked()

    async def _checkpoint_locked(self) -> None:
        durable = self._wal.durable_lsn
        count = 0
        while count < len(self._pending_ops) and self._pending_ops[count][0] <= durable:
            count += 1
        if count == 0:
            return
        batch = self._pending_ops[:count]
        through = batch[-1][0]
        operations = [op for _, op in batch]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        await loop.run_in_executor(
            self._checkpointer, self._applied.checkpoint, operations, through
        )
        self.checkpoint_seconds_total += time.perf_counter() - started
        del self._pending_ops[:count]
        self._applied_through = through
        self.checkpoints += 1
        if not self._wal.failed:
            await self._wal.release_through(through)
        self._evict()


def _lock_directory(directory: Path) -> int:
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BraidError(STORE_LOCKED, f"{directory} is open in another process") from None
    return fd
