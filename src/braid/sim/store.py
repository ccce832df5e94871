"""One node's store on a simulated disk, driven single-threaded: the durable engine's parts
without its threads.

`SimStore` runs the code the durable engine (`braid.storage.durable`) runs — the store scan's
judgement (`braid.storage.scan.judge`), the log's file operations and their analysis
(`braid.storage.logfiles.LogFiles`), the group-commit rules (`braid.core.wal.batcher`), the
documents with their cache, replay and revert (`braid.storage.documents`) and the apply
rules (`braid.core.apply`) — over a `SimDisk` and a `MemoryApplied`. What the engine does on
its threads and timers the simulation does as explicit steps, in an order it chooses:
`flush` (the writer thread takes the open batch and writes it), `checkpoint` (the
checkpoint thread, then the segment release), `prepare_spare` (the spare thread). Opening
is the engine's open: scan, judge, repair, replay, checkpoint what the log tail held.

A `Broken` variant (tests only) swaps one part for a deliberately wrong one, to show that
the crash search (`braid.sim.crash_search`) catches it.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass, field
from pathlib import Path

from braid.core.apply import ApplyRules
from braid.core.wal.batcher import Batcher
from braid.core.wal.ops import Op
from braid.core.wal.record import RecordType
from braid.errors import BraidError
from braid.ports import Disk
from braid.sim.applied import MemoryApplied
from braid.sim.disk import SimDisk
from braid.storage.documents import Documents
from braid.storage.logfiles import LogFiles, NothingWritten
from braid.storage.scan import StoreScan, judge

STORE = Path("sim-store")  # the paths errors name; the files are the SimDisk's
WAL = STORE / "wal"


class Broken(enum.Enum):
    """Deliberately wrong variants, each switched on only by a test that shows the crash
    search catches it."""

    ACK_BEFORE_DURABLE = "ack-before-durable"  # batches written without being synced
    CHECKPOINT_NOT_DURABLE = "checkpoint-not-durable"  # checkpoints take unsynced records
    RELEASE_UNAPPLIED = "release-unapplied"  # segments released past the applied lsn
    NO_DIRECTORY_SYNC = "no-directory-sync"  # a new segment's name is never made durable


class _BrokenDisk:
    """A Disk that forgets one duty, for `Broken` variants (everything else delegates)."""

    def __init__(self, disk: Disk, broken: Broken) -> None:
        self._disk = disk
        self._broken = broken

    def __getattr__(self, name: str) -> object:
        return getattr(self._disk, name)

    def write_synced(self, path: str, offset: int, data: bytes | memoryview) -> int:
        if self._broken is Broken.ACK_BEFORE_DURABLE:
            self._disk.write(path, offset, data)
            return len(data)
        return self._disk.write_synced(path, offset, data)

    def sync_directory(self, directory: str) -> None:
        if self._broken is not Broken.NO_DIRECTORY_SYNC:
            self._disk.sync_directory(directory)


@dataclass
class Machine:
    """What survives a crash of the simulated machine: its disk, and the applied state's
    committed transactions (None until the store's first open created it)."""

    disk: SimDisk
    applied: MemoryApplied | None = None


@dataclass
class SimConfig:
    segment_bytes: int
    checkpoint_records: int
    cache_bytes: int


@dataclass
class Flushed:
    """What one flush did: the lsns acknowledged (their batch is durable), or the lsns the
    full disk refused (given back: the writes failed, and were reverted)."""

    acknowledged: list[int] = field(default_factory=list)
    refused_from: int | None = None
    refused: list[int] = field(default_factory=list)


class SimStore:
    """The store, open for writing on `machine` (its disk is rooted at the log directory).

    Raises what opening the real store raises (a damaged store's BraidError, an OSError of
    the disk) and `SimulatedCrash` when the disk stops the machine; the caller crashes the
    disk and opens a new SimStore.
    """

    def __init__(self, machine: Machine, config: SimConfig, broken: Broken | None = None) -> None:
        disk = machine.disk
        self.disk = disk
        self.config = config
        self.broken = broken
        files_disk: Disk = disk if broken is None else _BrokenDisk(disk, broken)  # type: ignore[assignment]
        self.files = LogFiles(files_disk, WAL, config.segment_bytes)
        scan = StoreScan(STORE, log=self.files.analyze())
        applied = machine.applied
        scan.applied_lsn = None if applied is None else applied.applied_lsn()
        judge(scan, WAL)
        scan.raise_if_damaged()
        scan.log = self.files.prepare(scan.log)
        if applied is None or scan.rebuild_applied:
            # Created once the log exists, as the engine's is.
            applied = machine.applied = MemoryApplied()
        self.applied = applied
        self.repairs = scan.repairs
        self.rules = ApplyRules(applied.applied_lsn(), config.checkpoint_records)
        self.documents = Documents(applied, self.rules, config.cache_bytes, WAL)
        self.replayed = self.documents.recover(scan.log.records)
        first_lsn, first_batch, layout = self.files.start(scan.log, self.rules.applied_lsn + 1)
        self.batcher: Batcher[int] = Batcher(first_lsn, first_batch, layout)
        self.failed = False
        self.rotations = 0  # figures for the search's report
        self.released = 0
        if self.rules.pending:
            self.checkpoint()

    @property
    def last_lsn(self) -> int:
        """The newest lsn in the log (durable or not)."""
        return self.batcher.next_lsn - 1

    # -- the Appender the documents write through ------------------------------------------

    def append(self, kind: RecordType, payload: bytes) -> tuple[int, int]:
        lsn = self.batcher.append(kind, payload, self.batcher.next_lsn)
        return lsn, lsn

    def last_logged(self) -> tuple[int, Op]:
        return self.rules.pending[-1]

    # -- what the engine's threads do -----------------------------------------------------

    def flush(self) -> Flushed:
        """The writer thread's turn: take the open batch, write it, complete it."""
        batcher = self.batcher
        if not batcher.ready or self.failed:
            return Flushed()
        batch = batcher.take()
        last_index = batcher.layout.last_index
        try:
            self.files.write(batch, batcher, contextlib.nullcontext())
        except NothingWritten:
            dropped = batcher.refused(batch)
            self.documents.revert_from(batch.first_lsn)
            batcher.reverted()
            return Flushed(refused_from=batch.first_lsn, refused=dropped)
        except OSError as error:  # fatal for the log, as in the engine
            batcher.failed(str(error))
            self.failed = True
            raise
        self.rotations += batcher.layout.last_index - last_index
        return Flushed(acknowledged=batcher.written_and_completed(batch))

    def checkpoint(self) -> bool:
        """The checkpoint thread's turn, then the release of segments; False when there was
        nothing durable to apply or the applied state refused it (a full disk)."""
        durable_lsn = self.batcher.durable_lsn
        if self.broken is Broken.CHECKPOINT_NOT_DURABLE:
            durable_lsn = self.last_lsn
        checkpoint = self.rules.begin(durable_lsn)
        if checkpoint is None:
            return False
        try:
            self.applied.checkpoint(checkpoint.operations, checkpoint.through_lsn)
        except BraidError:
            self.rules.failed(checkpoint)
            return False
        self.rules.done(checkpoint)
        if not self.failed:
            through = checkpoint.through_lsn
            if self.broken is Broken.RELEASE_UNAPPLIED:
                through = self.last_lsn
            self.released += self.files.release_through(through)
        self.documents.evict()
        return True

    def prepare_spare(self) -> None:
        """The spare thread's turn."""
        with contextlib.suppress(OSError):  # the next rotation makes it (as in the engine)
            self.files.prepare_spare()
