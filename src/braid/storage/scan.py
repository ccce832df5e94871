"""One scan of a store directory that decides both `open` and `braid verify`.

`scan_store` reads (never writes) the directory, the log and the applied state's header row
and judges what the files say of each other. Its verdict is what opening will do:

- **clean**: open as it is;
- **repairable**: a read-write open repairs it first, losing nothing acknowledged (a torn
  tail from a crash, a spare segment that is not a zeroed file, an applied state that is
  missing while the log is whole from lsn 1 and rebuilds it); a read-only open reads
  around it without repairing;
- **damaged**: open refuses with `scan.error` (WAL_CORRUPT for a log that lost records or
  was damaged, STORE_ACCESS for a path braid cannot use, APPLIED_STATE_CORRUPT or
  STORE_FORMAT for an applied state it cannot read).

What a single node can detect and what it cannot is listed in the README ("What a single
node detects"); anti-entropy between replicas is what repairs damage.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from braid.errors import STORE_ACCESS, STORE_NOT_FOUND, WAL_CORRUPT, BraidError
from braid.runtime.disk import RealDisk
from braid.storage.applied import AppliedState
from braid.storage.logfiles import (
    SPARE_NAME,
    LogAnalysis,
    LogVerdict,
    access_error,
    analyze_log,
    spare_problem,
)

APPLIED_FILE = "applied.sqlite3"
WAL_DIRECTORY = "wal"
LOCK_FILE = "LOCK"

# What a directory may hold before it is a store: what opening creates first, and the
# directory a fresh file system's root holds. A log directory or applied state (SQLite's
# `-wal` and `-shm` beside it included) is a store, or its remains, for the scan to judge.
_STORE_ENTRIES = frozenset({LOCK_FILE, WAL_DIRECTORY, APPLIED_FILE, "lost+found"})
_FOREIGN_NAMES_SHOWN_MAX = 3


class StoreVerdict(enum.StrEnum):
    """What opening the store will do (see the module text)."""

    CLEAN = "clean"
    REPAIRABLE = "repairable"
    DAMAGED = "damaged"


CLEAN, REPAIRABLE, DAMAGED = StoreVerdict.CLEAN, StoreVerdict.REPAIRABLE, StoreVerdict.DAMAGED


@dataclass
class StoreScan:
    directory: Path
    exists: bool = True  # False: nothing there yet (a read-write open creates the store)
    log: LogAnalysis = field(default_factory=LogAnalysis)
    applied_lsn: int | None = None  # None: no applied state (missing or an empty file)
    rebuild_applied: bool = False  # the applied state is missing and the log rebuilds it
    repairs: list[str] = field(default_factory=list)  # what a read-write open repairs
    error: BraidError | None = None  # why the store cannot be opened

    @property
    def verdict(self) -> StoreVerdict:
        if self.error is not None:
            return DAMAGED
        return REPAIRABLE if self.repairs else CLEAN

    def raise_if_damaged(self) -> None:
        if self.error is not None:
            raise self.error


def scan_store(directory: Path) -> StoreScan:
    """Judge the store in `directory` without changing anything (see the module text)."""
    scan = StoreScan(directory)
    try:
        _scan(scan)
    except BraidError as error:
        scan.error = error
    return scan


def store_exists(directory: Path) -> bool:
    """Whether `directory` holds a store (a log directory or a non-empty applied state);
    a path braid cannot use as one is STORE_ACCESS."""
    if not _is_directory(directory):
        return False
    applied = directory / APPLIED_FILE
    return _is_directory(directory / WAL_DIRECTORY) or (
        _is_file(applied) and applied.stat().st_size > 0
    )


def refuse_foreign_directory(directory: Path) -> None:
    """STORE_NOT_FOUND for an existing directory that holds files and no store: braid makes
    a store only where there is nothing (a missing or empty directory), never among other
    files. A directory with a store's log or applied state is left to the scan to judge; a
    path that is not a directory, or cannot be listed, to the open (STORE_ACCESS)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    if any(name == WAL_DIRECTORY or name.startswith(APPLIED_FILE) for name in names):
        return
    foreign = [name for name in names if name not in _STORE_ENTRIES]
    if not foreign:
        return
    shown = ", ".join(foreign[:_FOREIGN_NAMES_SHOWN_MAX])
    if len(foreign) > _FOREIGN_NAMES_SHOWN_MAX:
        shown += f" and {len(foreign) - _FOREIGN_NAMES_SHOWN_MAX} more"
    raise BraidError(
        STORE_NOT_FOUND,
        f"{directory} is not a braid store: it holds other files ({shown}); braid makes a "
        "new store only in a missing or empty directory",
    )


