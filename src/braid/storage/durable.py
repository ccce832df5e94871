"""The durable engine: write-ahead log + applied state + a bounded document cache.

A write is checked against the document (pure `DocumentLog` rules), framed into the log's
open batch, applied to the cached document, and acknowledged when the batch's fsync returns.
Reads of a document wait for its last write to be durable, so nothing is ever returned that
a crash could take back. The documents and their cache are `braid.storage.documents`, the
log's files `braid.storage.logfiles`, the rules between them `braid.core.apply`: this
module drives them with the event loop, threads and timers (the crash search in
`braid.sim.store` drives the same parts from a seed).

A checkpoint (in its own thread) applies durable operations to the applied state, records
the lsn, and then releases log segments at or below it. On open the store replays the log
after the recorded lsn and checkpoints at once, so reopening costs one log tail.

Opening runs `scan_store` (the same scan `braid verify` runs) and refuses a damaged store
with its code. The store directory itself is locked (`flock` on the directory, which cannot
be unlinked or swapped out from under its holder): exclusively by a read-write open, shared
by a read-only one. A read-only open (`read_only=True`, and what every read-only command
uses) writes nothing: it replays the log tail in memory, repairs nothing, and refuses
writes with STORE_READ_ONLY.

A full disk is an operating condition, not a failure: a write the log cannot take fails with
DISK_FULL (retryable) and is reverted, together with every write logged after it (the
documents they touched are reloaded from what is durable); a checkpoint that cannot be
written is logged, counted and retried. Reads keep working, and writes resume by
themselves once there is room.

Directory layout: `LOCK` (who holds the store, for people; the lock is on the directory),
`applied.sqlite3`, `wal/seg-*.wal`, `wal/spare.tmp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from braid import limits
from braid.core.apply import ApplyRules
from braid.core.document import DocumentLog, check_initialize, check_updates
from braid.errors import (
    STORE_CLOSED,
    STORE_LOCKED,
    STORE_NOT_FOUND,
    STORE_READ_ONLY,
    BraidError,
)
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.runtime.disk import RealDisk
from braid.runtime.histogram import CHECKPOINT_SECONDS_BOUNDS, Histogram
from braid.storage.api import DocumentHistory
from braid.storage.applied import AppliedState
from braid.storage.documents import Documents
from braid.storage.logfiles import LogFiles, access_error
from braid.storage.scan import (
    APPLIED_FILE,
    LOCK_FILE,
    WAL_DIRECTORY,
    StoreScan,
    refuse_foreign_directory,
    scan_store,
    store_exists,
)
from braid.storage.wal import WalWriter

log = logging.getLogger("braid.store")


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
        read_only: bool = False,
    ) -> DurableEngine:
        """Open the store in `directory` (creating it when `create` and absent).

        `read_only` opens an existing store for reading only: nothing on disk is written,
        writes fail with STORE_READ_ONLY, and a writer holding the store is STORE_LOCKED.
        """
        self = object.__new__(cls)
        await self._open(Path(directory), config or DurableConfig(), create, read_only)
        return self

    async def _open(
        self, directory: Path, config: DurableConfig, create: bool, read_only: bool
    ) -> None:
        self.directory = directory
        self.config = config
        self.read_only = read_only
        self._closed = False
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._checkpoint_lock = asyncio.Lock()
        self.checkpoints = 0
        self.checkpoint_seconds_total = 0.0
        self.checkpoint_failures = 0
        self.checkpoint_seconds = Histogram(CHECKPOINT_SECONDS_BOUNDS)
        self._wal: WalWriter | None = None
        if not store_exists(directory):
            if read_only or not create:
                raise BraidError(STORE_NOT_FOUND, f"no braid store at {directory}")
            refuse_foreign_directory(directory)
            _make_store_directory(directory)
        # Locked before anything is judged: a writer holding the store may be mid-write.
        self._lock_fd = _lock_directory(directory, shared=read_only)
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="braid-checkpoint")
        applied: AppliedState | None = None
        files: LogFiles | None = None
        try:
            scan = scan_store(directory)
            if not scan.exists and (read_only or not create):
                raise BraidError(STORE_NOT_FOUND, f"no braid store at {directory}")
            scan.raise_if_damaged()
            self.scan = scan
            if not read_only:
                _note_holder(directory)
                files = self._prepare_for_writing(scan)
            applied_path = directory / APPLIED_FILE
            if read_only and scan.applied_lsn is None:
                applied = None  # rebuilt from the log in memory below
            else:
                applied = AppliedState(applied_path, read_only=read_only)
            self._applied = applied
            applied_lsn = applied.applied_lsn() if applied is not None else 0
            self._rules = ApplyRules(applied_lsn, config.checkpoint_records)
            self._documents = Documents(
                applied, self._rules, config.cache_bytes, directory / WAL_DIRECTORY
            )
            replayed = self._documents.recover(scan.log.records)
            self.report = OpenReport(replayed, bool(scan.repairs), "; ".join(scan.repairs))
            if files is not None:
                try:
                    self._wal = WalWriter(files, scan.log, self._rules.applied_lsn + 1)
                except OSError as error:
                    path = Path(error.filename or directory / WAL_DIRECTORY)
                    raise access_error(path, error, "cannot open the log at") from None
                self._wal.on_rollback = self._documents.revert_from
                if self._rules.pending:
                    await self._checkpoint_now()
        except BaseException:
            self._checkpointer.shutdown()
            if applied is not None:
                applied.close()
            if files is not None and self._wal is None:
                files.close()
            os.close(self._lock_fd)
            raise

    def _prepare_for_writing(self, scan: StoreScan) -> LogFiles:
        """Repair what the scan found repairable and create what a new store lacks; every
        step here is one a crash may interrupt and the next open redo."""
        wal = self.directory / WAL_DIRECTORY
        try:
            wal.mkdir(exist_ok=True)
            files = LogFiles(RealDisk(wal), wal, self.config.segment_bytes)
            scan.log = files.prepare(scan.log)
            if scan.rebuild_applied:
                (self.directory / APPLIED_FILE).unlink(missing_ok=True)
        except OSError as error:
            raise access_error(
                Path(error.filename or wal), error, "cannot prepare the store at"
            ) from None
        for repair in scan.repairs:
            log.warning("%s: %s", self.directory, repair)
        return files

    # -- writes -------------------------------------------------------------------------------

    def _check_open(self) -> WalWriter:
        """Before a write: the store is open, writable, and its log takes writes. (On every
        write: the checks are written out rather than calling the helpers below.)"""
        wal = self._wal
        if self._closed or wal is None:
            self._check_readable()
            return self._writable_wal()
        wal.check_writable()
        return wal

    def _check_readable(self) -> None:
        if self._closed:
            raise BraidError(STORE_CLOSED, f"the store at {self.directory} is closed")

    def _writable_wal(self) -> WalWriter:
        if self._wal is None:
            raise BraidError(STORE_READ_ONLY, f"the store at {self.directory} is open read-only")
        return self._wal

    def _after_log(self, future: asyncio.Future[None]) -> asyncio.Future[None]:
        """A write was logged (pending); the caller awaits the returned durability future
        (its own record's, so a cancelled caller disturbs nobody else)."""
        # A checkpoint needs a look only once one is due or no timer is set yet.
        if self._rules.due or self._checkpoint_timer is None:
            self._maybe_checkpoint()
        return future

    async def initialize(self, key: Key, update: Update) -> None:
        check_initialize(update)
        wal = self._writable_wal()
        if wal.full:
            await wal.wait_for_room()
        wal = self._check_open()
        await self._after_log(self._documents.initialize(key, update, wal))

    async def patch(self, key: Key, updates: Sequence[Update]) -> None:
        check_updates(updates)
        wal = self._wal
        if wal is not None and wal.full:
            await wal.wait_for_room()
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
        wal = self._wal
        if wal is not None and wal.full:
            return None
        return self._append(key, updates, encoded)

    def _append(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None]:
        wal = self._check_open()
        return self._after_log(self._documents.patch(key, updates, wal, encoded))

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        wal = self._writable_wal()
        if wal.full:
            await wal.wait_for_room()
        log = await self._readable(key)
        fold = log.plan_fold(seq, document, history)
        if fold is None:
            return 0
        wal = self._check_open()
        # Nothing awaited since _readable returned `log`: nothing could replace it.
        assert self._documents.cache[key].log is log
        await self._after_log(self._documents.fold(key, fold, wal))
        return fold.count - 1

    async def delete(self, key: Key) -> None:
        wal = self._writable_wal()
        if wal.full:
            await wal.wait_for_room()
        wal = self._check_open()
        await self._after_log(self._documents.delete(key, wal))

    # -- reads --------------------------------------------------------------------------------

    def _readable_now(self, key: Key, *, settled: bool = True) -> DocumentLog | None:
        """The document; with `settled`, None while a write to it is still syncing (never
        hand out what a crash could take back). Raises DOCUMENT_NOT_FOUND when absent."""
        self._check_readable()
        wal = self._wal
        durable_lsn = wal.durable_lsn if settled and wal is not None else None
        return self._documents.readable(key, durable_lsn)

    async def _readable(self, key: Key) -> DocumentLog:
        log = self._readable_now(key)
        if log is None:
            await self._writable_wal().sync()
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

    async def history(self, key: Key) -> DocumentHistory:
        log = await self._readable(key)
        return DocumentHistory(list(log.deltas), log.compacted_through, log.compacted_exact)

    async def inventory(self) -> list[DocumentInfo]:
        self._check_readable()
        if self._wal is None:
            return self._documents.inventory_with_pending()
        await self._drain()
        with contextlib.suppress(BraidError):  # a failed checkpoint is logged and counted
            await self._checkpoint_now()
        if self._rules.pending:  # the checkpoint failed: answer from memory too
            return self._documents.inventory_with_pending()
        assert self._applied is not None
        return list(self._applied.inventory())

    def verify_documents(self) -> tuple[list[tuple[str, str]], int]:
        """Read every document of the applied state against its checksums (for `braid
        verify`): the damaged ones with why, and how many documents were checked."""
        if self._applied is None:
            return [], 0
        damaged = [(str(p.key or self.directory), p.detail) for p in self._applied.verify()]
        return damaged, self._applied.document_count()

    async def close(self, key: Key | None = None) -> None:
        if key is not None:
            self._documents.forget(key)
            return
        if self._closed:
            return
        self._closed = True
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
        wal = self._wal
        if wal is not None:
            await self._close_log(wal)
        self._checkpointer.shutdown(wait=True)
        if self._applied is not None:
            self._applied.close()
        os.close(self._lock_fd)

    async def _close_log(self, wal: WalWriter) -> None:
        """Make what is pending durable and checkpoint it. A checkpoint that fails here is
        logged, not raised: every acknowledged write is in the log, which the next open
        replays, and the close itself succeeds."""
        with contextlib.suppress(BraidError):
            await wal.sync()
        if self._checkpoint_task is not None:
            # Wait for it without taking on its outcome (logged by the task itself); a
            # cancellation of this close still propagates.
            await asyncio.wait([self._checkpoint_task])
        if self.config.checkpoint_on_close and not wal.failed:
            with contextlib.suppress(BraidError):
                await self._checkpoint_now()
        await wal.close()

    async def _drain(self) -> None:
        """Wait until every write issued so far is durable."""
        await self._writable_wal().sync()

    # -- figures for metrics ----------------------------------------------------------------

    @property
    def log_failed(self) -> bool:
        """The write-ahead log failed (a write or fsync error): every write and read is
        refused with WAL_FAILED until the store is reopened."""
        return self._wal is not None and self._wal.failed

    def figures(self) -> dict[str, float]:
        """Counters and gauges for the metrics endpoint (cheap: no I/O)."""
        wal = self._wal
        figures = {
            "checkpoints_total": self.checkpoints,
            "checkpoint_failures_total": self.checkpoint_failures,
            "checkpoint_seconds_total": self.checkpoint_seconds_total,
            "applied_lsn": self._rules.applied_lsn,
            "pending_operations": len(self._rules.pending),
            "cached_documents": len(self._documents.cache),
            "cached_bytes": self._documents.cache_bytes,
        }
        if wal is not None:
            figures |= {
                "wal_records_total": wal.records_appended,
                "wal_batches_total": wal.batches_synced,
                "wal_sync_seconds_total": wal.sync_seconds_total,
                "wal_disk_full_total": wal.disk_full_total,
                "wal_segments": wal.segment_count(),
                "wal_durable_lsn": wal.durable_lsn,
                "wal_failed": float(wal.failed),
            }
        return figures

    def histograms(self) -> dict[str, Histogram]:
        """Distributions for the metrics endpoint, by figure name: checkpoint durations,
        and the log's batch sync durations and records per batch (a writable store)."""
        found = {"checkpoint_duration_seconds": self.checkpoint_seconds}
        wal = self._wal
        if wal is not None:
            found |= {
                "wal_sync_duration_seconds": wal.sync_seconds,
                "wal_batch_records": wal.batch_records,
            }
        return found

    # -- checkpoints ----------------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        if self._checkpoint_task is not None and not self._checkpoint_task.done():
            return
        if self._rules.due:
            self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoint())
        elif self._checkpoint_timer is None and self._rules.pending:
            self._checkpoint_timer = asyncio.get_running_loop().call_later(
                self.config.checkpoint_interval_seconds, self._on_checkpoint_timer
            )

    def _on_checkpoint_timer(self) -> None:
        self._checkpoint_timer = None
        if self._closed or not self._rules.pending:
            return
        if self._checkpoint_task is None or self._checkpoint_task.done():
            self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        with contextlib.suppress(BraidError):  # logged and counted by _checkpoint_locked
            await self._checkpoint_now()

    async def _checkpoint_now(self) -> None:
        """Apply every durable pending operation, then release log segments.

        Serialized: two checkpoints running at once would apply the same prefix of the
        pending operations twice and then drop operations neither applied.
        """
        async with self._checkpoint_lock:
            await self._checkpoint_locked()

    async def _checkpoint_locked(self) -> None:
        wal = self._writable_wal()
        assert self._applied is not None
        checkpoint = self._rules.begin(wal.durable_lsn)
        if checkpoint is None:
            return
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            await loop.run_in_executor(
                self._checkpointer,
                self._applied.checkpoint,
                checkpoint.operations,
                checkpoint.through_lsn,
            )
        except BaseException as error:
            self._rules.failed(checkpoint)
            if isinstance(error, BraidError):
                self._checkpoint_failed(error)
            raise
        took = time.perf_counter() - started
        self.checkpoint_seconds_total += took
        self.checkpoint_seconds.observe(took)
        self._rules.done(checkpoint)
        self.checkpoints += 1
        if not wal.failed:
            try:
                await wal.release_through(checkpoint.through_lsn)
            except OSError as error:  # the segments are released again after the next one
                log.warning("%s: releasing log segments failed: %s", self.directory, error)
        self._documents.evict()

    def _checkpoint_failed(self, error: BraidError) -> None:
        """A checkpoint could not be written (a full disk, most often): the operations stay
        pending and pinned, the log keeps them, and the timer tries again."""
        self.checkpoint_failures += 1
        log.warning(
            "%s: checkpoint failed (%d so far; retried in %.0f s): %s",
            self.directory,
            self.checkpoint_failures,
            self.config.checkpoint_interval_seconds,
            error,
        )
        if self._checkpoint_timer is None and not self._closed:
            self._checkpoint_timer = asyncio.get_running_loop().call_later(
                self.config.checkpoint_interval_seconds, self._on_checkpoint_timer
            )


