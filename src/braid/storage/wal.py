"""The write-ahead log's writer: group commit on threads and futures.

`append` frames a record into the open batch at once and returns that record's own future.
The writer thread (`braid-wal`) takes the whole open batch whenever the disk is free, adds
its commit marker, and writes it with one synced write (O_DSYNC: durable when it returns,
like write + fdatasync); then it hands the acknowledgements to the event loop and takes the
next batch at once. While one batch is being written the next one fills, so the batch size
follows the load, and a busy event loop delays acknowledgements but never the disk. A lone
small record at low load is written by the event loop's own thread instead (see `_kick`).
A failed write is fatal for the log: every waiter gets WAL_FAILED and the log takes no more
writes (a failed sync may have dropped dirty pages; retrying could report success for data
that is gone).

The rules (which records share a batch, its commit marker, where it goes, which waiters it
releases) are the pure `braid.core.wal.batcher.Batcher`; the file operations are
`braid.storage.logfiles.LogFiles` (the simulator runs both without threads). This module
owns only the threads, the locks and the futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from braid import limits
from braid.core.wal.batcher import Batch, Batcher
from braid.core.wal.record import RecordType
from braid.errors import DISK_FULL, WAL_FAILED, BraidError
from braid.runtime.histogram import BATCH_RECORDS_BOUNDS, SYNC_SECONDS_BOUNDS, Histogram

# The log's files and their analysis, for the modules that import them from here.
from braid.storage.logfiles import SPARE_NAME as SPARE_NAME
from braid.storage.logfiles import LogAnalysis as LogAnalysis
from braid.storage.logfiles import LogFiles, NothingWritten
from braid.storage.logfiles import LogVerdict as LogVerdict
from braid.storage.logfiles import access_error as access_error
from braid.storage.logfiles import analyze_log as analyze_log
from braid.storage.logfiles import list_segments as list_segments

log = logging.getLogger("braid.store")
_INLINE_BYTES_MAX = limits.wal_inline_sync_bytes_max


class _Refused(Exception):
    """A batch the full disk refused (`NothingWritten`), with the waiters given back."""

    def __init__(self, cause: OSError, dropped: list[asyncio.Future[None]]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.dropped = dropped


class _Fatal(Exception):
    """A write or sync failed otherwise: the log is closed for writing; `waiters` (the open
    batch's and every barrier) fail with the batch's own."""

    def __init__(self, cause: BaseException, waiters: list[asyncio.Future[None]]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.waiters = waiters


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _fail_all(futures: list[asyncio.Future[None]], failure: BraidError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(failure)
            future.exception()  # retrieved here: an abandoned waiter must not log it


class WalWriter:
    """Appends records to the log with group commit: the driver of the pure `Batcher`.

    `append`, `sync`, `wait_for_room` and `close` are for the event loop's thread. The
    writes and fsyncs happen in the writer thread (`braid-wal`), which takes whatever the
    open batch holds whenever the disk is free: it goes from one fsync straight to the
    next without waiting for the event loop, so a busy loop delays acknowledgements but
    never leaves the disk idle. The batcher, shared with the writer thread, is guarded by
    `_lock`; the log's files belong to whoever is writing a batch (only the writer thread
    rotates: an inline batch fits the active segment).
    """

    def __init__(self, files: LogFiles, analysis: LogAnalysis, next_lsn: int) -> None:
        """Write the clean log `analysis` found (and `files.prepare` made writable) through
        `files`, from `next_lsn` on (the lsn after the applied state's) at the least."""
        self._files = files
        self._directory = files.directory
        self._spare_thread: threading.Thread | None = None
        first_lsn, first_batch, layout = files.start(analysis, next_lsn)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        # Guarded by _lock (shared with the writer thread):
        self._batcher: Batcher[asyncio.Future[None]] = Batcher(first_lsn, first_batch, layout)
        self._idle = False  # the writer thread is waiting for work
        # Called on the event loop's thread when a batch the full disk refused was given
        # back, with its first lsn: the engine reverts what it applied from there on.
        self.on_rollback: Callable[[int], None] = lambda first_lsn: None
        # Event-loop thread only:
        self._loop = asyncio.get_running_loop()
        self._kick_scheduled = False
        self._drained = asyncio.Event()
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        self._housekeeping = ThreadPoolExecutor(1, thread_name_prefix="braid-wal-release")
        # Plain counters for metrics (read at scrape time; nothing on the hot path but an add).
        self.records_appended = 0
        self.batches_synced = 0
        self.sync_seconds_total = 0.0
        self.sync_seconds = Histogram(SYNC_SECONDS_BOUNDS)  # per batch: its write and sync
        self.batch_records = Histogram(BATCH_RECORDS_BOUNDS)  # per batch: records in it
        self.disk_full_total = 0  # batches refused for want of space (then retried later)
        self._thread = threading.Thread(target=self._run, name="braid-wal", daemon=True)
        self._thread.start()
        self._start_spare()

    @property
    def next_lsn(self) -> int:
        return self._batcher.next_lsn

    @property
    def durable_lsn(self) -> int:
        return self._batcher.durable_lsn

    @property
    def failed(self) -> bool:
        return self._batcher.failure is not None

    @property
    def full(self) -> bool:
        """Whether the open batch is at its bound; writers then `await wait_for_room()`."""
        return self._batcher.full

    def check_writable(self) -> None:
        batcher = self._batcher
        if batcher.failure is not None or batcher.rolling_back:
            batcher.check()

    async def wait_for_room(self) -> None:
        """Wait while the open batch is full (bounded memory under overload)."""
        while self.full and not self.failed:
            self._drained.clear()
            await self._drained.wait()
        self.check_writable()

    def append(self, kind: RecordType, payload: bytes) -> tuple[int, asyncio.Future[None]]:
        """Frame a record into the open batch; its own future resolves once it is durable.

        Each record has its own future so that cancelling one waiter cannot disturb the
        others that share its fsync.
        """
        future = self._loop.create_future()
        with self._lock:
            lsn = self._batcher.append(kind, payload, future)
        self.records_appended += 1
        if not self._kick_scheduled:
            # At the end of this loop iteration, so the records appended in it share a batch.
            self._kick_scheduled = True
            self._loop.call_soon(self._kick)
        return lsn, future

    async def sync(self) -> None:
        """Wait until every record appended so far is durable (or the log failed). While a
        batch refused for want of space is being given back, wait until it has been (the
        engine reverts what it applied first), so nothing refused is read in between."""
        future = self._loop.create_future()
        with self._lock:
            if self._batcher.barrier(future):
                return
        await future

    # -- handing batches to the disk -------------------------------------------------------

    def _kick(self) -> None:
        """Start the open batch: wake the writer thread, or write a lone small record here.

        A batch of one record means the load is low; handing it to the writer thread and
        back costs two thread wake-ups, more than the synced write itself on a fast disk.
        Blocking the loop for one write is then the cheaper choice. Larger batches, any
        that would start a new segment, and any once `close` has begun go to the writer
        thread.
        """
        self._kick_scheduled = False
        with self._lock:
            batcher = self._batcher
            if batcher.failure is not None:
                return
            # Not once close has begun: the writer thread, woken by it, must do the rest.
            if self._idle and not batcher.closing and batcher.lone_record(_INLINE_BYTES_MAX):
                batch = batcher.take()
            else:
                if batcher.ready:  # else the writer takes it when its current batch is done
                    self._wakeup.notify()
                return
        seconds, error, released = self._write_sealed(batch, complete=True)
        if isinstance(error, _Refused):
            self._rolled_back(batch.first_lsn, error.dropped, error.cause)
        elif error is not None:
            self._fail(error, batch.waiters)
        else:
            self._completed(seconds, released, batch)

    def _write_sealed(
        self, batch: Batch[asyncio.Future[None]], *, complete: bool = False
    ) -> tuple[float, _Refused | _Fatal | None, list[asyncio.Future[None]]]:
        """Write a taken batch (either thread): seconds taken, or the error, which is
        recorded in the batcher at once (no more appends, or the batch given back). With
        `complete` (the event loop's own thread writing), the batch is also completed in
        the batcher under the same lock, and the waiters it releases are returned."""
        started = time.perf_counter()
        try:
            self._files.write(batch, self._batcher, self._lock)
        except NothingWritten as refused:
            with self._lock:  # give the batch back, and every record appended after it
                dropped = self._batcher.refused(batch)
            return 0.0, _Refused(refused.cause, dropped), []
        except BaseException as error:  # any other failure is fatal for the log
            with self._lock:
                refused_waiters = self._batcher.failed(str(error))
            return 0.0, _Fatal(error, refused_waiters), []
        released: list[asyncio.Future[None]] = []
        with self._lock:
            if complete:
                released = self._batcher.written_and_completed(batch)
            else:
                self._batcher.written(batch)
        return time.perf_counter() - started, None, released

    def _rolled_back(
        self, first_lsn: int, dropped: list[asyncio.Future[None]], cause: OSError
    ) -> None:
        """A batch the full disk refused was given back (event-loop thread): the engine
        reverts what it applied from lsn `first_lsn` on, then its writers get DISK_FULL and
        every barrier is met (all that is left in the log is durable)."""
        self.disk_full_total += 1
        try:
            self.on_rollback(first_lsn)
        finally:
            with self._lock:
                released = self._batcher.reverted()
        failure = BraidError(
            DISK_FULL,
            f"the disk is full: the write-ahead log in {self._directory} could not take the "
            f"write ({cause.strerror}); nothing of it was logged",
        )
        _fail_all(dropped, failure)
        _resolve_all(released)
        self._drained.set()

    def _complete(self, batch: Batch[asyncio.Future[None]], seconds: float) -> None:
        """A batch is durable (event-loop thread): release its writers and met barriers."""
        with self._lock:
            released = self._batcher.completed(batch)
        self._completed(seconds, released, batch)

    def _completed(
        self,
        seconds: float,
        released: list[asyncio.Future[None]],
        batch: Batch[asyncio.Future[None]],
    ) -> None:
        """Release the waiters a durable batch released (event-loop thread)."""
        self.sync_seconds_total += seconds
        self.batches_synced += 1
        self.sync_seconds.observe(seconds)
        self.batch_records.observe(batch.marker_lsn - batch.first_lsn)
        for future in released:
            if not future.done():
                future.set_result(None)
        self._drained.set()

    def _fail(self, fatal: _Fatal, batch_waiters: list[asyncio.Future[None]]) -> None:
        """The log failed (event-loop thread): every waiter gets WAL_FAILED."""
        failure = BraidError(WAL_FAILED, f"write or fsync of the log failed: {fatal.cause}")
        _fail_all([*batch_waiters, *fatal.waiters], failure)
        self._drained.set()

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        post = self._loop.call_soon_threadsafe
        try:
            while True:
                with self._lock:
                    batcher = self._batcher
                    while not batcher.ready and not (batcher.closing and not batcher.writing):
                        self._idle = True
                        self._wakeup.wait()
                    self._idle = False
                    if not batcher.ready:  # closing, and everything is written
                        post(self._stopped_ok)
                        return
                    batch = batcher.take()
                    rotating = batcher.placement(batch) is None
                if rotating and self._spare_thread is not None:
                    self._spare_thread.join()  # the rotation takes the spare it is making
                seconds, error, _ = self._write_sealed(batch)
                if rotating and error is None:
                    self._start_spare()  # the next rotation's, made while batches are written
                if isinstance(error, _Refused):
                    post(self._rolled_back, batch.first_lsn, error.dropped, error.cause)
                    continue
                if error is not None:
                    post(self._fail, error, batch.waiters)
                    post(self._stopped_ok)
                    return
                post(self._complete, batch, seconds)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            return

    def _stopped_ok(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)

    def _start_spare(self) -> None:
        self._spare_thread = threading.Thread(
            target=self._prepare_spare_quietly, name="braid-wal-spare", daemon=True
        )
        self._spare_thread.start()

    def _prepare_spare_quietly(self) -> None:
        # A failure here surfaces at the next rotation, which prepares the spare itself.
        with contextlib.suppress(OSError):
            self._files.prepare_spare()

    # -- segments no longer needed --------------------------------------------------------

    async def release_through(self, applied_lsn: int) -> int:
        """Delete segments whose every record is at or below applied_lsn (never the last)."""
        return await self._loop.run_in_executor(
            self._housekeeping, self._files.release_through, applied_lsn
        )

    def segment_count(self) -> int:
        return self._files.segment_count()

    async def close(self) -> None:
        """Write what is pending, then stop. Safe to call twice."""
        if not self._batcher.closing:
            with self._lock:
                self._batcher.closing = True
                self._wakeup.notify()
            await asyncio.shield(self._stopped)
            self._thread.join()
            if self._spare_thread is not None:
                self._spare_thread.join()
            self._housekeeping.shutdown(wait=True)
            self._files.close()
        else:
            await asyncio.shield(self._stopped)