def _scan(scan: StoreScan) -> None:
    directory = scan.directory
    if not store_exists(directory):
        scan.exists = False
        return
    wal = directory / WAL_DIRECTORY
    applied = directory / APPLIED_FILE
    has_wal = _is_directory(wal)
    has_applied = _is_file(applied) and applied.stat().st_size > 0
    if has_wal:
        scan.log = analyze_log(wal)
        _check_spare(scan, wal / SPARE_NAME)
    if has_applied:
        state = AppliedState(applied, read_only=True)
        try:
            scan.applied_lsn = state.applied_lsn()
        finally:
            state.close()
    judge(scan, wal)


def judge(scan: StoreScan, wal: Path) -> None:
    """What the log (`scan.log`) and the applied state's lsn (`scan.applied_lsn`) say of
    each other: raises the damage, or notes the repairs (the simulator judges its store's
    files with this same rule)."""
    log = scan.log
    if log.verdict is LogVerdict.CORRUPT:
        assert log.problem_segment is not None
        raise BraidError(
            WAL_CORRUPT,
            f"{log.detail} (offset {log.problem_offset}); files preserved in {wal}",
        )
    if log.verdict is LogVerdict.TORN:
        scan.repairs.append(f"{log.detail}: truncated on open (a crash interrupted that write)")
    if not log.segments:
        if scan.applied_lsn is not None:
            raise BraidError(
                WAL_CORRUPT,
                f"{wal} holds no log segment, yet the store has an applied state "
                f"(at lsn {scan.applied_lsn}): the log was removed",
            )
        return
    records = log.records
    first = log.segments[0].header
    assert first is not None
    if scan.applied_lsn is None:
        if first.index != 1 or first.first_lsn != 1:
            raise BraidError(
                WAL_CORRUPT,
                f"{scan.directory / APPLIED_FILE} is missing and the log starts at lsn "
                f"{first.first_lsn} ({log.segments[0].path.name}): the documents "
                "checkpointed before it are lost",
            )
        scan.rebuild_applied = True
        scan.repairs.append(
            f"{APPLIED_FILE} is missing or empty: rebuilt on open from the log, which is "
            "whole from lsn 1"
        )
        return
    applied_lsn = scan.applied_lsn
    first_lsn = records[0].lsn if records else first.first_lsn
    last_lsn = records[-1].lsn if records else first.first_lsn - 1
    if first_lsn > applied_lsn + 1 or last_lsn < applied_lsn:
        raise BraidError(
            WAL_CORRUPT,
            f"the log holds lsn {first_lsn}..{last_lsn} but the applied state is at "
            f"{applied_lsn}: records are missing; files preserved in {wal}",
        )


def _check_spare(scan: StoreScan, spare: Path) -> None:
    try:
        mode = os.lstat(spare).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise access_error(spare, error, "cannot examine") from None
    if not stat.S_ISREG(mode):
        raise BraidError(STORE_ACCESS, f"{spare} is not a regular file; remove it")
    # Damage only (a spare of another size is no damage), and not its contents: reading
    # it whole on every open costs a segment's bytes; the writer checks them in the
    # background and makes it again if they are not zero.
    try:
        problem = spare_problem(RealDisk(spare.parent), spare.name, contents=False)
    except OSError as error:
        raise access_error(spare, error, "cannot read") from None
    if problem is not None:
        scan.repairs.append(f"{spare.name} {problem}: made again on open (it holds no data)")


def _is_directory(path: Path) -> bool:
    """Whether `path` is a directory; a path that exists but is not one is STORE_ACCESS."""
    return _exists_as(path, stat.S_ISDIR, "a directory")


def _is_file(path: Path) -> bool:
    """Whether `path` is a regular file; a path that exists but is not one is STORE_ACCESS."""
    return _exists_as(path, stat.S_ISREG, "a regular file")


def _exists_as(path: Path, kind: Callable[[int], bool], name: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as error:
        raise access_error(path, error, "cannot examine") from None
    if not kind(mode):
        raise BraidError(STORE_ACCESS, f"{path} is not {name}")
    return True