def _make_store_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise access_error(directory, error, "cannot create the store directory") from None


def _lock_directory(directory: Path, *, shared: bool) -> int:
    """Lock the store directory itself (a LOCK file could be unlinked and recreated while
    held, letting a second process in): exclusively to write, shared to read."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise access_error(directory, error, "cannot open the store directory") from None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _holder(directory)
        raise BraidError(STORE_LOCKED, f"{directory} is open in another process{holder}") from None
    return fd


def _note_holder(directory: Path) -> None:
    """Write who holds the store into LOCK, for people (the lock is on the directory)."""
    with contextlib.suppress(OSError):
        (directory / LOCK_FILE).write_text(f"pid {os.getpid()}\n")


_SERVING = "serving"  # LOCK's line naming the node's address: "serving HOST:PORT [tls]"


def note_serving(directory: Path, address: str, *, tls: bool) -> None:
    """Add to LOCK the address a node serves this store's documents at (for readers that
    find the store held: they can read through the node). For people and readers only: the
    lock is on the directory, and a later writer's LOCK replaces the line."""
    suffix = " tls" if tls else ""
    with contextlib.suppress(OSError):
        (directory / LOCK_FILE).write_text(f"pid {os.getpid()}\n{_SERVING} {address}{suffix}\n")


@dataclass(frozen=True)
class ServingNode:
    """What LOCK says of the node holding a store: its pid, address, and whether it speaks
    TLS. The address a wildcard listen (0.0.0.0, ::) is reached at on this machine."""

    pid: int
    address: str
    tls: bool


def serving_node(directory: Path) -> ServingNode | None:
    """The node LOCK names as holding the store in `directory`, or None (no LOCK, or its
    holder is not a node). Meaningful while the store is locked: its holder wrote LOCK."""
    try:
        lines = (directory / LOCK_FILE).read_text(errors="replace").splitlines()
        pid = int(lines[0].split()[1])
        words = lines[1].split()
    except (OSError, ValueError, IndexError):
        return None
    if len(words) < 2 or words[0] != _SERVING:
        return None
    host, _, port = words[1].rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]"}.get(host, host)
    return ServingNode(pid, f"{host}:{port}", "tls" in words[2:])


def _holder(directory: Path) -> str:
    try:
        text = (directory / LOCK_FILE).read_text(errors="replace").strip()
    except OSError:
        return ""
    return f" ({text[:64]})" if text else ""
