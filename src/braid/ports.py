"""The ports: the small interfaces through which braid's pure core meets the world.

Each port has a real adapter (`braid.runtime.disk.RealDisk`, `braid.storage.applied`'s
SQLite) and a simulated one (`braid.sim`), and one contract suite (`tests/contract/`) runs
against both, so the simulator proves the same behaviour the real node relies on (DESIGN
§4): the disk the log is written on (`Disk`) and the applied state (`AppliedStore`). The
clock, the transport and the archive come with the first code that needs them (replication's
drivers and the cold tier): a port nobody calls would be a guess.

Disk paths are strings relative to the port's root directory, with "/" between parts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from braid.core.document import DocumentLog
from braid.core.wal.ops import Op
from braid.model import DocumentInfo, Key


class Disk(Protocol):
    """Files as a write-ahead log needs them, with durability explicit.

    A write is durable only once `sync` of its file returned; a file created, renamed or
    removed is durable only once `sync_directory` of its directory returned. A crash may
    lose anything not yet durable, and may tear the last write of a file at any byte.
    A failed `sync` is fatal for the data it covered (it is never retried: the pages it
    failed to write may be gone). A write to a full disk raises OSError(ENOSPC) having
    written nothing.
    """

    def list(self, directory: str) -> list[str]:
        """The names in `directory`, sorted."""
        ...

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int: ...

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """The file's bytes from `offset` (`length` of them, or to the end) as the system
        sees them now, durable or not."""
        ...

    def create(self, path: str, size: int, *, synced: bool = True) -> None:
        """A new file of `size` zero bytes (its blocks allocated), synced — or, with
        `synced=False`, durable only at the caller's next `sync` of it (one sync then
        covers the zeros and what was written since); its name is durable after
        `sync_directory`. Raises FileExistsError if `path` exists."""
        ...

    def write(self, path: str, offset: int, data: bytes | memoryview) -> None:
        """Write `data` at `offset` (not durable until `sync`)."""
        ...

    def sync(self, path: str) -> None:
        """Make every write to `path` so far durable."""
        ...

    def open_synced(self, path: str) -> None:
        """Get `path` ready for `write_synced` now, so that a file that cannot be written
        (permissions, a read-only file system) raises its OSError here, not at a write."""
        ...

    def write_synced(self, path: str, offset: int, data: bytes | memoryview) -> int:
        """Write a prefix of `data` at `offset`, durable when this returns (one system call
        where the system allows: O_DSYNC); returns how many bytes were written. Only the
        log's batches are written so, and a failure is as fatal as a failed `sync`."""
        ...

    def rename(self, source: str, target: str) -> None:
        """Atomically give `source` the name `target` (durable after `sync_directory`)."""
        ...

    def remove(self, path: str) -> None: ...

    def make_directory(self, path: str) -> None:
        """A new, empty directory (durable after `sync_directory` of its parent)."""
        ...

    def sync_directory(self, directory: str) -> None:
        """Make the creations, renames and removals in `directory` so far durable."""
        ...

    def close(self) -> None:
        """Let go of whatever the adapter holds open (nothing written is affected)."""
        ...


class AppliedStore(Protocol):
    """The applied state: every document's deltas as of a log position (`applied_lsn`).

    `checkpoint` applies operations in log order and records the lsn it applied through,
    atomically and durably: after a crash the store holds all of a checkpoint or none of it.
    SQLite's atomicity is trusted for the real adapter; braid's use of it is what is tested.
    """

    def applied_lsn(self) -> int: ...

    def load(self, key: Key) -> DocumentLog | None:
        """The document as checkpointed (a copy the caller may change), or None."""
        ...

    def inventory(self) -> Iterator[DocumentInfo]: ...

    def checkpoint(self, operations: Sequence[Op], through_lsn: int) -> None: ...

    def close(self) -> None: ...
