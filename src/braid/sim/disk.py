"""A simulated `braid.ports.Disk`: files in memory, where a crash loses what was not durable.

Each file keeps its durable bytes and, in order, the writes made since its last sync; each
directory keeps its durable entries and, in order, the entry changes (create, rename,
remove, make_directory) since its last sync. What the system sees now is the durable state
with every pending change applied. `crash(rng)` keeps, for every file, a random prefix of
its pending writes with the last one kept torn at a random byte, and for every directory a
random prefix of its pending entry changes; everything else is lost. All choices come from
the `random.Random` given, so a seed replays exactly. With `scattered_tears`, the last kept
write is torn, half the time, as a disk may tear it instead: any of its 512-byte sectors
written and the others not, in no order.

Faults, armed by the simulation: `fail_next_sync(path)` makes the next sync of a file raise
OSError(EIO), and every later sync of it until a crash (fsyncgate: what it covered may or
may not be on disk, and must never be reported durable); `capacity_bytes` makes a write or
create that would allocate past it raise OSError(ENOSPC) having written nothing;
`crash_after(count)` makes the count-th change from now (a create, write, sync, rename,
remove, ...) raise `SimulatedCrash` instead of returning: the machine stopped there, in the
middle of whatever sequence of operations the code was making. A write it stops in is
pending (the crash that follows may keep it, torn or whole); any other change is not made.
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field

_Entries = dict[str, int]  # name → inode, for one directory


class SimulatedCrash(Exception):
    """The simulated machine stopped (`SimDisk.crash_after`): call `crash`, then reopen."""


@dataclass
class _File:
    durable: bytearray
    current: bytearray
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    sync_broken: bool = False  # a sync failed: nothing pending becomes durable any more


@dataclass
class _Directory:
    durable: _Entries = field(default_factory=dict)
    current: _Entries = field(default_factory=dict)
    pending: list[tuple[str, str, int]] = field(default_factory=list)  # (op, name, inode)


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


class SimDisk:
    """`Disk` in memory; the root directory ("") always exists."""

    def __init__(self, capacity_bytes: int | None = None, *, scattered_tears: bool = False) -> None:
        self.capacity_bytes = capacity_bytes
        self.scattered_tears = scattered_tears
        self._files: dict[int, _File] = {}
        self._directories: dict[str, _Directory] = {"": _Directory()}
        self._next_inode = 1
        self._failing: set[str] = set()
        self._crash_countdown: int | None = None
        self.syncs = 0  # counters, for the simulation's reports
        self.crashes = 0
        self.changes = 0

    # -- the Disk port --------------------------------------------------------------------

    def list(self, directory: str) -> list[str]:
        return sorted(self._directory(directory).current)

    def exists(self, path: str) -> bool:
        parent, name = _split(path)
        if path in self._directories:
            return True
        folder = self._directories.get(parent)
        return folder is not None and name in folder.current

    def size(self, path: str) -> int:
        return len(self._file(path).current)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        current = self._file(path).current
        end = len(current) if length is None else offset + length
        return bytes(current[offset:end])

    def create(self, path: str, size: int, *, synced: bool = True) -> None:
        self._step()
        parent, name = _split(path)
        folder = self._directory(parent)
        if name in folder.current or path in self._directories:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        self._allocate(size)
        inode = self._new_inode()
        if synced:
            self._files[inode] = _File(bytearray(size), bytearray(size))  # synced at once
        else:  # the zeros are one pending write, durable at the next sync (or torn)
            self._files[inode] = _File(bytearray(), bytearray(size), [(0, bytes(size))])
        self._change(folder, "create", name, inode)

    def make_directory(self, path: str) -> None:
        self._step()
        parent, name = _split(path)
        folder = self._directory(parent)
        if name in folder.current or path in self._directories:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        self._directories[path] = _Directory()
        self._change(folder, "mkdir", name, 0)

    def write(self, path: str, offset: int, data: bytes | memoryview) -> None:
        file = self._file(path)
        self._allocate(max(0, offset + len(data) - len(file.current)))
        _apply(file.current, offset, data)
        file.pending.append((offset, bytes(data)))
        self._step()  # a crash here leaves the write pending

    def open_synced(self, path: str) -> None:
        self._file(path)  # it exists, and is a file

    def write_synced(self, path: str, offset: int, data: bytes | memoryview) -> int:
        self.write(path, offset, data)
        self.sync(path)
        return len(data)

    def sync(self, path: str) -> None:
        self._step()
        file = self._file(path)
        self.syncs += 1
        if path in self._failing:
            self._failing.discard(path)
            file.sync_broken = True
            raise OSError(errno.EIO, "simulated sync failure", path)
        if file.sync_broken:
            raise OSError(errno.EIO, "sync after a failed sync", path)
        for offset, data in file.pending:
            _apply(file.durable, offset, data)
        file.pending.clear()

    def rename(self, source: str, target: str) -> None:
        self._step()
        source_parent, source_name = _split(source)
        target_parent, target_name = _split(target)
        assert source_parent == target_parent, "renames stay within one directory"
        folder = self._directory(source_parent)
        inode = folder.current.get(source_name)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", source)
        self._change(folder, "remove", source_name, inode)
        self._change(folder, "create", target_name, inode)

    def remove(self, path: str) -> None:
        self._step()
        parent, name = _split(path)
        folder = self._directory(parent)
        inode = folder.current.get(name)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        self._change(folder, "remove", name, inode)

    def sync_directory(self, directory: str) -> None:
        self._step()
        folder = self._directory(directory)
        self.syncs += 1
        for change in folder.pending:
            _change_entries(folder.durable, change)
        folder.pending.clear()

    def close(self) -> None:
        pass

    # -- faults ---------------------------------------------------------------------------

    def fail_next_sync(self, path: str) -> None:
        self._failing.add(path)

    def crash_after(self, count: int | None) -> None:
        """Stop the machine at the count-th change from now (1: the next); None: never."""
        assert count is None or count >= 1
        self._crash_countdown = count

    def crash(self, rng: random.Random) -> None:
        """Lose what was not durable: each file and directory keeps a random prefix of its
        pending changes (a file's last kept write torn at a random byte)."""
        self.crashes += 1
        self._crash_countdown = None
        self._failing.clear()
        for _, folder in sorted(self._directories.items()):
            kept = rng.randint(0, len(folder.pending))
            folder.current = dict(folder.durable)
            for change in folder.pending[:kept]:
                _change_entries(folder.current, change)
            folder.durable = dict(folder.current)
            folder.pending.clear()
        for inode in sorted(self._files):
            file = self._files[inode]
            kept = rng.randint(0, len(file.pending))
            for number, (offset, data) in enumerate(file.pending[:kept]):
                if number < kept - 1:
                    _apply(file.durable, offset, data)
                elif self.scattered_tears and rng.random() < 0.5:
                    for start, piece in _sectors(offset, data):
                        if rng.random() < 0.5:
                            _apply(file.durable, start, piece)
                else:
                    _apply(file.durable, offset, data[: rng.randint(0, len(data))])
            file.current = bytearray(file.durable)
            file.pending.clear()
            file.sync_broken = False
        self._forget_unreachable()

    # -- inside ---------------------------------------------------------------------------

    def _step(self) -> None:
        """Count a change; raise SimulatedCrash when it is the one the machine stops at."""
        self.changes += 1
        countdown = self._crash_countdown
        if countdown is not None:
            if countdown <= 1:
                self._crash_countdown = 0  # every change after the stop fails too
                raise SimulatedCrash(f"the machine stopped at change {self.changes}")
            self._crash_countdown = countdown - 1

    def _directory(self, path: str) -> _Directory:
        folder = self._directories.get(path)
        if folder is None:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        return folder

    def _file(self, path: str) -> _File:
        parent, name = _split(path)
        if path in self._directories:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        inode = self._directory(parent).current.get(name)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return self._files[inode]

    def _new_inode(self) -> int:
        inode = self._next_inode
        self._next_inode += 1
        return inode

    def _change(self, folder: _Directory, op: str, name: str, inode: int) -> None:
        change = (op, name, inode)
        _change_entries(folder.current, change)
        folder.pending.append(change)

    def _allocate(self, size: int) -> None:
        if self.capacity_bytes is None or size == 0:
            return
        used = sum(len(file.current) for file in self._files.values())
        if used + size > self.capacity_bytes:
            raise OSError(errno.ENOSPC, "no space left on the simulated disk")

    def _forget_unreachable(self) -> None:
        """After a crash: directories whose creation was lost, and files no name reaches."""
        live = {""}
        for path in sorted(self._directories, key=len):
            parent, name = _split(path)
            if path and parent in live and name in self._directories[parent].current:
                live.add(path)
        self._directories = {path: self._directories[path] for path in live}
        reachable = {
            inode
            for folder in self._directories.values()
            for name, inode in folder.current.items()
            if inode
        }
        self._files = {inode: self._files[inode] for inode in reachable}


SECTOR_BYTES = 512  # the unit a disk writes whole


def _sectors(offset: int, data: bytes) -> list[tuple[int, bytes]]:
    """A write cut at the disk's sector boundaries: (offset, bytes) for each piece."""
    pieces = []
    start = offset
    end = offset + len(data)
    while start < end:
        stop = min(end, (start // SECTOR_BYTES + 1) * SECTOR_BYTES)
        pieces.append((start, data[start - offset : stop - offset]))
        start = stop
    return pieces


def _apply(target: bytearray, offset: int, data: bytes | memoryview) -> None:
    if offset > len(target):
        target.extend(bytes(offset - len(target)))
    target[offset : offset + len(data)] = data


def _change_entries(entries: _Entries, change: tuple[str, str, int]) -> None:
    op, name, inode = change
    if op == "remove":
        entries.pop(name, None)
    else:  # create, mkdir (inode 0: a directory)
        entries[name] = inode
