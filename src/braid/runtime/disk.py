"""The real `braid.ports.Disk`: a directory of files through the operating system.

Writes go through `os.pwrite` and syncs through `os.fdatasync` on a descriptor kept open
per file until it is removed or renamed, so a sync covers every write made through it.
`write_synced` uses a second descriptor opened with O_DSYNC: each write returns once its
data is durable, as a write followed by fdatasync would, but in one system call (the log's
writer thread then gives up and retakes the interpreter lock once per batch, not twice).
"""

from __future__ import annotations

import os
from pathlib import Path

_ZEROS = bytes(1 << 20)


class RealDisk:
    """`Disk` over the directory `root` (paths are relative to it)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._descriptors: dict[str, int] = {}
        self._synced: dict[str, int] = {}  # O_DSYNC descriptors, for write_synced

    def _path(self, path: str) -> Path:
        return self.root / path

    def _descriptor(self, path: str) -> int:
        fd = self._descriptors.get(path)
        if fd is None:
            fd = self._descriptors[path] = os.open(self._path(path), os.O_RDWR)
        return fd

    def _forget(self, path: str) -> None:
        for descriptors in (self._descriptors, self._synced):
            fd = descriptors.pop(path, None)
            if fd is not None:
                os.close(fd)

    def list(self, directory: str) -> list[str]:
        return sorted(os.listdir(self._path(directory)))

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def size(self, path: str) -> int:
        return self._path(path).stat().st_size

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(self._path(path), "rb") as handle:
            if offset:
                handle.seek(offset)
            return handle.read(-1 if length is None else length)

    def create(self, path: str, size: int, *, synced: bool = True) -> None:
        fd = os.open(self._path(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            remaining = size
            while remaining > 0:
                remaining -= os.write(fd, _ZEROS[: min(remaining, len(_ZEROS))])
            if synced:
                os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            self._path(path).unlink()
            raise
        self._descriptors[path] = fd

    def write(self, path: str, offset: int, data: bytes | memoryview) -> None:
        fd = self._descriptor(path)
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written

    def sync(self, path: str) -> None:
        os.fdatasync(self._descriptor(path))

    def open_synced(self, path: str) -> None:
        if path not in self._synced:
            self._synced[path] = os.open(self._path(path), os.O_RDWR | os.O_DSYNC)

    def write_synced(self, path: str, offset: int, data: bytes | memoryview) -> int:
        fd = self._synced.get(path)
        if fd is None:
            self.open_synced(path)
            fd = self._synced[path]
        return os.pwrite(fd, data, offset)

    def rename(self, source: str, target: str) -> None:
        self._forget(source)
        self._forget(target)
        os.rename(self._path(source), self._path(target))

    def remove(self, path: str) -> None:
        self._forget(path)
        os.unlink(self._path(path))

    def make_directory(self, path: str) -> None:
        os.mkdir(self._path(path))

    def sync_directory(self, directory: str) -> None:
        fd = os.open(self._path(directory), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        for path in [*self._descriptors, *self._synced]:
            self._forget(path)
